"""An exponential moving average of the trained weights, used for validation and export.

It starts at the (pre-trained) starting weights, so early on it also leans toward them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightEMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every optimizer step, over trainable tensors."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = [params[n].detach().clone() for n in self.names]

    def _live(self, model: nn.Module) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        return [params[n].detach() for n in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = self._live(model)
        torch._foreach_mul_(self.shadow, self.decay)
        torch._foreach_add_(self.shadow, live, alpha=1.0 - self.decay)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the trained ones come back after."""
        live = self._live(model)
        saved = [t.clone() for t in live]
        with torch.no_grad():
            for t, s in zip(live, self.shadow):
                t.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for t, s in zip(live, saved):
                    t.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: s.clone() for n, s in zip(self.names, self.shadow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} tensor(s), e.g. {sorted(missing)[0]}")
        self.shadow = [state[n].clone().to(s.device) for n, s in zip(self.names, self.shadow)]
