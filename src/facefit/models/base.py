"""The base class of every face-embedding network: preprocessing and batched inference."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from facefit.align.recipe import AlignRecipe
from facefit.models.contract import EmbeddingContract


def bake_parametrizations(module: nn.Module) -> int:
    """Replace every parametrized tensor under ``module`` by its current value, in place; returns how many."""
    from torch.nn.utils import parametrize

    count = 0
    for layer in list(module.modules()):
        if parametrize.is_parametrized(layer):
            # A deepcopy shares torch's generated Parametrized* class with its original, and removing a
            # parametrization deletes the property from that class, breaking the original too: own class first.
            cls = type(layer)
            layer.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            for name in list(layer.parametrizations):
                parametrize.remove_parametrizations(layer, name, leave_parametrized=True)
                count += 1
    return count


def he_init_(module: nn.Module) -> None:
    """arcface_torch's random initialisation: He-normal (fan-out) convs and linears, unit-scale zero-shift BNs."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


_PRECISION_LOCK = threading.RLock()


class FaceEmbedder(nn.Module):
    """An ``nn.Module`` mapping aligned face chips to embeddings.

    Subclasses implement ``forward`` on normalised NCHW float tensors. ``embed``
    is the convenience path for numpy uint8 chips: it runs a frozen, cached
    inference copy (see ``inference_copy``), so it never touches training state.
    """

    # The largest batch the inference copy is run on (None: as asked). Networks whose activations at full
    # resolution outgrow the CPU caches run faster on small batches (SFace: measured below).
    max_inference_batch: int | None = None

    def __init__(self, contract: EmbeddingContract) -> None:
        super().__init__()
        self.contract = contract
        mean = torch.tensor(contract.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(contract.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("_mean", mean, persistent=False)
        self.register_buffer("_std", std, persistent=False)

    def stage_list(self) -> list[nn.Module]:
        """The backbone's stages from the input side (views; applied in turn they compute ``forward``)."""
        getter = getattr(self, "stage_modules", None) or getattr(self, "stages", None)
        if not callable(getter):
            raise TypeError(f"{type(self).__name__} does not list its stages")
        return list(getter())

    def run_stages(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Stages ``start`` to ``end`` only; lets training share a frozen prefix between models."""
        stages = self.stage_list()
        for stage in stages[start:end]:
            x = stage(x)
        if (end is None or end >= len(stages)) and self.contract.normalized:
            x = torch.nn.functional.normalize(x, dim=1)
        return x

    def inference_copy(self) -> nn.Module:
        """A frozen copy of this network tuned for inference; subclasses may fold layers.

        It must compute the same function as ``forward`` (up to float rounding).
        """
        import copy

        net = copy.deepcopy(self)
        net.__dict__.pop("_inference_cache", None)
        bake_parametrizations(net)  # training-time reparametrizations (adapters) become plain weights
        return net

    def _inference_net(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        """The cached inference copy at ``dtype``, rebuilt whenever a parameter changed (optimizer step, load)."""
        params = list(self.parameters())
        key = (tuple(p._version for p in params), tuple(p.data_ptr() for p in params), self._mean.device, dtype)
        cache = self.__dict__.setdefault("_inference_cache", {})
        cached = cache.get(dtype)
        if cached is None or cached[0] != key:
            net = self.inference_copy().eval()
            for p in net.parameters():
                p.requires_grad_(False)
            if dtype != torch.float32:
                net = net.to(dtype)
            if self._mean.device.type == "cpu":
                net = net.to(memory_format=torch.channels_last)
            # A plain attribute, not a submodule: it must never enter state_dict().
            cache[dtype] = cached = (key, net)
        return cached[1]

    # --- precision -------------------------------------------------------------------------------------------

    def set_precision(self, precision: str | None = None) -> None:
        """Run inference at ``precision`` (auto, fp32 or bf16; None: $FACEFIT_PRECISION, else auto).

        ``auto`` is resolved at the first embedding, on its chips (see ``facefit.models.precision``).
        """
        from facefit.models.precision import requested_precision

        self.__dict__["_precision_request"] = requested_precision(precision)
        self.__dict__.pop("_precision_choice", None)

    @property
    def precision_request(self) -> str:
        if "_precision_request" not in self.__dict__:
            self.set_precision(None)
        return self.__dict__["_precision_request"]

    @property
    def precision_choice(self) -> Any:
        """The resolved ``PrecisionChoice``, or None before the first embedding under ``auto``."""
        return self.__dict__.get("_precision_choice")

    @property
    def precision(self) -> str:
        """The precision embeddings are computed at: fp32 or bf16 once resolved, else the request."""
        choice = self.precision_choice
        return choice.precision if choice is not None else self.precision_request

    def resolve_precision(self, chips: np.ndarray | None = None, *, remeasure: bool = False,
                          remember: bool = True) -> Any:
        """Settle the precision now (``auto`` measures on ``chips``: real faces of this model's recipe).

        ``remember=False`` keeps a measurement out of the machine's cache (chips that are not faces).
        """
        from facefit.models.precision import DTYPES, choose_precision

        with _PRECISION_LOCK:  # concurrent first requests of a server measure once, and agree
            choice = self.precision_choice
            if choice is None or remeasure:
                chips = np.empty((0, 0, 0, 3), np.uint8) if chips is None else self.check_chips(chips)
                choice = choose_precision(self, self.precision_request, chips, remeasure=remeasure,
                                          remember=remember)
                self.__dict__["_precision_choice"] = choice
                for dtype in set(DTYPES.values()) - {DTYPES[choice.precision]}:
                    self.__dict__.get("_inference_cache", {}).pop(dtype, None)  # the measured, unused copy
        return choice

    def warm_up(self) -> None:
        """Build the inference copy now rather than at the first face; ``auto`` is not settled on blank chips."""
        from facefit.models.precision import DTYPES

        h, w = self.contract.input_size
        self.embed_at(np.zeros((1, h, w, 3), np.uint8), DTYPES[self.known_precision() or "fp32"])

    def known_precision(self) -> str | None:
        """The precision embeddings will be computed at, if known without measuring; settles it if so."""
        from facefit.models.precision import settled_precision

        if self.precision_choice is None:
            choice = settled_precision(self, self.precision_request)
            if choice is None:
                return None
            self.__dict__["_precision_choice"] = choice
        return self.precision

    @property
    def embedding_dim(self) -> int:
        return self.contract.embedding_dim

    @property
    def recipes(self) -> tuple[AlignRecipe, ...]:
        """The chips this model needs for one face, in order: one recipe, or several for an ensemble."""
        return (self.contract.align,)

    def embed_views(self, views: Mapping[AlignRecipe, np.ndarray], batch_size: int = 64,
                    on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed faces given as one chip batch per recipe in ``recipes`` (rows are the same faces)."""
        return self.embed(views[self.contract.align], batch_size=batch_size, on_batch=on_batch)

    def embed_faces(self, faces: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """Embed aligned ``Face`` objects (from ``facefit.align``), whatever chips the model needs."""
        if not faces:
            return np.empty((0, self.embedding_dim), np.float32)
        return self.embed_views({r: np.stack([f.chip_for(r) for f in faces]) for r in self.recipes},
                                batch_size=batch_size)

    def preprocess(self, chips: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB chips -> normalised float (N, 3, H, W)."""
        if chips.dtype != torch.uint8:
            raise TypeError(f"chips must be uint8, got {chips.dtype}")
        return self.normalize(chips.to(self._mean.device).permute(0, 3, 1, 2).float())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Float (N, 3, H, W) RGB in pixel units (0-255) -> the network's input."""
        return (x - self._mean) / self._std

    def check_chips(self, chips: np.ndarray) -> np.ndarray:
        """Validate the shape and dtype of a chip batch and return it as a contiguous array."""
        if isinstance(chips, Sequence) and not isinstance(chips, np.ndarray):
            chips = np.stack([np.asarray(c) for c in chips]) if len(chips) else np.empty((0, 0, 0, 3), np.uint8)
        chips = np.asarray(chips)
        h, w = self.contract.input_size
        if chips.ndim == 3:
            chips = chips[None]
        if chips.ndim != 4 or chips.shape[1:] != (h, w, 3) and chips.shape[0] > 0:
            raise ValueError(
                f"expected aligned chips of shape (N, {h}, {w}, 3), got {tuple(chips.shape)}; "
                f"align faces with facefit.align.detect_and_align first"
            )
        if chips.dtype != np.uint8:
            raise TypeError(f"expected uint8 RGB chips, got dtype {chips.dtype}")
        return np.ascontiguousarray(chips)

    @torch.inference_mode()
    def embed(
        self,
        chips: np.ndarray | Sequence[np.ndarray],
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed aligned uint8 RGB chips (N, H, W, 3); returns float32 (N, D) raw outputs.

        Under a ``flip_average`` contract each output is the mean of the chip's and its mirror's. The
        network runs at the model's precision (``set_precision``); the outputs are float32 either way.

        ``on_batch(n)`` is called after each batch with its size (for progress bars).
        """
        arr = self.check_chips(chips)
        if not len(arr):
            return np.empty((0, self.embedding_dim), np.float32)
        if self.precision_choice is None:
            self.resolve_precision(arr[:8])
        from facefit.models.precision import DTYPES

        return self.embed_at(arr, DTYPES[self.precision], batch_size=batch_size, on_batch=on_batch)

    @torch.inference_mode()
    def embed_at(self, chips: np.ndarray, dtype: torch.dtype, batch_size: int = 64,
                 on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """``embed`` at an explicit network dtype (float32 or bfloat16), whatever the model's precision."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batch_size = min(batch_size, self.max_inference_batch or batch_size)
        arr = self.check_chips(chips)
        out = np.empty((len(arr), self.embedding_dim), dtype=np.float32)
        net = self._inference_net(dtype)
        channels_last = self._mean.device.type == "cpu"
        flip = self.contract.flip_average
        for start in range(0, len(arr), batch_size):
            batch = torch.from_numpy(arr[start : start + batch_size])
            n = len(batch)
            x = self.preprocess(batch)
            if flip:
                x = torch.cat([x, x.flip(3)])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = net(x.to(dtype)).float()
            out[start : start + n] = ((y[:n] + y[n:]) / 2 if flip else y).cpu().numpy()
            if on_batch is not None:
                on_batch(len(batch))
        return out
