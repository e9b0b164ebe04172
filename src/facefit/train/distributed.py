"""Several processes (``torchrun``): each takes a slice of every global batch; rank 0 validates and saves."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: str) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as td

        if not td.is_initialized():
            td.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        return cls(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def broadcast_int(self, value: int) -> int:
        """Rank 0's value on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as td

        t = torch.tensor([value], dtype=torch.long)
        td.broadcast(t, 0)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank."""
        if self.world == 1:
            return flag
        import torch.distributed as td

        t = torch.tensor([int(flag)], dtype=torch.long)
        td.all_reduce(t, op=td.ReduceOp.MAX)
        return bool(t.item())

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()
