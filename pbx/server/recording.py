"""Recording files: created and finished on a worker thread, inside the recordings folder.

A ``recorderFile`` is a client's string, so it is bounded before it touches the disk (length and
depth), confined to the recordings folder, and every failure is a :class:`RecordingError` whose
message becomes the ``recorder`` error event. A file that could not be created whole is removed,
so a full disk leaves nothing behind; a recording discarded before any audio (the call never got its
media) is removed too. A recording stopped mid-call by a full disk stays: its header is valid after
every flush, so it holds what was recorded.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pbx.core.wav import WavWriter
from pbx.paths import OutsideDirectory, confine
from pbx.protocol import RecorderOption

MAX_NAME_CHARS = 1024         # a recorderFile longer than this is refused
MAX_DEPTH = 32                # folders below the recordings folder


class RecordingError(Exception):
    """Why a recording could not be made; the message is the error event's."""


def create_recording(base: Path, option: RecorderOption) -> WavWriter:
    """The open WAV writer for ``option`` (blocking: run it on a worker thread)."""
    name = option.recorder_file
    if len(name) > MAX_NAME_CHARS:
        raise RecordingError(f"recorderFile is {len(name)} characters long; at most {MAX_NAME_CHARS} are allowed")
    try:
        path = confine(base, name)
    except OutsideDirectory:
        raise RecordingError(f"recorderFile {name} is outside the recordings directory {base.resolve()}") from None
    except (OSError, RuntimeError) as exc:   # a symlink loop, a name the OS refuses
        raise RecordingError(f"cannot record to {name}: {exc}") from None
    depth = len(path.relative_to(base.resolve()).parts) - 1
    if depth > MAX_DEPTH:
        raise RecordingError(f"cannot record to {name}: {depth} folders deep; at most {MAX_DEPTH} are allowed")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return WavWriter(path, option.samplerate, 2, flush_ms=option.ptime)
    except (OSError, ValueError, OverflowError) as exc:   # OverflowError: beyond the writer's C int
        if not existed:
            with contextlib.suppress(OSError):
                path.unlink()   # a header half written on a full disk
        raise RecordingError(f"cannot record to {name}: {exc}") from None


def finish_recording(writer: WavWriter, discard: bool) -> None:
    """The last flush and the final header (blocking); ``discard`` removes the file instead."""
    try:
        writer.close()
    finally:
        if discard:
            with contextlib.suppress(OSError):
                os.unlink(writer.path)
