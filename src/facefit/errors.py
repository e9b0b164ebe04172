"""User-facing errors. The CLI prints ``str(error)`` as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class FacefitError(Exception):
    """An error caused by input, configuration or environment, not by a bug."""

    exit_code = 1


class UsageError(FacefitError):
    """Bad arguments or an impossible combination of options."""

    exit_code = 2


class ImageError(FacefitError):
    """An image that cannot be read or used; the message names the file."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))


class NoFaceError(ImageError):
    """No face was found where one was required."""


class PrecisionError(UsageError):
    """An unknown inference precision, or one this machine cannot run."""


class ModelNotFoundError(FacefitError):
    """An unknown model name, or a model path that does not exist."""


class WeightsNotFoundError(FacefitError):
    """A weight file (or the package that ships it) is missing or corrupt."""


class OutputExistsError(FacefitError):
    """Refusing to overwrite a file the user did not ask us to replace."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: already exists; pass --overwrite to replace it")

    def __reduce__(self):
        return (type(self), (self.path,))
