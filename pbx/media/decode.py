"""Decode an audio file (bytes or a path) to mono int16 at a target rate.

PyAV (FFmpeg) demuxes and decodes; we average the channels ourselves, because FFmpeg's own
stereo-to-mono matrix adds the two channels at -3 dB each, which makes a centred signal 3 dB louder
(and can clip). soxr resamples at very high quality, as a stream.

Safety, since the bytes may come from anywhere:

* Only the demuxers in :data:`AUDIO_DEMUXERS` may be probed. Playlist-like demuxers (hls, concat,
  ...) would make FFmpeg open further files or URLs named inside the data.
* Source rates above :data:`MAX_SOURCE_RATE` are refused: no prompt needs them, and a tiny file can
  claim one (a FLAC at 655 kHz decodes to gigabytes of samples).
* Decoding is a stream: each decoded frame is mixed to mono, resampled to the target rate and kept
  as int16 at once, and decoding stops with an error once the audio exceeds ``max_seconds``. So what
  a file holds in memory is bounded by ``max_seconds`` at the *target* rate (19 MB for 10 minutes at
  16 kHz), whatever its own rate or length.
* A packet the decoder rejects is skipped, as players do with a glitch in a stream; a file in
  which nothing decodes is an error.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import av.audio.frame
import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from pbx.errors import MediaError

# FFmpeg demuxer names (a name matches any entry of a comma-separated list such as "mov,mp4,m4a").
AUDIO_DEMUXERS = (
    "wav", "w64", "mp3", "ogg", "flac", "matroska", "mov", "aac", "aiff", "au", "caf", "wv", "ape",
    "amr", "ac3", "eac3", "dts", "mpc", "mpc8", "tta", "voc", "loas", "mp2",
)
MAX_SOURCE_RATE = 192000
# Packed sample format -> (zero offset, scale to [-1, 1)); other formats go through swresample.
_SCALES: dict[str, tuple[float, float]] = {
    "u8": (128.0, 1 / 128),
    "s16": (0.0, 1 / 32768),
    "s32": (0.0, 1 / 2**31),
    "flt": (0.0, 1.0),
    "dbl": (0.0, 1.0),
}

Float32 = npt.NDArray[np.float32]


class DecodeCancelled(Exception):
    """Nobody wants the audio any more (:func:`decode_audio`'s ``cancelled`` said so)."""


def decode_audio(source: bytes | Path, rate: int, *, max_seconds: float,
                 name: str | None = None, cancelled: Callable[[], bool] | None = None) -> npt.NDArray[np.int16]:
    """Decode ``source`` (a whole file's bytes, or its path) to mono int16 at ``rate`` Hz.

    ``name`` is what error messages call the source. Raises :class:`MediaError` for data FFmpeg
    cannot read and for audio longer than ``max_seconds``, and :class:`DecodeCancelled` as soon as
    ``cancelled()`` (asked between packets: it runs on a worker thread) is true.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if name is None:
        name = str(source) if isinstance(source, Path) else f"<{len(source)} bytes>"
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "r",
                            container_options={"format_whitelist": ",".join(AUDIO_DEMUXERS)})
    except av.FFmpegError as exc:
        raise _unsupported(name, exc) from None
    with container:
        if not container.streams.audio:
            raise _unsupported(name, "no audio stream")
        stream = container.streams.audio[0]
        out = _Resampled(rate)
        seconds = 0.0
        last_error: av.FFmpegError | None = None
        try:
            for packet in container.demux(stream):
                if cancelled is not None and cancelled():
                    raise DecodeCancelled(name)
                try:
                    frames = stream.decode(packet)
                except av.InvalidDataError as exc:
                    last_error = exc
                    continue
                for frame in frames:
                    if not 0 < frame.sample_rate <= MAX_SOURCE_RATE:
                        raise _unsupported(name, f"sample rate {frame.sample_rate} Hz (at most {MAX_SOURCE_RATE})")
                    seconds += frame.samples / frame.sample_rate
                    if seconds > max_seconds:
                        raise MediaError(f"{name} exceeds the {max_seconds:g}-second limit")
                    out.add(_mono(frame), frame.sample_rate)
        except av.FFmpegError as exc:
            raise _unsupported(name, exc) from None
    if seconds == 0.0:
        raise _unsupported(name, last_error or "no audio decoded")
    return out.finish()


class _Resampled:
    """Mono float32 frames at any rate in; int16 at ``rate`` out, converted frame by frame."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.chunks: list[npt.NDArray[np.int16]] = []
        self._src = 0
        self._stream: Any = None

    def add(self, audio: Float32, src: int) -> None:
        if src != self._src:        # a rate change mid-file: finish the old stream, start anew
            self._flush()
            self._src = src
            self._stream = None if src == self.rate else soxr.ResampleStream(src, self.rate, 1, quality="VHQ")
        if self._stream is None:
            self.chunks.append(_to_int16(audio))
        else:
            self.chunks.append(_to_int16(self._stream.resample_chunk(audio)))

    def _flush(self) -> None:
        if self._stream is not None:
            self.chunks.append(_to_int16(self._stream.resample_chunk(np.zeros(0, np.float32), last=True)))
            self._stream = None

    def finish(self) -> npt.NDArray[np.int16]:
        self._flush()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


def _mono(frame: av.audio.frame.AudioFrame) -> Float32:
    """One decoded frame as float32 mono in [-1, 1): the mean of its channels."""
    scale = _SCALES.get(frame.format.packed.name)
    if scale is None:  # e.g. s64: let swresample convert the sample format only
        converter = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
        converted = converter.resample(frame)
        if not converted:
            return np.zeros(0, np.float32)
        return np.concatenate([_mono(f) for f in converted])
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    offset, factor = scale
    mixed: Float32 = data.mean(axis=0, dtype=np.float64).astype(np.float32)
    if offset:
        mixed -= np.float32(offset)
    mixed *= np.float32(factor)
    return mixed


def _to_int16(audio: Float32) -> npt.NDArray[np.int16]:
    scaled = np.clip(np.rint(audio * np.float32(32768.0)), -32768, 32767)
    out: npt.NDArray[np.int16] = scaled.astype(np.int16)
    return out


def _unsupported(name: str, detail: object) -> MediaError:
    if isinstance(detail, av.FFmpegError):
        detail = detail.strerror or detail
    return MediaError(f"unsupported or corrupt audio: {name}: {detail}")
