"""Progress reporting injected into library code: a factory of context managers with ``advance``.

The library never draws bars itself; the CLI passes a factory that does (``cli.common.progress_bar``)
and everything else gets ``no_progress``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

ProgressFactory = Callable[[str, int], AbstractContextManager]


class _NoBar:
    def advance(self, n: int = 1) -> None:
        pass


def no_progress(_desc: str, _total: int) -> AbstractContextManager:
    """A progress factory that reports nothing."""
    return nullcontext(_NoBar())
