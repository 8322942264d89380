"""Keep client-named files inside configured folders."""

from __future__ import annotations

import os
from pathlib import Path


class OutsideDirectory(ValueError):
    """The path a client named resolves outside the folder it must stay in."""


def confine(base: Path, name: str) -> Path:
    """``name`` (relative to ``base``, or absolute) resolved with symlinks and ``..``; it must lie
    inside ``base``. Raises :class:`OutsideDirectory` otherwise, or for an empty name / NUL byte."""
    if not name or "\x00" in name:
        raise OutsideDirectory(f"invalid file name {name!r}")
    root = base.resolve()
    candidate = Path(name)
    target = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if target == root or root not in target.parents:
        raise OutsideDirectory(f"{name} is outside {root}")
    return target


def ensure_parent(path: Path) -> None:
    os.makedirs(path.parent, exist_ok=True)
