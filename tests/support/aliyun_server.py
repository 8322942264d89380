"""A local server that speaks Aliyun DashScope's WebSocket API (Paraformer real-time ASR, CosyVoice
TTS) as published, for tests (docs/providers/aliyun.md has the links).

It checks what a client sends and records it: the ``Authorization`` header (a wrong key gets the
handshake refused with HTTP 401 and DashScope's error body), the ``run-task`` shape and parameters,
the order of messages (audio or text only after ``task-started``, nothing after ``finish-task``),
and the audio (pcm frames of an even size, at most 64 KiB). Every departure is written to the
connection's :attr:`Task.problems`, which tests assert empty.

Behaviour is scripted per connection (connection ``i`` uses ``scripts[min(i, len - 1)]``):

- ASR: a list of ``(speech_ms, action)``; an action runs once the connection has received that much
  speech (frames louder than :data:`SPEECH_POWER`). Actions: ``{"text": ..., "final": bool}`` (a
  ``result-generated``), ``"heartbeat"``, ``"garbage"`` (a text frame that is not JSON), ``"binary"``,
  ``"fail"`` (``task-failed``), ``"drop"`` (the TCP connection aborted), ``"stall"`` (silence from
  then on). ``finish-task`` is answered with ``task-finished`` unless stalled.
- TTS: a fault name or None: ``"start-fail"`` (``task-failed`` instead of ``task-started``), or,
  after the first word's audio, ``"drop"``, ``"stall"``, ``"garbage"``, ``"fail"``. The audio is a
  tone per whitespace-separated word (:data:`WORD_MS` each, its own pitch); with
  ``word_timestamp_enabled`` the ``sentence-end`` event carries every word's times.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

SPEECH_POWER = 1.0e5          # mean square of a frame that counts as speech (about -25 dBFS)
WORD_MS = 120
ASR_RATES = (8000, 16000)
TTS_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
MAX_PACKET = 65536
AsrStep = tuple[int, Any]


@dataclass
class Task:
    """What one connection received, in order, and what was wrong with it."""

    path: str
    headers: dict[str, str]
    messages: list[str | bytes] = field(default_factory=list)
    run_task: dict[str, Any] | None = None
    task_id: str | None = None
    audio: bytearray = field(default_factory=bytearray)
    packets: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    finished: bool = False
    sent_audio: bytearray = field(default_factory=bytearray)
    problems: list[str] = field(default_factory=list)

    def actions(self) -> list[str]:
        return [json.loads(m)["header"]["action"] if isinstance(m, str) else "audio" for m in self.messages]


class DashScopeServer:
    def __init__(self, api_key: str = "sk-test-key", scripts: list[Any] | None = None,
                 refuse: int | None = None) -> None:
        self.api_key = api_key
        self.scripts = scripts or [None]
        self.refuse = refuse
        self.tasks: list[Task] = []
        self.url = ""
        self.connected = asyncio.Event()

    def _script(self, index: int) -> Any:
        return self.scripts[min(index, len(self.scripts) - 1)]

    # -- handshake -------------------------------------------------------------------------------
    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refuse is not None or request.headers.get("Authorization") != f"Bearer {self.api_key}":
            status = self.refuse or 401
            body = json.dumps({"code": "InvalidApiKey", "message": "Invalid API-key provided."})
            response = connection.respond(status, body)
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    # -- a connection ----------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        task = Task(ws.request.path, {k: v for k, v in ws.request.headers.raw_items()})
        index = len(self.tasks)
        self.tasks.append(task)
        self.connected.set()
        try:
            first = await ws.recv()
            task.messages.append(first)
            run = self._run_task(task, first)
            if run is None:
                await ws.close(1002, "expected run-task")
                return
            if run["payload"]["task"] == "asr":
                await self._asr(ws, task, self._script(index) or [])
            else:
                await self._tts(ws, task, self._script(index))
        except ConnectionClosed:
            pass

    def _run_task(self, task: Task, message: str | bytes) -> dict[str, Any] | None:
        try:
            run = json.loads(message)
            header, payload = run["header"], run["payload"]
            params = payload["parameters"]
        except (ValueError, KeyError, TypeError):
            task.problems.append(f"first message is not a run-task: {message!r:.80}")
            return None
        problems = []
        if header.get("action") != "run-task" or header.get("streaming") != "duplex":
            problems.append(f"bad run-task header {header}")
        if not isinstance(header.get("task_id"), str) or not header["task_id"]:
            problems.append("run-task without a task_id")
        kind = payload.get("task")
        function = {"asr": "recognition", "tts": "SpeechSynthesizer"}.get(kind)
        if payload.get("task_group") != "audio" or function is None or payload.get("function") != function:
            problems.append(f"bad run-task payload {payload}")
        if not isinstance(payload.get("model"), str) or payload.get("input") != {}:
            problems.append("run-task without a model or with input")
        if params.get("format") != "pcm":
            problems.append(f"format {params.get('format')!r}")
        if params.get("sample_rate") not in (ASR_RATES if kind == "asr" else TTS_RATES):
            problems.append(f"sample_rate {params.get('sample_rate')!r}")
        if kind == "tts" and (params.get("text_type") != "PlainText" or not isinstance(params.get("voice"), str)):
            problems.append("tts run-task without text_type PlainText or a voice")
        task.problems += problems
        task.run_task, task.task_id = run, header.get("task_id")
        return run

    def _event(self, task: Task, event: str, payload: dict[str, Any] | None = None, **header: Any) -> str:
        return json.dumps({"header": {"task_id": task.task_id, "event": event, "attributes": {}, **header},
                           "payload": {} if payload is None else payload}, ensure_ascii=False)

    def _failed(self, task: Task) -> str:
        return self._event(task, "task-failed", error_code="InvalidParameter",
                           error_message="the scripted failure")

    def _command(self, task: Task, message: str) -> str | None:
        """The action of a text message from the client, checked against the task."""
        try:
            frame = json.loads(message)
            action = frame["header"]["action"]
        except (ValueError, KeyError, TypeError):
            task.problems.append(f"not a command: {message!r:.80}")
            return None
        if frame["header"].get("task_id") != task.task_id or frame["header"].get("streaming") != "duplex":
            task.problems.append(f"{action} with header {frame['header']}")
        if task.finished:
            task.problems.append(f"{action} after finish-task")
        if action == "continue-task":
            text = frame.get("payload", {}).get("input", {}).get("text")
            if not isinstance(text, str):
                task.problems.append("continue-task without payload.input.text")
            else:
                task.texts.append(text)
        elif action == "finish-task":
            if frame.get("payload") != {"input": {}}:
                task.problems.append(f"finish-task payload {frame.get('payload')}")
            task.finished = True
        else:
            task.problems.append(f"unexpected action {action!r}")
        return str(action)

    # -- recognition -------------------------------------------------------------------------------
    async def _asr(self, ws: ServerConnection, task: Task, script: list[AsrStep]) -> None:
        assert task.run_task is not None
        rate = task.run_task["payload"]["parameters"]["sample_rate"]
        await ws.send(self._event(task, "task-started"))
        steps = list(script)
        speech_ms = 0.0
        speech_start: int | None = None
        stalled = False
        sentence = 0
        async for message in ws:
            task.messages.append(message)
            if isinstance(message, str):
                if self._command(task, message) == "finish-task" and not stalled:
                    await ws.send(self._event(task, "task-finished", {"output": {}, "usage": None}))
                continue
            if task.finished:
                task.problems.append("audio after finish-task")
            if len(message) % 2 or not 0 < len(message) <= MAX_PACKET:
                task.problems.append(f"an audio frame of {len(message)} bytes")
            task.packets.append(len(message))
            task.audio += message
            pcm = np.frombuffer(message[:len(message) // 2 * 2], "<i2").astype(np.float64)
            now_ms = len(task.audio) // 2 * 1000 // rate
            if len(pcm) and float(np.mean(pcm ** 2)) >= SPEECH_POWER:
                speech_ms += len(pcm) * 1000 / rate
                if speech_start is None:
                    speech_start = now_ms - len(pcm) * 1000 // rate
            while steps and not stalled and speech_ms >= steps[0][0]:
                _, action = steps.pop(0)
                if action == "drop":
                    ws.transport.abort()
                    return
                if action == "stall":
                    stalled = True
                elif action == "garbage":
                    await ws.send("{this is not json")
                elif action == "binary":
                    await ws.send(b"\x00\x01\x02")
                elif action == "heartbeat":
                    await ws.send(self._event(task, "result-generated", {"output": {"sentence": {
                        "begin_time": now_ms, "end_time": None, "text": "", "heartbeat": True,
                        "sentence_end": False, "words": []}}}))
                elif action == "fail":
                    await ws.send(self._failed(task))
                    await ws.close()
                    return
                else:
                    final = bool(action["final"])
                    await ws.send(self._event(task, "result-generated", {"output": {"sentence": {
                        "sentence_id": sentence, "begin_time": speech_start or 0,
                        "end_time": now_ms if final else None, "text": action["text"], "heartbeat": False,
                        "sentence_end": final, "words": []}}, "usage": {"duration": 1} if final else None}))
                    if final:
                        sentence += 1
                        speech_start = None

    # -- synthesis ---------------------------------------------------------------------------------
    async def _tts(self, ws: ServerConnection, task: Task, fault: str | None) -> None:
        assert task.run_task is not None
        params = task.run_task["payload"]["parameters"]
        if fault == "start-fail":
            await ws.send(self._failed(task))
            await ws.close()
            return
        await ws.send(self._event(task, "task-started"))
        async for message in ws:
            task.messages.append(message)
            if isinstance(message, bytes):
                task.problems.append("binary frame from a tts client")
                continue
            if self._command(task, message) == "finish-task":
                break
        if not task.texts:
            task.problems.append("finish-task before any continue-task")
        text = "".join(task.texts)
        rate = params["sample_rate"]
        words = []
        output = {"sentence": {"index": 0, "words": []}, "original_text": text}
        await ws.send(self._event(task, "result-generated", {"output": {**output, "type": "sentence-begin"}}))
        at = 0
        for n, word in enumerate(text.split()):
            start = text.index(word, at)
            at = start + len(word)
            words.append({"text": word, "begin_index": start, "end_index": at,
                          "begin_time": n * WORD_MS, "end_time": (n + 1) * WORD_MS})
            await ws.send(self._event(task, "result-generated", {"output": {**output, "type": "sentence-synthesis"}}))
            pcm = word_tone(n, rate)
            task.sent_audio += pcm
            await ws.send(pcm)
            if n == 0 and fault is not None:
                if fault == "drop":
                    ws.transport.abort()
                    return
                if fault == "stall":
                    await ws.wait_closed()
                    return
                if fault == "garbage":
                    await ws.send("{this is not json")
                    await ws.wait_closed()
                    return
                if fault == "fail":
                    await ws.send(self._failed(task))
                    await ws.close()
                    return
        end = {"sentence": {"index": 0, "words": words if params.get("word_timestamp_enabled") else []},
               "original_text": text, "type": "sentence-end"}
        await ws.send(self._event(task, "result-generated", {"output": end}))
        await ws.send(self._event(task, "task-finished", {"output": {}, "usage": {"characters": len(text)}}))
        await ws.wait_closed()


def word_tone(n: int, rate: int) -> bytes:
    """Word ``n``'s audio: WORD_MS of a tone at its own pitch, s16le."""
    t = np.arange(rate * WORD_MS // 1000) / rate
    return (8000 * np.sin(2 * np.pi * (300 + 50 * n) * t)).astype("<i2").tobytes()


@asynccontextmanager
async def dashscope_server(**options: Any) -> AsyncIterator[DashScopeServer]:
    """A :class:`DashScopeServer` on a free loopback port; ``.url`` is its WebSocket URL."""
    server = DashScopeServer(**options)
    async with serve(server._handle, "127.0.0.1", 0, process_request=server._check) as running:
        port = running.sockets[0].getsockname()[1]
        server.url = f"ws://127.0.0.1:{port}/api-ws/v1/inference"
        yield server
