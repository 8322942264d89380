"""pbx.core.wav.WavWriter: a valid WAV file after every flush, byte-identical to the oracle.

The file is checked two independent ways after each flush: Python's ``wave`` module and a
numpy structured parse of the 44-byte header. Crashes and write errors are produced for real
in subprocesses: ``os._exit``/SIGKILL, RLIMIT_FSIZE (EFBIG mid-write) and a 64 KiB tmpfs
(ENOSPC) mounted in a private mount namespace.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import wave
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.core.errors import WavError
from pbx.core.wav import WavWriter
from support.audio import espeak_speech, frames, read_wav, tone
from support.oracles.wav import HEADER_BYTES, OracleWavWriter, header, max_frames

HEADER_DTYPE = np.dtype([
    ("riff", "S4"), ("riff_size", "<u4"), ("wave", "S4"),
    ("fmt", "S4"), ("fmt_size", "<u4"), ("format", "<u2"), ("channels", "<u2"), ("rate", "<u4"),
    ("byte_rate", "<u4"), ("block_align", "<u2"), ("bits", "<u2"),
    ("data", "S4"), ("data_size", "<u4"),
])
ROOT = Path(__file__).resolve().parent.parent


def parse_numpy(path: Path) -> tuple[int, int, np.ndarray]:
    """(rate, channels, samples [frames, channels]) from a numpy parse of the canonical header."""
    h = np.fromfile(path, dtype=HEADER_DTYPE, count=1)[0]
    assert (h["riff"], h["wave"], h["fmt"], h["data"]) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert (h["fmt_size"], h["format"], h["bits"]) == (16, 1, 16)
    channels, rate = int(h["channels"]), int(h["rate"])
    assert h["block_align"] == 2 * channels
    assert h["byte_rate"] == rate * 2 * channels
    assert h["riff_size"] == HEADER_BYTES - 8 + h["data_size"]
    assert os.path.getsize(path) >= HEADER_BYTES + h["data_size"]
    data = np.fromfile(path, dtype="<i2", count=int(h["data_size"]) // 2, offset=HEADER_BYTES)
    return rate, channels, data.reshape(-1, channels)


def assert_holds(path: Path, expected: np.ndarray, rate: int, channels: int) -> None:
    """The file, read by ``wave`` and by the numpy parse, holds exactly ``expected``."""
    expected = expected.reshape(-1, channels)
    data, _ = read_wav(path)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (channels, rate, 2)
        assert w.getnframes() == len(expected)
    np.testing.assert_array_equal(data.reshape(-1, channels), expected)
    np_rate, np_channels, np_data = parse_numpy(path)
    assert (np_rate, np_channels) == (rate, channels)
    np.testing.assert_array_equal(np_data, expected)


def raises_exactly(exc: type[Exception], message: str) -> AbstractContextManager[Any]:
    return pytest.raises(exc, match=f"^{re.escape(message)}$")


def interleave(*channels: np.ndarray) -> np.ndarray:
    return np.column_stack(channels).astype(np.int16).ravel()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return espeak_speech(16000)


# ---- valid after every flush ----------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 2])
def test_file_is_valid_after_every_flush(tmp_path: Path, speech: np.ndarray, channels: int) -> None:
    rate = 16000
    signal_ = speech if channels == 1 else interleave(speech, speech[::-1])
    path = tmp_path / "rec.wav"
    flushes = 0
    with WavWriter(path, rate, channels) as w:
        assert_holds(path, signal_[:0], rate, channels)        # valid even before any audio
        for chunk in frames(signal_, 320 * channels):
            before = w.frames_flushed
            w.write(chunk)
            # Unflushed audio never reaches the file: its size is exactly what the header says.
            assert os.path.getsize(path) == HEADER_BYTES + w.frames_flushed * 2 * channels
            if w.frames_flushed != before:
                flushes += 1
                assert_holds(path, signal_[:w.frames_flushed * channels], rate, channels)
        total = w.frames_written
    assert flushes == total // 3200
    assert_holds(path, signal_[:total * channels], rate, channels)


@pytest.mark.parametrize(("rate", "flush_ms", "chunk"),
                         [(16000, 200, 320), (8000, 30, 160), (48000, 20, 1000)])
def test_flushes_automatically_every_flush_ms(tmp_path: Path, rate: int, flush_ms: int, chunk: int) -> None:
    cap = rate * flush_ms // 1000
    w = WavWriter(tmp_path / "a.wav", rate, 1, flush_ms=flush_ms)
    pcm = np.arange(chunk, dtype=np.int16)
    seen = []
    for _ in range(40):
        w.write(pcm)
        seen.append(w.frames_flushed)
    assert seen == [(chunk * (i + 1)) // cap * cap for i in range(40)]
    assert w.frames_written == 40 * chunk
    w.close()


def test_one_write_longer_than_the_buffer_flushes_each_interval(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    pcm = tone(300, 8000, 1.0)
    with WavWriter(path, 8000, 1, flush_ms=100) as w:
        w.write(pcm[:4321])
        assert (w.frames_flushed, w.frames_written) == (4000, 4321)
        assert_holds(path, pcm[:4000], 8000, 1)
        w.flush()
        assert w.frames_flushed == 4321
        assert_holds(path, pcm[:4321], 8000, 1)
        w.flush()                                              # nothing buffered: no change
        assert w.frames_flushed == 4321


def test_stereo_interleaving(tmp_path: Path, speech: np.ndarray) -> None:
    left = tone(440, 16000, len(speech) / 16000)
    path = tmp_path / "stereo.wav"
    with WavWriter(path, 16000, 2) as w:
        for chunk in frames(interleave(left, speech), 640):
            w.write(chunk)
        n = w.frames_written
    data, rate = read_wav(path)
    assert rate == 16000 and data.shape == (n, 2)
    np.testing.assert_array_equal(data[:, 0], left[:n])
    np.testing.assert_array_equal(data[:, 1], speech[:n])


# ---- same bytes as the oracle and as the wave module ---------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 130)),
        st.tuples(st.just("silence"), st.integers(0, 130)),
        st.tuples(st.just("flush"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, channels=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**32 - 1))
def test_bytes_match_oracle_after_every_call(ops: list[tuple[str, int]], channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        ours_path, ref_path = Path(tmp, "ours.wav"), Path(tmp, "ref.wav")
        ours = WavWriter(ours_path, 1000, channels, flush_ms=50)   # 50-frame buffer
        ref = OracleWavWriter(ref_path, 1000, channels, flush_ms=50)
        for op, n in ops:
            if op == "write":
                pcm = rng.integers(-32768, 32768, n * channels, dtype=np.int16)
                ours.write(pcm)
                ref.write(pcm)
            elif op == "silence":
                ours.write_silence(n)
                ref.write_silence(n)
            else:
                ours.flush()
                ref.flush()
            assert (ours.frames_written, ours.frames_flushed) == (ref.frames_written, ref.frames_flushed)
            assert ours_path.read_bytes() == ref_path.read_bytes()
        ours.close()
        ref.close()
        assert ours_path.read_bytes() == ref_path.read_bytes()


@pytest.mark.parametrize("channels", [1, 2])
def test_closed_file_matches_wave_module(tmp_path: Path, speech: np.ndarray, channels: int) -> None:
    pcm = speech if channels == 1 else interleave(speech, -speech)
    with WavWriter(tmp_path / "ours.wav", 16000, channels) as w:
        for chunk in frames(pcm, 300 * channels):
            w.write(chunk)
        n = w.frames_written
    with wave.open(str(tmp_path / "ref.wav"), "wb") as ref:
        ref.setnchannels(channels)
        ref.setsampwidth(2)
        ref.setframerate(16000)
        ref.writeframes(pcm[:n * channels].astype("<i2").tobytes())
    assert (tmp_path / "ours.wav").read_bytes() == (tmp_path / "ref.wav").read_bytes()


def test_durable_writes_the_same_bytes(tmp_path: Path) -> None:
    pcm = tone(1000, 8000, 0.5)
    with WavWriter(tmp_path / "d.wav", 8000, durable=True, flush_ms=100) as w:
        w.write(pcm)
        assert w.frames_flushed == 4000
    ref = OracleWavWriter(tmp_path / "r.wav", 8000, flush_ms=100)
    ref.write(pcm)
    ref.close()
    assert (tmp_path / "d.wav").read_bytes() == (tmp_path / "r.wav").read_bytes()


def test_write_silence_short_is_buffered_long_is_a_hole(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    pcm = np.full(100, 7, dtype=np.int16)
    with WavWriter(path, 8000, 1, flush_ms=100) as w:              # 800-frame buffer
        w.write(pcm)
        w.write_silence(300)                                       # fits: buffered with the audio
        assert (w.frames_written, w.frames_flushed) == (400, 0)
        w.write_silence(10_000)                                    # flushes, then extends the file
        assert (w.frames_written, w.frames_flushed) == (10_400, 10_400)
        assert_holds(path, np.concatenate([pcm, np.zeros(10_300, np.int16)]), 8000, 1)
        w.write(pcm)
    assert_holds(path, np.concatenate([pcm, np.zeros(10_300, np.int16), pcm]), 8000, 1)


# ---- the 4 GiB RIFF limit ----------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 2])
def test_refuses_to_grow_past_the_riff_limit(tmp_path: Path, channels: int) -> None:
    path = tmp_path / "big.wav"
    limit = max_frames(channels)
    block = 2 * channels
    assert HEADER_BYTES - 8 + limit * block <= 0xFFFFFFFF < HEADER_BYTES - 8 + (limit + 1) * block
    tail = np.arange(1, 3 * channels + 1, dtype=np.int16)
    w = WavWriter(path, 8000, channels, flush_ms=20)
    w.write_silence(limit - 3)                                     # a sparse hole, not 4 GiB of zeros
    w.write(tail)
    with pytest.raises(WavError) as err:
        w.write(tail[:channels])
    assert err.value.errno == errno.EFBIG
    assert str(err.value) == (f"[Errno {errno.EFBIG}] WAV data would exceed the 4 GiB RIFF size limit: "
                              f"{os.strerror(errno.EFBIG)}: {str(path)!r}")
    with pytest.raises(WavError):
        w.write_silence(1)
    assert w.frames_written == limit                               # nothing of the refused writes taken
    w.close()
    h = np.fromfile(path, dtype=HEADER_DTYPE, count=1)[0]
    assert (h["riff_size"], h["data_size"]) == (HEADER_BYTES - 8 + limit * block, limit * block)
    assert os.path.getsize(path) == HEADER_BYTES + limit * block
    with wave.open(str(path), "rb") as r:
        assert r.getnframes() == limit
    end = np.fromfile(path, dtype="<i2", offset=HEADER_BYTES + (limit - 4) * block)
    np.testing.assert_array_equal(end, np.concatenate([np.zeros(channels, np.int16), tail]))


# ---- crashes ---------------------------------------------------------------------------

CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from pbx.core.wav import WavWriter
    path, how = sys.argv[1], sys.argv[2]
    pcm = (np.arange(2 * 2300) * 7).astype(np.int16)
    w = WavWriter(path, 8000, 2, flush_ms=100)           # flushes every 800 frames
    w.write(pcm[:2 * 2000])                              # 1600 flushed automatically
    w.flush()                                            # 2000 flushed
    w.write(pcm[2 * 2000:])                              # 300 more, only buffered
    print(w.frames_flushed, w.frames_written, flush=True)
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize(("how", "returncode"), [("exit", 3), ("kill", -signal.SIGKILL)])
def test_crash_keeps_every_flushed_frame(tmp_path: Path, how: str, returncode: int) -> None:
    path = tmp_path / "crash.wav"
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(path), how],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == returncode, proc.stderr
    assert proc.stdout.split() == ["2000", "2300"]
    pcm = (np.arange(2 * 2300) * 7).astype(np.int16)
    assert_holds(path, pcm[:2 * 2000], 8000, 2)
    assert os.path.getsize(path) == HEADER_BYTES + 2000 * 4


def test_dropping_the_writer_finalizes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gc.wav"
    pcm = tone(500, 8000, 0.25)
    w = WavWriter(path, 8000, flush_ms=100)
    w.write(pcm)
    assert w.frames_flushed == 1600
    del w
    gc.collect()
    assert_holds(path, pcm, 8000, 1)


# ---- errors ------------------------------------------------------------------------------

def test_missing_directory_raises_wav_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "a.wav"
    with pytest.raises(WavError) as err:
        WavWriter(path, 8000)
    assert isinstance(err.value, OSError)
    assert (err.value.errno, err.value.filename) == (errno.ENOENT, str(path))
    assert str(err.value) == (f"[Errno {errno.ENOENT}] cannot open WAV file for writing: "
                              f"{os.strerror(errno.ENOENT)}: {str(path)!r}")


def test_directory_path_raises_wav_error(tmp_path: Path) -> None:
    with pytest.raises(WavError) as err:
        WavWriter(tmp_path, 8000)
    assert (err.value.errno, err.value.filename) == (errno.EISDIR, str(tmp_path))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_device_fails_at_the_first_header_write() -> None:
    with pytest.raises(WavError) as err:
        WavWriter("/dev/full", 8000)
    assert err.value.errno == errno.ENOSPC
    assert str(err.value).startswith(f"[Errno {errno.ENOSPC}] cannot update WAV header: ")


RLIMIT_SCRIPT = textwrap.dedent("""
    import json, os, resource, signal, sys
    import numpy as np
    from pbx.core.errors import WavError
    from pbx.core.wav import WavWriter
    path = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)         # get EFBIG instead of being killed
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (44 + 2 * 1600 + 500, hard))  # 3rd flush: 500 of 1600 bytes
    pcm = (np.arange(2400) * 13).astype(np.int16)
    out = {}
    w = WavWriter(path, 8000, 1, flush_ms=100)
    try:
        w.write(pcm)
    except WavError as e:
        out["error"] = [e.errno, str(e)]
    out["after_error"] = [w.frames_flushed, w.frames_written, os.path.getsize(path)]
    with open(path, "rb") as f:
        out["snapshot"] = f.read().hex()
    try:
        w.flush()
    except WavError as e:
        out["retry_error"] = e.errno
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    w.flush()
    out["after_retry"] = [w.frames_flushed, w.frames_written, os.path.getsize(path)]
    w.close()
    print(json.dumps(out))
