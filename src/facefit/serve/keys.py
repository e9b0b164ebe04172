"""API keys with roles: ``read`` < ``enrol`` < ``admin``, from a file of ``key role name`` lines.

A file like::

    # key                              role   name (free text, for the server's operators)
    3f9c0e...                          read   the front desk
    a71b42...                          enrol  the HR onboarding app
    c0ffee...                          admin  ops

Blank lines and lines starting with '#' are skipped. Errors name the line, never the key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

MIN_KEY_CHARS = 8  # a shorter key is guessed over HTTP in no time


class Role(enum.IntEnum):
    """What a key may do; each role may do everything the roles below it may."""

    read = 1  # verify, identify, embed, list and look at persons and their crops
    enrol = 2  # also add faces and persons
    admin = 3  # also rename and delete


@dataclass(frozen=True)
class Client:
    """Who a key belongs to: its role and its name from the keys file."""

    role: Role
    name: str


class KeysError(ValueError):
    """The keys file cannot be used; the message names the file and line."""


def parse_keys(text: str, where: str) -> dict[str, Client]:
    """``key role name`` lines to ``{key: Client}``; KeysError on a bad line, a repeated key or no key at all."""
    keys: dict[str, Client] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise KeysError(f"{where}, line {number}: expected 'key role name'")
        key, role, name = parts
        if role not in Role.__members__:
            raise KeysError(f"{where}, line {number}: role {role!r} is not one of {', '.join(Role.__members__)}")
        if len(key) < MIN_KEY_CHARS:
            raise KeysError(f"{where}, line {number}: the key is shorter than {MIN_KEY_CHARS} characters")
        if key in keys:
            raise KeysError(f"{where}, line {number}: this key is already given to {keys[key].name!r}")
        keys[key] = Client(Role[role], name.strip())
    if not keys:
        raise KeysError(f"{where}: no keys in it (lines of 'key role name')")
    return keys


def load_keys(path: str | Path) -> dict[str, Client]:
    """The keys file at ``path``, parsed (see ``parse_keys``)."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysError(f"{path}: cannot read the keys file ({exc.__class__.__name__}: "
                        f"{getattr(exc, 'strerror', None) or exc})") from None
    return parse_keys(text, str(path))
