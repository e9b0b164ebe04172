"""A registry of face-embedding architectures and their pretrained configurations."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from facefit.defaults import DEFAULT_MODEL  # noqa: F401 - re-exported
from facefit.errors import ModelNotFoundError
from facefit.io.assets import AssetFile
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract

Builder = Callable[[EmbeddingContract], FaceEmbedder]


@dataclass(frozen=True)
class PretrainedCfg:
    """Where a model's pretrained weights come from, as data."""

    asset: AssetFile  # file, package, digest and licence
    format: str  # how to read it, e.g. "dlib-dat"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    contract: EmbeddingContract  # contract of a freshly built model (no weights yet)
    pretrained: PretrainedCfg | None
    description: str

    @property
    def checkpoint_filter(self) -> Callable | None:
        """``checkpoint_filter_fn(state_dict, model)`` of the architecture's module: other projects' weights in."""
        import sys

        return getattr(sys.modules[self.builder.__module__], "checkpoint_filter_fn", None)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    contract: EmbeddingContract,
    pretrained: PretrainedCfg | None = None,
    description: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(contract) -> FaceEmbedder`` under ``name``."""

    def deco(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, builder, contract, pretrained, description or (builder.__doc__ or "").strip())
        return builder

    return deco


def list_models(pretrained: bool = False) -> list[str]:
    """Registered model names; with ``pretrained=True`` only those that ship weights."""
    return sorted(n for n, s in _REGISTRY.items() if not pretrained or s.pretrained is not None)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}{hint}; known models: {', '.join(list_models()) or 'none'}, "
            f"or pass a path to a facefit model folder or a dlib .dat file"
        ) from None


def is_registered(name: str) -> bool:
    return name in _REGISTRY
