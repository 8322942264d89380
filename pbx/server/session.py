"""One call: a WebSocket connection, its commands and events, and its media leg.

Lifecycle: ``new`` (connected) -> ``answered`` (invite/accept on /call answers at once) -> ``ended``.
Every session ends with exactly one ``hangup`` event (when the socket is still open to carry it),
whatever ended it: the client's ``hangup``, ``autoHangup``, ``/call/kill``, a ping timeout, a closed
socket, or server shutdown (reasons: :class:`pbx.protocol.HangupReason`).

Bad input never ends a call: a malformed or unknown command, a wrong field type, a command that
does not fit the state, an unreachable URL or a provider without credentials each produce one
``error`` event whose ``sender`` names the component, and the session goes on.

Audio on ``/call``: binary messages of any size in the call's codec are fed to the engine; the
engine's 20 ms frames go back as binary messages, paced by the media tick (the ``binary`` event
of the spec *is* the binary frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from pbx.asr.base import AsrStream
from pbx.core import engine as eng
from pbx.core.engine import Leg
from pbx.core.wav import WavWriter
from pbx.errors import PbxError, ProtocolError, StateError
from pbx.paths import OutsideDirectory, confine
from pbx.protocol import (
    MASK,
    SECRET_KEYS,
    AcceptCommand,
    AnswerEvent,
    AsrDeltaEvent,
    AsrFinalEvent,
    Attendee,
    CallOption,
    Command,
    DtmfEvent,
    ErrorEvent,
    Event,
    HangupCommand,
    HangupEvent,
    HangupReason,
    Initiator,
    InterruptCommand,
    InviteCommand,
    MetricsEvent,
    MuteCommand,
    PingEvent,
    PlayCommand,
    RecorderOption,
    ReferCommand,
    RejectCommand,
    RingingCommand,
    SilenceEvent,
    SpeakingEvent,
    SynthesisOption,
    TranscriptionOption,
    TtsCommand,
    UnmuteCommand,
    VADOption,
    parse_command,
    redact,
    serialize_event,
)
from pbx.server.playback import Playback
from pbx.tts.base import TtsProvider

if TYPE_CHECKING:
    from pbx.server.app import CallServer

log = logging.getLogger(__name__)

WEBSOCKET_CODECS = {"pcm", "pcmu", "pcma", "g722"}
SEND_QUEUE_LIMIT = 1000          # queued outbound messages before audio frames are dropped
ASR_ENDPOINT_MS = 500            # silence that ends an utterance for ASR (asrFinal)


def epoch_ms() -> int:
    return int(time.time() * 1000)


def attendee(uri: str | None) -> Attendee | None:
    """``sip:alice@example.com`` -> Attendee(alice, example.com, uri); a bare number -> username only."""
    if not uri:
        return None
    rest = uri.split(":", 1)[1] if uri.lower().startswith(("sip:", "sips:", "tel:")) else uri
    user, _, host = rest.partition("@")
    if not host:
        user, host = ("", user) if "." in user or ":" in user else (user, "")
    return Attendee(username=user, realm=host.split(";", 1)[0].split(":", 1)[0], source=uri)


class CallSession:
    """State of one WebSocket call session (see the module docstring)."""

    def __init__(self, server: CallServer, ws: ServerConnection, call_type: str, query: dict[str, str]) -> None:
        self.server = server
        self.ws = ws
        self.call_type = call_type
        self.id = query.get("id") or str(uuid.uuid4())
        self.dump_enabled = query.get("dump", "true").lower() not in ("false", "0", "no")
        self.server_track_id = query.get("serverSideTrack") or "serverSideTrack"
        self.ping_interval = self._ping_interval(query)
        self.created_ms = epoch_ms()
        self.answered_ms: int | None = None
        self.state = "new"
        self.option: CallOption | None = None
        self.leg: Leg | None = None
        self.leg_epoch_ms = 0
        self.leg_start_ms = 0.0
        self.asr_epoch_ms = 0                 # epoch ms of the ASR stream's time 0
        self.playback: Playback | None = None
        self.asr: AsrStream | None = None
        self.asr_name = ""
        self.asr_index = 0
        self.asr_queue: asyncio.Queue[npt.NDArray[np.int16] | None] | None = None
        self.utterance_start: int | None = None
        self.vad_events = False
        self._send_queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wait_input: asyncio.TimerHandle | None = None
        self._endpoint: asyncio.TimerHandle | None = None
        self._dump: IO[str] | None = None
        self._ended = False
        self._ending = False   # end() has started (it awaits the recording's close)
        self._writer_task: asyncio.Task[None] | None = None
        self._close_with = (1000, "call ended")   # the close code and reason once the call ended
        self.dropped_frames = 0

    # -- identity for /call/lists -------------------------------------------------------------------
    def listing(self) -> dict[str, Any]:
        return {"id": self.id, "call_type": self.call_type,
                "created_at": datetime.fromtimestamp(self.created_ms / 1000, UTC).isoformat().replace("+00:00", "Z"),
                "option": self.option.echo() if self.option is not None else {}}

    def _ping_interval(self, query: dict[str, str]) -> float:
        raw = query.get("pingInterval", query.get("ping", "20"))
        try:
            value = float(raw)
        except ValueError:
            value = 20.0
        return max(value, 0.0)

    # -- main loop ------------------------------------------------------------------------------------
    async def run(self) -> None:
        self._open_dump()
        writer = self._writer_task = asyncio.create_task(self._writer())
        if self.ping_interval > 0:
            self._spawn(self._pinger())
        reason, initiator = HangupReason.CLIENT_DISCONNECT.value, Initiator.USER.value
        try:
            async for message in self.ws:
                if self._ended:
                    break
                if self._ending:   # the hangup event is on its way (the recording is being finished)
                    continue
                if isinstance(message, str):
                    await self._on_text(message)
                else:
                    self._on_audio(message)
        except ConnectionClosed:
            pass
        finally:
            await self.end(reason, initiator)
            await self._send_queue.put(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 2.0)

    async def _on_text(self, text: str) -> None:
        self._dump_line("command", text)
        try:
            command = parse_command(text)
            await self._dispatch(command)
        except PbxError as exc:
            self.report_error(exc.sender, str(exc))

    def _on_audio(self, data: bytes) -> None:
        if self.leg is None:
            self.report_error("media", "audio received before the call was answered (send invite or accept first)")
            return
        if self.call_type != "websocket":
            self.report_error("media", f"binary audio is only accepted on /call, not on {self.call_type} calls")
            return
        self.server.media.engine.feed(self.leg, data)

    async def _dispatch(self, command: Command) -> None:
        handlers: dict[type[Any], Callable[[Any], Awaitable[None]]] = {
            InviteCommand: self._answer, AcceptCommand: self._answer, TtsCommand: self._tts,
            PlayCommand: self._play, InterruptCommand: self._interrupt, MuteCommand: self._mute,
            UnmuteCommand: self._mute, HangupCommand: self._hangup, RingingCommand: self._not_here,
            RejectCommand: self._not_here, ReferCommand: self._not_here,
        }
        await handlers[type(command)](command)

    # -- commands ---------------------------------------------------------------------------------------
    async def _answer(self, cmd: InviteCommand | AcceptCommand) -> None:
        name = cmd.COMMAND
        if self.state != "new":
            raise StateError(f"{name}: the call is already {self.state}")
        if self.call_type != "websocket":
            raise StateError(f"{name} on /call/{self.call_type} needs the {self.call_type} transport, "
                             "which is not built yet")
        option = cmd.option
        codec = option.codec.lower()
        if codec not in WEBSOCKET_CODECS:
            raise ProtocolError(f"{name}.option.codec: {option.codec!r} is not a WebSocket codec; "
                                "use pcm, pcmu, pcma or g722")
        self.option = option
        # The recording file is created on a worker thread (creating a file can take milliseconds,
        # which every other call's media would wait for), before the leg starts, so no frame is lost.
        recording = None if option.recorder is None else await self._open_recording(option.recorder)
        if self._ending:   # the call was killed while the file was being created
            if isinstance(recording, WavWriter):
                await asyncio.to_thread(recording.close)
            return
        media = self.server.media
        self.leg = media.add_leg(self, "stream", codec)
        self.leg_epoch_ms = epoch_ms()
        self.leg_start_ms = media.now_ms()    # the engine's clock at leg time 0
        self.state = "answered"
        self.answered_ms = self.leg_epoch_ms
        self.playback = Playback(self, option.tts or SynthesisOption(), self.server.loader)
        self.emit(AnswerEvent(track_id=self.id, timestamp=self.answered_ms, sdp=""))
        engine = media.engine
        if option.denoise:
            engine.set_denoise(self.leg, True)
        if option.vad is not None:
            self._configure_vad(self.leg, option.vad)
        if isinstance(recording, WavWriter):
            self._attach_recording(self.leg, recording)
        elif recording is not None:
            self.report_error("recorder", recording)
        if option.asr is not None:
            if option.vad is None:
                # ASR finals follow VAD silences: a default webrtc VAD runs, its events stay internal.
                engine.set_vad(self.leg, "webrtc")
            await self._start_asr(option.asr)

    def _configure_vad(self, leg: Leg, vad: VADOption) -> None:
        kind = vad.type.lower()
        if kind not in ("webrtc", "silero", "ten"):
            self.report_error("vad", f"unknown vad type {vad.type!r}; expected webrtc, silero or ten")
            return
        try:
            self.server.media.engine.set_vad(
                leg, kind, speech_padding_ms=vad.speech_padding, silence_padding_ms=vad.silence_padding,
                ratio=vad.ratio, voice_threshold=vad.voice_threshold, silence_timeout_ms=vad.silence_timeout,
                max_buffer_secs=float(vad.max_buffer_duration_secs))
        except (ValueError, ImportError) as exc:   # ImportError: the optional ten-vad is not installed
            self.report_error("vad", str(exc))
            return
        except OverflowError as exc:   # a time beyond the engine's C int
            self.report_error("vad", f"vad option out of range: {exc}")
            return
        self.vad_events = True

    async def _open_recording(self, recorder: RecorderOption) -> WavWriter | str:
        """The open writer, or why there is none (the error event's message)."""
        base = self.server.config.directory("recordings")
        try:
            path = confine(base, recorder.recorder_file)
        except OutsideDirectory:
            return (f"recorderFile {recorder.recorder_file} is outside the recordings directory "
                    f"{base.resolve()}")

        def create() -> WavWriter:
            path.parent.mkdir(parents=True, exist_ok=True)
            return WavWriter(path, recorder.samplerate, 2, flush_ms=recorder.ptime)

        try:
            return await asyncio.to_thread(create)
        except (OSError, ValueError, OverflowError) as exc:   # OverflowError: beyond the writer's C int
            return f"cannot record to {recorder.recorder_file}: {exc}"

    def _attach_recording(self, leg: Leg, writer: WavWriter) -> None:
        try:
            self.server.media.engine.attach_recorder(leg, writer)
        except ValueError as exc:   # a rate the engine cannot resample to
            writer.close()
            self.report_error("recorder", f"cannot record to {writer.path}: {exc}")

    async def _start_asr(self, option: TranscriptionOption) -> None:
        try:
            self.asr = await self.server.providers.open_asr(option)
        except PbxError as exc:
            self.report_error(getattr(exc, "sender", "asr"), str(exc))
            return
        if self.leg is None:   # the call ended while the stream opened (kill, ping timeout)
            with contextlib.suppress(Exception):
                await self.asr.close()
            return
        self.asr_name = self.server.providers.asr_name(option)
        self.asr_index = 1
        queue: asyncio.Queue[npt.NDArray[np.int16] | None] = asyncio.Queue()
        self.asr_queue = queue
        engine = self.server.media.engine
        engine.set_asr_tap(self.leg, True)
        # The tap takes frames from the engine's next one on: that frame is the ASR stream's time 0
        # (opening the stream took a while after the leg started).
        self.asr_epoch_ms = self.leg_epoch_ms + round(engine.next_frame_ms - self.leg_start_ms)
        self._spawn(self._asr_worker(self.asr, queue))

    async def _tts(self, cmd: TtsCommand) -> None:
        self._playback("tts").tts(cmd)

    async def _play(self, cmd: PlayCommand) -> None:
        self._playback("play").play(cmd)

    async def _interrupt(self, cmd: InterruptCommand) -> None:
        self._cancel_wait_input()
        if self.playback is not None:
            self.playback.interrupt(cmd.graceful)

    async def _mute(self, cmd: MuteCommand | UnmuteCommand) -> None:
        if self.leg is None:
            raise StateError(f"{cmd.COMMAND}: no call is answered yet")
        muted = isinstance(cmd, MuteCommand)
        target = cmd.track_id
        if target not in (None, self.id, self.server_track_id):
            raise ProtocolError(f"{cmd.COMMAND}: no track {target!r} (tracks: {self.id!r}, "
                                f"{self.server_track_id!r})")
        if target in (None, self.id):
            self.server.media.engine.set_inbound_mute(self.leg, muted)
        if target in (None, self.server_track_id) and self.playback is not None:
            self.playback.mute(muted)

    async def _hangup(self, cmd: HangupCommand) -> None:
        await self.end(cmd.reason, cmd.initiator or Initiator.USER.value)

    async def _not_here(self, cmd: RingingCommand | RejectCommand | ReferCommand) -> None:
        if self.call_type != "websocket":
            raise StateError(f"{cmd.COMMAND} on /call/{self.call_type} needs the {self.call_type} transport, "
                             "which is not built yet")
        raise StateError(f"{cmd.COMMAND} is not supported on /call (WebSocket audio) calls; "
                         "it applies to SIP calls on /call/sip")

    def _playback(self, name: str) -> Playback:
        if self.playback is None:
            raise StateError(f"{name}: no call is answered yet (send invite or accept first)")
        self._cancel_wait_input()
        return self.playback

    # -- engine output ---------------------------------------------------------------------------------
    def on_media_event(self, event: tuple[int, int, int, int, int, int, int]) -> None:
        _, kind, t, a, b, c, d = event
        if kind == eng.SPEAKING:
            self._cancel_wait_input()
            self._cancel_endpoint()      # the speaker went on: same utterance
            self.utterance_start = a
            if self.vad_events:
                self.emit(SpeakingEvent(track_id=self.id, timestamp=self.epoch_ms(t), start_time=self.epoch_ms(a)))
        elif kind == eng.SILENCE:
            if self.vad_events:
                self.emit(SilenceEvent(track_id=self.id, timestamp=self.epoch_ms(t), start_time=self.epoch_ms(a),
                                       duration=b))
            if self.asr_queue is not None and self.utterance_start is not None and self._endpoint is None:
                # The utterance ends ASR_ENDPOINT_MS into the silence unless speech resumes first: VAD's
                # silencePadding (100 ms by default) would cut phrases at the pauses between words.
                delay = max(ASR_ENDPOINT_MS - b, 0) / 1000.0
                self._endpoint = asyncio.get_running_loop().call_later(delay, self._end_utterance)
        elif kind == eng.SEGMENT_CAP:
            # maxBufferDurationSecs of continuous speech: finish this utterance, the next one goes on.
            if self.asr_queue is not None:
                self.asr_queue.put_nowait(None)
        elif kind == eng.DTMF:
            self._cancel_wait_input()
            self.emit(DtmfEvent(track_id=self.id, timestamp=self.epoch_ms(t), digit=chr(a)))
        elif kind in (eng.PLAY_STARTED_, eng.PLAY_ENDED_, eng.PLAY_DROPPED_):
            if self.playback is not None:
                self.playback.on_play_event(kind, t, a, b, c, d)
        elif kind == eng.RECORDER_ERROR:
            self.report_error("recorder", f"recording stopped: {os.strerror(a)}")
        elif kind == eng.INBOUND_OVERFLOW:
            self.report_error("media", f"inbound audio buffer full: {a} samples dropped "
                                       "(send audio in real time)")

    def on_media_out(self, data: bytes) -> None:
        if self._send_queue.qsize() >= SEND_QUEUE_LIMIT:
            self.dropped_frames += 1
            return
        self._send_queue.put_nowait(data)

    def on_asr_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        if self.asr_queue is not None:
            self.asr_queue.put_nowait(pcm)

    async def _asr_worker(self, asr: AsrStream, queue: asyncio.Queue[npt.NDArray[np.int16] | None]) -> None:
        while True:
            pcm = await queue.get()
            try:
                if pcm is None:
                    started = time.monotonic()
                    result = await asr.end_utterance()
                    if result is not None and result.text:
                        self.emit(AsrFinalEvent(track_id=self.id, timestamp=epoch_ms(), index=self.asr_index,
                                                start_time=self._asr_time(result.start_ms),
                                                end_time=self._asr_time(result.end_ms), text=result.text))
                        self.emit(MetricsEvent(timestamp=epoch_ms(), key=f"ttfb.asr.{self.asr_name}",
                                               duration=round((time.monotonic() - started) * 1000),
                                               data={"index": self.asr_index, "provider": self.asr_name}))
                        self.asr_index += 1
                    continue
                for partial in await asr.feed(pcm):
                    self.emit(AsrDeltaEvent(track_id=self.id, index=self.asr_index, timestamp=epoch_ms(),
                                            start_time=self._asr_time(partial.start_ms),
                                            end_time=self._asr_time(partial.end_ms), text=partial.text))
            except PbxError as exc:
                self.report_error(getattr(exc, "sender", "asr"), str(exc))
            except Exception as exc:   # a provider bug must not end the call
                log.exception("asr failed")
                self.report_error("asr", f"{self.asr_name} failed: {exc}")

    def _end_utterance(self) -> None:
        self._endpoint = None
        self.utterance_start = None
        if self.asr_queue is not None:
            self.asr_queue.put_nowait(None)   # end of utterance, after the audio queued before it

    def _cancel_endpoint(self) -> None:
        if self._endpoint is not None:
            self._endpoint.cancel()
            self._endpoint = None

    def _asr_time(self, ms: int | None) -> int | None:
        return None if ms is None else self.asr_epoch_ms + ms

    # -- PlaybackHost -----------------------------------------------------------------------------------
    def epoch_ms(self, leg_ms: int | None = None) -> int:
        return epoch_ms() if leg_ms is None else self.leg_epoch_ms + leg_ms

    def tts_provider(self, option: SynthesisOption) -> TtsProvider:
        return self.server.providers.tts(option)

    def auto_hangup(self) -> None:
        self._spawn(self.end(HangupReason.AUTOHANGUP.value, Initiator.SYSTEM.value))

    def start_wait_input(self, timeout_s: float, since_ms: int) -> None:
        self._cancel_wait_input()
        loop = asyncio.get_running_loop()
        self._wait_input = loop.call_later(timeout_s, self._input_timeout, since_ms)

    def _input_timeout(self, since_ms: int) -> None:
        self._wait_input = None
        now = epoch_ms()
        self.emit(SilenceEvent(track_id=self.server_track_id, timestamp=now, start_time=since_ms,
                               duration=now - since_ms))

    def _cancel_wait_input(self) -> None:
        if self._wait_input is not None:
            self._wait_input.cancel()
            self._wait_input = None

    # -- output ---------------------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if self._ended and not isinstance(event, HangupEvent):
            return
        text = serialize_event(event)
        self._dump_line("event", text)
        self._send_queue.put_nowait(text)

    def report_error(self, sender: str, message: str, code: int | None = None) -> None:
        log.info("call %s: %s error: %s", self.id, sender, message)
        self.emit(ErrorEvent(track_id=self.id, timestamp=epoch_ms(), sender=sender, error=message, code=code))

    async def _writer(self) -> None:
        while True:
            message = await self._send_queue.get()
            if message is None:
                return
            try:
                await self.ws.send(message)
            except ConnectionClosed:
                return

    async def _pinger(self) -> None:
        missed = 0
        waiter: Awaitable[float] | None = None
        while not self._ending:
            await asyncio.sleep(self.ping_interval)
            if self._ending:
                return
            if waiter is not None and not asyncio.ensure_future(waiter).done():
                missed += 1
                if missed >= 2:
                    self._close_with = (1011, "ping timeout")
                    await self.end(HangupReason.PING_TIMEOUT.value, Initiator.SYSTEM.value)
                    return
            else:
                missed = 0
            self.emit(PingEvent(timestamp=epoch_ms()))
            try:
                waiter = await self.ws.ping()
            except ConnectionClosed:
                return

    # -- ending -------------------------------------------------------------------------------------------
    async def end(self, reason: str | None, initiator: str | None) -> None:
        """Hang up once: the hangup event, then media, providers and the socket are released."""
        if self._ending:
            return
        self._ending = True
        self._cancel_wait_input()
        self._cancel_endpoint()
        if self.playback is not None:
            self.playback.close()
        cancelled = False
        if self.leg is not None:
            recording = self.server.media.remove_leg(self.leg)
            self.leg = None
            if recording is not None:
                cancelled = await self._finish_recording(recording)
        option = self.option
        self.emit(HangupEvent(
            track_id=self.id, timestamp=epoch_ms(), reason=reason, initiator=initiator,
            start_time=self.created_ms, hangup_time=epoch_ms(), answer_time=self.answered_ms,
            from_=attendee(option.caller) if option else None, to=attendee(option.callee) if option else None,
            extra=option.extra if option else None))
        self._ended = True
        self.state = "ended"
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if self.asr is not None and not cancelled:
            with contextlib.suppress(Exception):
                await self.asr.close()
        self.server.unregister(self)
        self._send_queue.put_nowait(None)
        if self._dump is not None:
            self._dump.close()
            self._dump = None
        self._spawn_close()
        if cancelled:
            raise asyncio.CancelledError

    async def _finish_recording(self, writer: WavWriter) -> bool:
        """Close the recording (last flush, final header) on a worker thread before the hangup event,
        so a client that fetches the file on hangup gets all of it. True if this task was cancelled
        meanwhile: the thread still finishes the file, and the hangup event still goes out."""
        closing = asyncio.ensure_future(asyncio.to_thread(writer.close))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            return True
        except OSError as exc:
            self.report_error("recorder", f"recording {writer.path} not finished: {exc}")
        return False

    def _spawn_close(self) -> None:
        async def close() -> None:
            if self._writer_task is not None:   # the writer sends the hangup event first (end() queued it)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._writer_task), 1.0)
            with contextlib.suppress(Exception):
                await self.ws.close(*self._close_with)
        asyncio.get_running_loop().create_task(close())

    def kill(self) -> None:
        self._spawn(self.end(HangupReason.KILLED.value, Initiator.SYSTEM.value))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- dump ---------------------------------------------------------------------------------------------
    def _open_dump(self) -> None:
        if not self.dump_enabled:
            return
        folder: Path = self.server.config.directory("dumps")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = confine(folder, f"{_safe_name(self.id)}.jsonl")
            # backslashreplace: a lone surrogate (valid in a JSON string) is written as its JSON escape
            self._dump = open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115 - closed in end()
        except (OSError, OutsideDirectory) as exc:
            log.warning("call %s: cannot open dump: %s", self.id, exc)

    def _dump_line(self, kind: str, text: str) -> None:
        if self._dump is None:
            return
        try:
            data: Any = redact(json.loads(text))
        except (ValueError, RecursionError):   # not JSON, or nested too deep to walk: mask by pattern
            data = _SECRET_VALUE.sub(r'\1"' + MASK + '"', text)[:1000]
        try:
            self._dump.write(json.dumps({"ts": epoch_ms(), kind: data}, ensure_ascii=False) + "\n")
            self._dump.flush()
        except OSError as exc:   # disk full, ...: the call goes on without its dump
            log.warning("call %s: dump stopped: %s", self.id, exc)
            with contextlib.suppress(OSError):
                self._dump.close()
            self._dump = None


# A secret's value in JSON text that does not parse (cut short, its closing quote may be missing).
_SECRET_VALUE = re.compile('("(?:' + "|".join(sorted(SECRET_KEYS)) + r')"\s*:\s*)"(?:[^"\\]|\\.)*("|\\?$)')


def _safe_name(call_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in call_id)[:128] or "call"

