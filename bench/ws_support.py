"""What the call-server benchmarks share: server processes, a lean WebSocket client, /proc CPU, stats.

- :class:`ServerProcess` starts ``python -m pbx serve`` (or the bare floor server, ``bench/ws_floor.py``)
  in its own process on a free loopback port, with a fresh data directory, and stops it with SIGTERM.
- :class:`WsClient` is a WebSocket client built on the ``websockets`` sans-I/O protocol over a plain
  asyncio transport: a load generator with hundreds of sessions in one process must spend as little
  CPU per frame as possible, and the arrival time of a message is taken in ``data_received``, before
  any task switch.
- :func:`process_cpu_s` reads utime + stime of a whole process (every thread, live or exited) from
  ``/proc/<pid>/stat``.
- The *watermarked prompt*: speech whose 20 ms frame ``k`` carries ``k`` in its first sample and
  ``k ^ WATERMARK_KEY`` in its second, so a client knows which frame of the prompt each binary
  message holds (the server plays 16 kHz PCM unchanged on a ``pcm`` call) and can tell late frames
  from lost ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATE = 16000
FRAME_SAMPLES = 320                 # 20 ms at 16 kHz
FRAME_BYTES = 2 * FRAME_SAMPLES
FRAME_S = 0.020
WATERMARK_KEY = 0x3A5C
PROMPT_NAME = "bench-prompt.wav"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- audio ---------------------------------------------------------------------------------------

def speech(text: str | None = None) -> np.ndarray:
    """espeak-ng speech at 16 kHz (support/audio.py, cached on disk)."""
    from support.audio import espeak_speech
    return espeak_speech(RATE) if text is None else espeak_speech(RATE, text=text)


def speech_frames(signal_: np.ndarray) -> list[bytes]:
    """The signal as 20 ms little-endian PCM frames (the tail padded with zeros)."""
    n = -(-len(signal_) // FRAME_SAMPLES)
    padded = np.zeros(n * FRAME_SAMPLES, dtype="<i2")
    padded[:len(signal_)] = signal_
    raw = padded.tobytes()
    return [raw[i * FRAME_BYTES:(i + 1) * FRAME_BYTES] for i in range(n)]


def watermarked_prompt(seconds: float) -> np.ndarray:
    """Looped speech, ``seconds`` long, whose frame k starts with the samples k and k ^ WATERMARK_KEY."""
    n = int(np.ceil(seconds / FRAME_S))
    if n >= 32768:
        raise ValueError(f"a watermarked prompt holds at most 32767 frames, asked for {n}")
    base = speech()
    audio = np.resize(base, n * FRAME_SAMPLES).astype(np.int16)
    k = np.arange(n, dtype=np.int16)
    audio[0::FRAME_SAMPLES] = k
    audio[1::FRAME_SAMPLES] = k ^ WATERMARK_KEY
    return audio


def frame_index(payload: bytes) -> int:
    """The prompt frame a 20 ms binary message holds, or -1 if it is not one (e.g. silence)."""
    if len(payload) < 4:
        return -1
    k = int.from_bytes(payload[0:2], "little", signed=True)
    check = int.from_bytes(payload[2:4], "little", signed=True)
    return k if k >= 0 and check == k ^ WATERMARK_KEY else -1


def write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(audio.astype("<i2").tobytes())


# -- processes -------------------------------------------------------------------------------------

def process_cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds; 1/CLK_TCK resolution."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK     # fields 14 and 15 of proc(5)


def cpu_wait_s(pid: int) -> float:
    """Time the threads of process ``pid`` spent runnable but waiting for a CPU (``schedstat``), seconds.

    Threads that have exited are not counted. A large value means another process took the CPU.
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pin(pid: int, cpus: set[int]) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, cpus)


