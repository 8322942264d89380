"""Decode an audio file (bytes or a path) to mono int16 at a target rate.

PyAV (FFmpeg) demuxes and decodes; we average the channels ourselves, because FFmpeg's own
stereo-to-mono matrix adds the two channels at -3 dB each, which makes a centred signal 3 dB louder
(and can clip). soxr then resamples the whole file at very high quality.

Safety, since the bytes may come from anywhere:

* Only the demuxers in :data:`AUDIO_DEMUXERS` may be probed. Playlist-like demuxers (hls, concat,
  ...) would make FFmpeg open further files or URLs named inside the data.
* Decoding stops with an error once the audio exceeds ``max_seconds``, so a small compressed file
  cannot expand into gigabytes of samples. Peak memory is about twice ``max_seconds`` times the
  source rate in float32 samples.
* A packet the decoder rejects is skipped, as players do with a glitch in a stream; a file in
  which nothing decodes is an error.
"""

from __future__ import annotations

import io
from pathlib import Path

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
MAX_SOURCE_RATE = 768000
# Packed sample format -> (zero offset, scale to [-1, 1)); other formats go through swresample.
_SCALES: dict[str, tuple[float, float]] = {
    "u8": (128.0, 1 / 128),
    "s16": (0.0, 1 / 32768),
    "s32": (0.0, 1 / 2**31),
    "flt": (0.0, 1.0),
    "dbl": (0.0, 1.0),
}

Float32 = npt.NDArray[np.float32]


def decode_audio(source: bytes | Path, rate: int, *, max_seconds: float,
                 name: str | None = None) -> npt.NDArray[np.int16]:
    """Decode ``source`` (a whole file's bytes, or its path) to mono int16 at ``rate`` Hz.

    ``name`` is what error messages call the source. Raises :class:`MediaError` for data FFmpeg
    cannot read and for audio longer than ``max_seconds``.
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
        segments: list[tuple[int, list[Float32]]] = []  # consecutive frames that share a rate
        seconds = 0.0
        last_error: av.FFmpegError | None = None
        try:
            for packet in container.demux(stream):
                try:
                    frames = stream.decode(packet)
                except av.InvalidDataError as exc:
                    last_error = exc
                    continue
                for frame in frames:
                    if not 0 < frame.sample_rate <= MAX_SOURCE_RATE:
                        raise _unsupported(name, f"sample rate {frame.sample_rate}")
                    seconds += frame.samples / frame.sample_rate
                    if seconds > max_seconds:
                        raise MediaError(f"{name} exceeds the {max_seconds:g}-second limit")
                    if not segments or segments[-1][0] != frame.sample_rate:
                        segments.append((frame.sample_rate, []))
                    segments[-1][1].append(_mono(frame))
        except av.FFmpegError as exc:
            raise _unsupported(name, exc) from None
    if seconds == 0.0:
        raise _unsupported(name, last_error or "no audio decoded")
    return _to_int16(np.concatenate([_resample(chunks, src, rate) for src, chunks in segments]))


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


def _resample(chunks: list[Float32], src: int, rate: int) -> Float32:
    audio = np.concatenate(chunks)
    if src == rate:
        return audio
    out: Float32 = soxr.resample(audio, src, rate, quality="VHQ")
    return out


def _to_int16(audio: Float32) -> npt.NDArray[np.int16]:
    scaled = np.clip(np.rint(audio * np.float32(32768.0)), -32768, 32767)
    out: npt.NDArray[np.int16] = scaled.astype(np.int16)
    return out


def _unsupported(name: str, detail: object) -> MediaError:
    if isinstance(detail, av.FFmpegError):
        detail = detail.strerror or detail
    return MediaError(f"unsupported or corrupt audio: {name}: {detail}")
