"""Client-named paths stay inside their folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.paths import OutsideDirectory, confine


def test_relative_and_absolute_inside(tmp_path: Path) -> None:
    assert confine(tmp_path, "a/b.wav") == (tmp_path / "a/b.wav").resolve()
    assert confine(tmp_path, str(tmp_path / "c.wav")) == (tmp_path / "c.wav").resolve()


@pytest.mark.parametrize("name", ["../x.wav", "/path/to/recording.wav", "a/../../x.wav", "", ".", "a\x00b"])
def test_escapes_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutsideDirectory):
        confine(tmp_path / "rec", name)


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    base.mkdir()
    (base / "link").symlink_to(tmp_path)
    with pytest.raises(OutsideDirectory, match=r"link/x\.wav is outside"):
        confine(base, "link/x.wav")