""")


def test_write_error_leaves_a_valid_file_and_a_retryable_writer(tmp_path: Path) -> None:
    path = tmp_path / "limited.wav"
    proc = subprocess.run([sys.executable, "-c", RLIMIT_SCRIPT, str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["error"] == [errno.EFBIG, f"[Errno {errno.EFBIG}] cannot write WAV audio data: "
                                         f"{os.strerror(errno.EFBIG)}: {str(path)!r}"]
    # Two flushes made it; the third wrote 500 stray bytes past the data chunk, header untouched.
    assert out["after_error"] == [1600, 2400, 44 + 3200 + 500]
    assert out["retry_error"] == errno.EFBIG
    pcm = (np.arange(2400) * 13).astype(np.int16)
    snapshot = tmp_path / "snapshot.wav"
    snapshot.write_bytes(bytes.fromhex(out["snapshot"]))
    assert_holds(snapshot, pcm[:1600], 8000, 1)
    # Once writes succeed again the same flush is redone at the same offset.
    assert out["after_retry"] == [2400, 2400, 44 + 4800]
    assert_holds(path, pcm, 8000, 1)


TMPFS_SCRIPT = textwrap.dedent("""
    import json, os, shutil, sys
    import numpy as np
    from pbx.core.errors import WavError
    from pbx.core.wav import WavWriter
    mnt, out_dir = sys.argv[1], sys.argv[2]
    with open(os.path.join(mnt, "filler"), "wb") as f:
        f.write(bytes(16384))                            # freed later to show a retry succeeds
    pcm = (np.arange(800) * 5).astype(np.int16)
    out = {}
    w = WavWriter(os.path.join(mnt, "rec.wav"), 8000, 1, flush_ms=100)
    try:
        for i in range(1000):
            w.write(pcm)
    except WavError as e:
        out["error"] = [e.errno, str(e)]
    out["after_error"] = [w.frames_flushed, w.frames_written]
    shutil.copyfile(os.path.join(mnt, "rec.wav"), os.path.join(out_dir, "full.wav"))
    try:
        w.close()
    except WavError as e:
        out["close_error"] = e.errno
    out["closed"] = w.closed
    os.remove(os.path.join(mnt, "rec.wav"))
    w = WavWriter(os.path.join(mnt, "rec2.wav"), 8000, 1, flush_ms=100)
    try:
        for i in range(1000):
            w.write(pcm)
    except WavError as e:
        out["error2"] = e.errno
    os.remove(os.path.join(mnt, "filler"))
    w.flush()
    out["after_free"] = [w.frames_flushed, w.frames_written]
    w.close()
    shutil.copyfile(os.path.join(mnt, "rec2.wav"), os.path.join(out_dir, "freed.wav"))
    print(json.dumps(out))
