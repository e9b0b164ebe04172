"""Subgroup attributes read from file names, for per-condition evaluation.

Recognised naming schemes:
- K-Face: ``.../S001/L1/E01/C7.jpg``: accessory (S001-S006), lighting (L1-L30),
  expression (E01-E03) and camera/pose (C1-C20);
- AI Hub Korean family photos: ``F0801_AGE_F_48_a1.jpg``: the age class of
  the photo (a 0-6, b 7-12, c 13-19, d 20-30, e 31-45, f 46-55, g 56-66, h 67-80);
- Yale faces: ``01_leftlight.png``: the capture condition.

A pair gets an attribute's value when both images share it, ``mixed`` otherwise;
age classes also give ``age_gap`` (how many classes apart the two photos are).
"""

from __future__ import annotations

import re
from pathlib import PurePath

AGE_CLASSES = "abcdefgh"
AGE_CLASS_YEARS = {"a": "0-6", "b": "7-12", "c": "13-19", "d": "20-30", "e": "31-45", "f": "46-55",
                   "g": "56-66", "h": "67-80"}
YALE_CONDITIONS = ("centerlight", "glasses", "noglasses", "happy", "sad", "sleepy", "surprised", "wink",
                   "normal", "leftlight", "rightlight")

_KFACE = {
    "accessory": re.compile(r"^S\d{3}$"),
    "lighting": re.compile(r"^L\d{1,2}$"),
    "expression": re.compile(r"^E\d{2}$"),
    "pose": re.compile(r"^C\d{1,2}$"),
}
_AGE = re.compile(r"_AGE_[A-Za-z]+\d*_\d+_([a-h])\d+$")
_YALE = re.compile(r"^\d{2}_([a-z]+)$")


def image_attributes(path: str | PurePath) -> dict[str, str]:
    """Attributes encoded in one image's path (empty when it follows no known scheme)."""
    p = PurePath(path)
    attrs: dict[str, str] = {}
    parts = list(p.parent.parts) + [p.stem]
    for name, rx in _KFACE.items():
        hits = [part for part in parts if rx.match(part)]
        if hits:
            attrs[name] = hits[-1]
    if len(attrs) < 2:  # a lone "L3" folder is not K-Face
        attrs = {}
    m = _AGE.search(p.stem)
    if m:
        attrs["age_class"] = f"{m.group(1)} ({AGE_CLASS_YEARS[m.group(1)]})"
    m = _YALE.match(p.stem)
    if m and m.group(1) in YALE_CONDITIONS:
        attrs["condition"] = m.group(1)
    return attrs


def pair_attributes(a: str | PurePath, b: str | PurePath) -> dict[str, str]:
    """Attributes of a pair: the shared value, or ``mixed``; plus ``age_gap`` for age classes."""
    ta, tb = image_attributes(a), image_attributes(b)
    out: dict[str, str] = {}
    for key in sorted(set(ta) | set(tb)):
        va, vb = ta.get(key), tb.get(key)
        if va is None or vb is None:
            continue
        out[key] = va if va == vb else "mixed"
    if "age_class" in ta and "age_class" in tb:
        gap = abs(AGE_CLASSES.index(ta["age_class"][0]) - AGE_CLASSES.index(tb["age_class"][0]))
        out["age_gap"] = {0: "0 (same class)", 1: "1 class"}.get(gap, f"{gap} classes" if gap < 3 else "3+ classes")
    return out
