"""Helpers for the reliability tests: run the CLI in-process, and take a folder's write access away."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def cli(args: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``facefit ARGS``; a traceback fails the test."""
    from facefit.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main([os.fspath(a) for a in args])
    got = capsys.readouterr()
    assert "Traceback" not in got.err, got.err
    return int(exc.value.code or 0), got.out, got.err


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("facefit: error:")]


def _writable(folder: Path) -> bool:
    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def lock(folder: Path) -> None:
    """Make ``folder`` refuse new files, for whoever runs the tests (root ignores mode bits: chattr +i)."""
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    if _writable(folder) and shutil.which("chattr"):
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if _writable(folder):
        unlock(folder)
        pytest.skip("cannot take write access away from a folder here (root without chattr)")


def unlock(folder: Path) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


@contextmanager
def locked(folder: Path) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    lock(folder)
    try:
        yield folder
    finally:
        unlock(folder)