def placement(cpus: set[int] | None, nice: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpus`` and sets its nice value (both optional)."""
    if cpus is None and nice == 0:
        return None

    def place() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        if nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    return place


class ServerProcess:
    """A server in its own process: ``kind`` is ``"pbx"`` (our call server) or ``"floor"``.

    ``extra_config`` is TOML appended to the pbx server's configuration (default: SIP on a free
    loopback port).

    Both get a fresh data directory whose ``media/`` holds the watermarked prompt, so both play
    the same audio with ``{"command": "play", "url": PROMPT_NAME}``.
    """

    def __init__(self, kind: str, prompt_seconds: float, log_level: str = "warning",
                 cpus: set[int] | None = None, nice: int = 0,
                 extra_config: str = '[sip]\naddr = "127.0.0.1:0"\n', workers: int = 1) -> None:
        self.kind = kind
        self.tmp = tempfile.TemporaryDirectory(prefix=f"pypbx-bench-{kind}-")
        self.data_dir = Path(self.tmp.name)
        media = self.data_dir / "media"
        media.mkdir()
        write_wav(media / PROMPT_NAME, watermarked_prompt(prompt_seconds))
        self.port = free_port()
        self.log_path = self.data_dir / "server.log"
        if kind == "pbx":
            config = self.data_dir / "config.toml"
            # workers = 1 by default: the measures below read one process (bench/load.py sums a tree)
            config.write_text(f'data_dir = "{self.data_dir}"\nlog_level = "{log_level}"\nworkers = {workers}\n'
                              f'{extra_config}')
            argv = [sys.executable, "-m", "pbx", "serve", "--config", str(config),
                    "--http-addr", f"127.0.0.1:{self.port}"]
        elif kind == "floor":
            argv = [sys.executable, str(BENCH / "ws_floor.py"), "--port", str(self.port),
                    "--prompt", str(media / PROMPT_NAME)]
        else:
            raise ValueError(f"unknown server kind {kind!r}")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=placement(cpus, nice))
        self.pid = self.proc.pid

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} server did not listen within {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()


# -- WebSocket client --------------------------------------------------------------------------------

class WsClient(asyncio.Protocol):
    """One /call session: JSON commands out, events and 20 ms binary frames in (with arrival times).

    ``on_binary(arrival, payload)`` and ``on_event(arrival, event)`` run inside ``data_received``;
    arrival is ``time.monotonic()`` when the bytes were read (one read may hold several messages).
    """

    def __init__(self, url: str) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_binary: Callable[[float, bytes], None] = lambda t, payload: None
        self.on_event: Callable[[float, dict[str, Any]], None] = lambda t, event: None
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[tuple[float, dict[str, Any]]]]] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.protocol.receive_data(data)
        self._flush()
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.BINARY:
                    self.on_binary(now, bytes(event.data))
                elif event.opcode is Opcode.TEXT:
                    self._text(now, json.loads(bytes(event.data)))
            elif isinstance(event, Response) and not self.opened.done():
                if self.protocol.state is State.OPEN:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(ConnectionError(f"handshake failed: {event.status_code}"))
        if self.protocol.state is State.CLOSED:
            self._close()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during handshake: {exc}"))
        self._close()

    # commands and audio
    def command(self, payload: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(payload).encode())
        self._flush()

    def send_audio(self, frame: bytes) -> None:
        self.protocol.send_binary(frame)
        self._flush()

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool]) -> asyncio.Future[tuple[float, dict[str, Any]]]:
        """A future for the next event (after now) matching ``predicate``: (arrival, event)."""
        future: asyncio.Future[tuple[float, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        return future

    def close(self) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self._flush()
        elif self.transport is not None:
            self.transport.close()

    # internals
    def _text(self, now: float, event: dict[str, Any]) -> None:
        self.events.append((now, event))
        self.on_event(now, event)
        if self._waiters:
            keep = []
            for predicate, future in self._waiters:
                if future.done():
                    continue
                if predicate(event):
                    future.set_result((now, event))
                else:
                    keep.append((predicate, future))
            self._waiters = keep

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
        if self.protocol.close_expected() and self.protocol.state is State.CLOSED:
            transport.close()

    def _close(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(ConnectionError("connection closed"))
        self._waiters = []


async def open_session(port: int, call_id: str, host: str = "127.0.0.1", query: str = "",
                       path: str = "/call") -> WsClient:
    """Connect to ``<path>?id=call_id`` (``/call`` by default) and finish the WebSocket handshake."""
    url = f"ws://{host}:{port}{path}?id={call_id}{query}"
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: WsClient(url), host, port)
    await asyncio.wait_for(client.opened, 30.0)
    return client


async def http_get_json(port: int, path: str, host: str = "127.0.0.1") -> Any:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


# -- statistics --------------------------------------------------------------------------------------

def percentile(values: list[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (linear interpolation); NaN for no values."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"