""")


def tmpfs_available() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not tmpfs_available(), reason="needs root and unshare -m to mount a tiny tmpfs")
def test_disk_full_raises_wav_error_and_keeps_the_file_valid(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    shell = 'mount -t tmpfs -o size=64k tmpfs "$1" && exec "$2" -c "$3" "$1" "$4"'
    proc = subprocess.run(["unshare", "-m", "sh", "-c", shell, "sh", str(mnt), sys.executable, TMPFS_SCRIPT,
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    flushed, written = out["after_error"]
    assert out["error"][0] == errno.ENOSPC
    assert out["error"][1].startswith(f"[Errno {errno.ENOSPC}] cannot write WAV audio data: ")
    assert 0 < flushed < written and written - flushed <= 800      # one flush interval lost at most
    assert flushed % 800 == 0
    pcm = (np.arange(800) * 5).astype(np.int16)
    assert_holds(tmp_path / "full.wav", np.tile(pcm, flushed // 800), 8000, 1)
    # close() still closes the descriptor, and says that the last frames did not make it.
    assert out["close_error"] == errno.ENOSPC and out["closed"] is True
    # Second recording: after space is freed, the failed flush is retried and nothing is lost.
    assert out["error2"] == errno.ENOSPC
    flushed2, written2 = out["after_free"]
    assert flushed2 == written2
    assert_holds(tmp_path / "freed.wav", np.tile(pcm, written2 // 800), 8000, 1)


# ---- the Python API -----------------------------------------------------------------------

def test_use_after_close_raises_value_error(tmp_path: Path) -> None:
    w = WavWriter(tmp_path / "c.wav", 16000, 2)
    w.write(np.zeros(640, np.int16))
    w.close()
    w.close()                                                      # idempotent
    assert w.closed and (w.frames_written, w.frames_flushed) == (320, 320)
    for call in (lambda: w.write(np.zeros(640, np.int16)), w.flush, lambda: w.write_silence(1)):
        with raises_exactly(ValueError, "WavWriter is closed"):
            call()


def test_length_not_a_multiple_of_channels(tmp_path: Path) -> None:
    with WavWriter(tmp_path / "m.wav", 16000, 2) as w, \
            raises_exactly(ValueError, "pcm has 641 samples, not a multiple of 2 channels"):
        w.write(np.zeros(641, np.int16))


def test_rejects_non_int16_audio(tmp_path: Path) -> None:
    with WavWriter(tmp_path / "t.wav", 8000) as w, pytest.raises(ValueError):
        w.write(np.zeros(160, np.float32))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sample_rate": 0}, "sample_rate must be between 1 and 384000 Hz, got 0"),
    ({"channels": 0}, "channels must be between 1 and 8, got 0"),
    ({"channels": 9}, "channels must be between 1 and 8, got 9"),
    ({"flush_ms": 0}, "flush_ms must be between 1 and 10000, got 0"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    args = {"sample_rate": 8000, **kwargs}
    with raises_exactly(ValueError, message):
        WavWriter(tmp_path / "x.wav", **args)
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("kwargs", [{"flush_ms": 2**53}, {"sample_rate": 2**53}, {"channels": -2**63 - 1}])
def test_an_argument_beyond_int_closes_no_descriptor(tmp_path: Path, kwargs: dict[str, int]) -> None:
    """The conversion fails before __cinit__'s body: the half-built writer must not close fd 0."""
    saved = os.dup(0)
    try:
        with pytest.raises(OverflowError):
            WavWriter(tmp_path / "x.wav", **{"sample_rate": 8000, **kwargs})
        gc.collect()
        os.fstat(0)   # EBADF: the failed writer closed this process's stdin (or whatever held fd 0)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert not (tmp_path / "x.wav").exists()


def test_negative_silence(tmp_path: Path) -> None:
    with WavWriter(tmp_path / "n.wav", 8000) as w, raises_exactly(ValueError, "frames must be >= 0, got -1"):
        w.write_silence(-1)


def test_properties_and_path_types(tmp_path: Path) -> None:
    with WavWriter(tmp_path / "p.wav", 22050, 2, flush_ms=50) as w:
        assert (w.path, w.sample_rate, w.channels, w.closed) == (str(tmp_path / "p.wav"), 22050, 2, False)
        w.write(np.zeros(2 * 1101, np.int16))
        assert (w.frames_written, w.frames_flushed) == (1101, 0)
        w.write(np.zeros(2, np.int16))                             # 50 ms at 22050 Hz is 1102 frames
        assert w.frames_flushed == 1102
    with WavWriter(os.fsencode(tmp_path / "b.wav"), 8000) as w:
        assert w.path == str(tmp_path / "b.wav")
    assert (tmp_path / "b.wav").read_bytes() == header(8000, 1, 0)

