"""pbx.core.ten: the optional TEN VAD bank (C calls into the ten-vad package's libten_vad).

Tests marked ``ten`` need the package and Debian's libc++1 and are skipped, with the reason, when
the library cannot be loaded.  They compare the bank with the package's own ctypes detector
(support/oracles/ten.py) bit for bit, check it on espeak-ng speech, silence and quiet noise, and pin
the library's hop behaviour documented in ten.pyx.  The tests without the marker always run: they
check the errors when the package, its library, libc++ or a symbol is missing, simulated with a
patched ``importlib.util.find_spec`` and small shared libraries built here.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pbx.core import ten
from pbx.core.ten import MISSING_MESSAGE, TenBank
from support.audio import espeak_speech, frames

MISSING = ("vad type 'ten' needs the optional ten-vad package (pip install 'pypbx[ten]') "
           "and Debian's libc++1")


def load_error() -> str | None:
    try:
        TenBank(1)
    except ImportError as exc:
        return str(exc)
    return None


LOAD_ERROR = load_error()
needs_ten = pytest.mark.skipif(LOAD_ERROR is not None, reason=f"ten-vad cannot be loaded: {LOAD_ERROR}")


def whole_frames(pcm: np.ndarray, size: int) -> list[np.ndarray]:
    return frames(pcm[:len(pcm) // size * size], size)


def run_bank(bank: TenBank, slot: int, pcm: np.ndarray, chunk: int = 320) -> np.ndarray:
    """Feed ``pcm`` in chunks through process_into, the way the engine would; all probabilities."""
    out = np.empty(chunk // bank.hop, np.float32)
    probs = []
    for f in whole_frames(pcm, chunk):
        n = bank.process_into(slot, f, out)
        assert n == chunk // bank.hop
        probs.append(out.copy())
    return np.concatenate(probs)


def scene() -> np.ndarray:
    """0.5 s of silence, the espeak sentence pair, 0.5 s of silence (16 kHz)."""
    pause = np.zeros(8000, np.int16)
    return np.concatenate([pause, espeak_speech(16000), pause])


# ---- with the package ------------------------------------------------------------------------

@pytest.mark.ten
@needs_ten
@pytest.mark.parametrize(("hop", "chunk"), [(160, 320), (256, 1280)])
def test_probabilities_equal_the_package_detector(hop: int, chunk: int) -> None:
    from support.oracles import ten as oracle

    pcm = scene()
    bank = TenBank(2, hop=hop)
    bank.enable(1)
    ours = run_bank(bank, 1, pcm, chunk)
    ref = oracle.probabilities(pcm[:len(ours) * hop], hop)
    assert len(ours) == len(ref) > 400
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.ten
@needs_ten
def test_library_details() -> None:
    bank = TenBank(3)
    spec = importlib.util.find_spec("ten_vad")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    assert bank.library == ten.library_path() == str(folder / "lib/Linux/x64/libten_vad.so")
    assert re.fullmatch(r"\d+\.\d+\.\d+", bank.version)    # "2.1.0" in ten-vad 1.0.6.9
    assert (bank.max_legs, bank.hop) == (3, 160)
    assert (ten.RATE, ten.FRAME, ten.HOPS) == (16000, 320, (160, 256))


@pytest.mark.ten
@needs_ten
def test_high_on_speech_low_on_silence_and_quiet_noise() -> None:
    speech = espeak_speech(16000)
    bank = TenBank(3)
    for slot in range(3):
        bank.enable(slot)
    probs = run_bank(bank, 0, speech)
    # 10 ms hops whose speech is within 30 dB of the loudest one
    rms = np.array([np.sqrt(np.mean(h.astype(np.float64) ** 2)) for h in whole_frames(speech, 160)])
    active = rms[:len(probs)] > rms.max() * 10 ** (-30 / 20)
    assert active.mean() > 0.7
    assert (probs[active] >= 0.5).mean() > 0.95    # measured 0.98
    assert probs.mean() > 0.7                       # measured 0.81

    silence = run_bank(bank, 1, np.zeros(32000, np.int16))
    assert silence[0] == -1.0                       # hop 0: no complete 256-sample frame yet
    assert silence[1:].max() < 0.3                  # measured 0.25

    rng = np.random.default_rng(1)
    noise = np.round(rng.standard_normal(32000) * 32768 * 10 ** (-60 / 20)).astype(np.int16)   # -60 dBFS
    quiet = run_bank(bank, 2, noise)
    assert quiet.max() < 0.5 and quiet.mean() < 0.25    # measured 0.43 and 0.17


@pytest.mark.ten
@needs_ten
def test_slots_are_independent() -> None:
    speech = espeak_speech(16000)[:32000]
    rng = np.random.default_rng(3)
    noise = np.round(rng.standard_normal(32000) * 300).astype(np.int16)
    alone_a = run_bank(enabled(TenBank(1), 0), 0, speech)
    alone_b = run_bank(enabled(TenBank(1), 0), 0, noise)

    bank = enabled(TenBank(4), 0, 3)
    out = np.empty(2, np.float32)
    got_a, got_b = [], []
    for fa, fb in zip(whole_frames(speech, 320), whole_frames(noise, 320), strict=True):
        bank.process_into(3, fa, out)
        got_a.append(out.copy())
        bank.process_into(0, fb, out)
        got_b.append(out.copy())
    np.testing.assert_array_equal(np.concatenate(got_a), alone_a)
    np.testing.assert_array_equal(np.concatenate(got_b), alone_b)
    assert not np.array_equal(alone_a, alone_b)


def enabled(bank: TenBank, *slots: int) -> TenBank:
    for slot in slots:
        bank.enable(slot)
    return bank


@pytest.mark.ten
@needs_ten
def test_enable_again_restarts_and_disable_frees() -> None:
    pcm = scene()[:16000]
    bank = enabled(TenBank(2), 0)
    first = run_bank(bank, 0, pcm)
    bank.enable(0, 0.7)                      # a fresh detector: same probabilities from the start
    np.testing.assert_array_equal(run_bank(bank, 0, pcm), first)
    assert bank.enabled(0) and not bank.enabled(1)
    bank.disable(0)
    bank.disable(0)                          # no-op
    assert not bank.enabled(0)
    with pytest.raises(ValueError, match=r"^slot 0 is not enabled$"):
        bank.process(0, pcm[:320])


@pytest.mark.ten
@needs_ten
def test_hop_160_reports_the_latest_256_sample_frame() -> None:
    """The library infers per 256 samples whatever the hop (see ten.pyx): pin that behaviour."""
    pcm = scene()[:5 * 1280 * 4]
    p160 = run_bank(enabled(TenBank(1, hop=160), 0), 0, pcm, 320)
    p256 = run_bank(enabled(TenBank(1, hop=256), 0), 0, pcm, 1280)
    k = np.arange(len(p160))
    latest = (k + 1) * 160 // 256 - 1
    assert p160[0] == -1.0
    np.testing.assert_array_equal(p160[1:], p256[latest[1:]])


@pytest.mark.ten
@needs_ten
def test_process_allocating_form_and_argument_errors() -> None:
    pcm = scene()[8000:8000 + 640]
    bank = enabled(TenBank(2), 1)
    ref = run_bank(enabled(TenBank(1), 0), 0, pcm)
    np.testing.assert_array_equal(bank.process(1, pcm), ref)
    assert bank.process(1, pcm[:320]).dtype == np.float32

    with pytest.raises(ValueError, match=r"^slot 2 out of range 0\.\.1$"):
        bank.enable(2)
    with pytest.raises(ValueError, match=r"^slot -1 out of range 0\.\.1$"):
        bank.process(-1, pcm)
    with pytest.raises(ValueError, match=r"^slot 2 out of range 0\.\.1$"):
        bank.disable(2)
    with pytest.raises(ValueError, match=r"^threshold must be in \[0, 1\]$"):
        bank.enable(0, 1.5)
    assert not bank.enabled(0)
    with pytest.raises(ValueError, match=r"^pcm must hold a positive multiple of 160 samples, got 300$"):
        bank.process(1, pcm[:300])
    with pytest.raises(ValueError, match=r"^pcm must hold a positive multiple of 160 samples, got 0$"):
        bank.process_into(1, pcm[:0], np.empty(2, np.float32))
    with pytest.raises(ValueError, match=r"^out holds 1 probabilities, 2 needed$"):
        bank.process_into(1, pcm[:320], np.empty(1, np.float32))
    with pytest.raises(TypeError, match=r"^pcm must hold int16 samples, got format 'f'$"):
        bank.process(1, pcm.astype(np.float32))
    with pytest.raises(ValueError, match=r"^slot 0 is not enabled$"):
        bank.process_into(0, pcm, np.empty(4, np.float32))
    big = TenBank(1, hop=256)
    big.enable(0)
    with pytest.raises(ValueError, match=r"^pcm must hold a positive multiple of 256 samples, got 320$"):
        big.process(0, pcm[:320])


# ---- without the package (always run) ----------------------------------------------------------

def test_constructor_arguments_are_checked_before_loading() -> None:
    with pytest.raises(ValueError, match=r"^max_legs must be positive$"):
        TenBank(0)
    with pytest.raises(ValueError, match=r"^hop must be 160 or 256$"):
        TenBank(1, hop=320)


def test_module_imports_without_touching_the_package() -> None:
    code = "import sys, pbx.core.ten; sys.exit('ten_vad' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def fake_package(monkeypatch: pytest.MonkeyPatch, folder: Path | None) -> None:
    """Make find_spec('ten_vad') answer None or a package living in ``folder``, on Linux x86_64."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "ten_vad":
            return real(name, package)
        if folder is None:
            return None
        spec = importlib.machinery.ModuleSpec("ten_vad", None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")


def test_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MISSING_MESSAGE == MISSING
    fake_package(monkeypatch, None)
    message = f"{MISSING}: the ten_vad package is not installed"
    with pytest.raises(ImportError) as info:
        TenBank(4)
    assert str(info.value) == message
    assert info.value.name == "ten_vad"
    with pytest.raises(ImportError) as info:
        ten.library_path()
    assert str(info.value) == message


def test_missing_library_file_and_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_package(monkeypatch, tmp_path)
    with pytest.raises(ImportError) as info:
        TenBank(4)
    assert str(info.value) == f"{MISSING}: {tmp_path}/lib/Linux/x64/libten_vad.so does not exist"
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(ImportError) as info:
        TenBank(4)
    assert str(info.value) == f"{MISSING}: ten-vad ships no library for Linux aarch64"


def place_library(folder: Path, library: Path) -> Path:
    target = folder / "lib" / "Linux" / "x64" / "libten_vad.so"
    target.parent.mkdir(parents=True)
    shutil.copy(library, target)
    return target


def test_unloadable_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not an ELF file" * 10)
    target = place_library(tmp_path / "pkg", junk)
    fake_package(monkeypatch, tmp_path / "pkg")
    with pytest.raises(ImportError) as info:
        TenBank(4)
    assert str(info.value).startswith(f"{MISSING}: {target}: ")


def compile_library(folder: Path, name: str, source: str, *link: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (make deps installs build-essential)")
    src = folder / f"{name}.c"
    src.write_text(source)
    out = folder / f"lib{name}.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(src), f"-L{folder}", *link],
                   check=True, capture_output=True)
    return out


def test_missing_dependency_like_libcxx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A libten_vad whose dependency is gone, as the real one without Debian's libc++1."""
    build = tmp_path / "build"
    build.mkdir()
    compile_library(build, "gonedep", "int gone(void) { return 1; }\n")
    lib = compile_library(build, "fake_ten", "int gone(void);\nint ten_vad_create(void) { return gone(); }\n",
                          "-Wl,--no-as-needed", "-lgonedep")
    target = place_library(tmp_path / "pkg", lib)
    (build / "libgonedep.so").unlink()
    fake_package(monkeypatch, tmp_path / "pkg")
    with pytest.raises(ImportError) as info:
        TenBank(4)
    assert str(info.value) == (f"{MISSING}: libgonedep.so: cannot open shared object file: "
                               "No such file or directory")
    assert target.exists()


def test_library_without_the_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lib = compile_library(tmp_path, "not_ten", "int ten_vad_create(void) { return 0; }\n")
    target = place_library(tmp_path / "pkg", lib)
    fake_package(monkeypatch, tmp_path / "pkg")
    with pytest.raises(ImportError) as info:
        TenBank(4)
    assert str(info.value) == f"{MISSING}: {target}: undefined symbol: ten_vad_process"
