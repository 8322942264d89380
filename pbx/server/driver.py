"""Runs one call's core on the event loop: the thin asyncio shell around :class:`pbx.call.core.Call`.

The driver feeds the core what happens (commands from the control socket, typed media events, the
results of provider work, the clock at its timer) and, after each input, :meth:`CallDriver.flush`
sends the events the core produced and carries out its actions: files on worker threads, providers in
tasks, signalling through the transport, pings through the control socket. It holds no call logic.

Ordering: the actions an ``invite``/``accept`` starts before its answer (opening the recording and the
ASR stream) finish before the next message is read, so each command sees the call as the one before it
left it. Everything else runs beside the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbx.asr.base import AsrStream
from pbx.call.actions import (
    Answer,
    Cancel,
    Close,
    CloseAsr,
    CloseMediaPass,
    CloseRecording,
    Connect,
    Disconnect,
    Load,
    MediaPassMarks,
    OpenAsr,
    OpenMediaPass,
    OpenRecording,
    Refer,
    Reject,
    Ring,
    SendPing,
    Synthesize,
    WakeAsr,
)
from pbx.call.core import Call, CallSettings
from pbx.call.media import MediaEvent, Pcm, Recording
from pbx.call.playback import RATE
from pbx.call.speech import Feed
from pbx.core.wav import WavWriter
from pbx.errors import PbxError, ProtocolError
from pbx.media.loader import MediaLoader
from pbx.protocol import Command, Event, HangupReason, Initiator, RecorderOption
from pbx.providers import ProviderRegistry
from pbx.server.control import ControlSocket
from pbx.server.deadline import Deadline
from pbx.server.logcontext import CALL_ID
from pbx.server.media import EngineLeg, MediaRunner
from pbx.server.mediapass import MediaPassLink, framing_for
from pbx.server.recording import RecordingError, create_recording, finish_recording
from pbx.server.sipcalls import SipCalls
from pbx.server.transfer import Transfer
from pbx.server.transports import Transport
from pbx.tts.base import TtsRequest
from pbx.tts.cache import TtsCache

log = logging.getLogger(__name__)

FINISH_TIMEOUT_S = 30.0        # how long a closing connection waits for its call to finish
DEFAULT_PING_INTERVAL_S = 20.0
ASR_OPEN_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class CallServices:
    """What every call of a server shares."""

    media: MediaRunner
    providers: ProviderRegistry
    loader: MediaLoader
    recordings_dir: Path
    unregister: Callable[[CallDriver], None]
    sip: SipCalls | None = None          # the SIP port, for refer's transfer legs
    tts_cache: TtsCache | None = None    # non-streaming synthesis, kept on disk
    observe: Callable[[CallDriver, Event], None] | None = None   # every event sent (metrics, call record)


MIN_PING_INTERVAL_S = 0.2     # pingInterval is clamped to this range: one client cannot make the
MAX_PING_INTERVAL_S = 3600.0  # server ping it hundreds of times a second


def ping_interval(raw: str) -> float:
    """``pingInterval`` in seconds: 0 or less turns ping events off (WebSocket pings go on at the
    liveness interval); a value that is not a finite number means the default."""
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_PING_INTERVAL_S
    if not math.isfinite(value):
        return DEFAULT_PING_INTERVAL_S
    if value <= 0:
        return 0.0
    return min(max(value, MIN_PING_INTERVAL_S), MAX_PING_INTERVAL_S)


def settings_from_query(query: dict[str, str], call_id: str, epoch_offset_ms: float, *,
                        liveness_interval_s: float = 20.0, invite_timeout_s: float = 0.0) -> CallSettings:
    """The spec's connection parameters (``serverSideTrack``, ``pingInterval``/``ping``) as settings."""
    raw = query.get("pingInterval", query.get("ping", str(DEFAULT_PING_INTERVAL_S)))
    return CallSettings(call_id=call_id, server_track_id=query.get("serverSideTrack") or "serverSideTrack",
                        ping_interval_s=ping_interval(raw), liveness_interval_s=liveness_interval_s,
                        invite_timeout_s=invite_timeout_s, epoch_offset_ms=epoch_offset_ms)


def log_failure(what: str) -> None:
    """One line for a failure a client may be able to cause again and again (the traceback at debug:
    a deep one, such as a RecursionError's, would be megabytes per command)."""
    exc = sys.exc_info()[1]
    log.error("%s: %s: %.300s", what, type(exc).__name__, exc)
    log.debug("%s", what, exc_info=True)


class CallDriver:
    def __init__(self, services: CallServices, control: ControlSocket, call: Call,
                 transport: Callable[[CallDriver], Transport]) -> None:
        self.services = services
        self.control = control
        self.call = call
        self.id = call.id
        self.transport = transport(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gate: list[asyncio.Task[Any]] = []       # set-up the next message waits for
        self._work: dict[int, asyncio.Task[None]] = {}  # synthesis and loads, by playout item
        self._deadline = Deadline(self._on_timer)
        self._flushing = False
        self._asr_stream: AsrStream | None = None
        self._asr_worker: asyncio.Task[None] | None = None
        self._asr_wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._transfer: Transfer | None = None
        self._media_pass: MediaPassLink | None = None
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            OpenRecording: self._open_recording, CloseRecording: self._close_recording,
            Connect: self.transport.carry_out, Answer: self.transport.carry_out, Ring: self.transport.carry_out,
            Reject: self.transport.carry_out, Refer: self._refer,
            Disconnect: self.transport.carry_out, OpenAsr: self._open_asr, WakeAsr: self._wake_asr,
            CloseAsr: self._close_asr, Synthesize: self._synthesize, Load: self._load, Cancel: self._cancel,
            OpenMediaPass: self._open_media_pass, MediaPassMarks: self._media_pass_marks,
            CloseMediaPass: self._close_media_pass,
            SendPing: self._ping, Close: self._close,
        }

    @staticmethod
    def now_ms() -> float:
        return time.monotonic() * 1000.0     # the engine's clock (MediaRunner.now_ms)

    # -- the connection ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Read the client's messages until it leaves; return when the call has ended."""
        self.control.start()
        self.transport.start()
        self.flush()                   # arms the first ping
        try:
            await self.control.read(self.transport.on_audio, self._on_text)
        finally:
            self.end(HangupReason.CLIENT_DISCONNECT.value, Initiator.USER.value)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), FINISH_TIMEOUT_S)

    async def _on_text(self, message: Command | ProtocolError) -> bool:
        """One command; its set-up finishes before the next message. False once the call has ended."""
        self._receive(message)
        while self._gate:
            gate, self._gate = self._gate, []
            await asyncio.gather(*gate, return_exceptions=True)
        return not self.call.ended

    def _receive(self, message: Command | ProtocolError) -> None:
        now = self.now_ms()
        try:
            if isinstance(message, ProtocolError):
                self.call.refuse_message(message, now)
            else:
                self.call.receive_command(message, now)
        except Exception:   # a bug handling one command must not end the call
            log_failure(f"call {self.id}: handling {type(message).__name__} failed")
            self.call.refuse_message(PbxError(f"internal error handling {type(message).__name__}"), now)
        self.flush()

    def end(self, reason: str, initiator: str) -> None:
        """End the call (kill, shutdown, the client gone); the hangup event follows."""
        self.call.end(reason, initiator, self.now_ms())
        self.flush()

    async def finished(self, timeout: float = FINISH_TIMEOUT_S) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), timeout)

    def kill(self) -> None:
        self.end(HangupReason.KILLED.value, Initiator.SYSTEM.value)

    def listing(self) -> dict[str, Any]:
        return self.call.listing()

    # -- media (the leg's sink) ---------------------------------------------------------------------------
    def media_event(self, event: MediaEvent) -> None:
        self.call.media_event(event, self.now_ms())
        self.flush()

    def asr_audio(self, pcm: Pcm) -> None:
        """The engine's tap of the caller's audio: for ASR and for the media pass service, both."""
        self.call.asr_audio(pcm, self.now_ms())
        if self._media_pass is not None:
            self._media_pass.send_audio(pcm)
        self.flush()

    # -- outputs --------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Send the core's events, carry out its actions, re-arm its timer."""
        if self._flushing:
            return                     # the outer flush picks up what this input added
        self._flushing = True
        # this runs from the media tick and SIP callbacks too: their log records (and the tasks started
        # here) are about this call
        context = CALL_ID.set(self.id)
        observe = self.services.observe
        try:
            call = self.call
            while True:
                events = call.events_to_send()
                actions = call.actions_to_run()
                if not events and not actions:
                    break
                for event in events:
                    if not self.control.send_event(event, last=call.ended):
                        call.end(HangupReason.CLIENT_NOT_READING.value, Initiator.SYSTEM.value, self.now_ms(),
                                 (1008, "client not reading"))
                    if observe is not None:
                        observe(self, event)
                for action in actions:
                    self._handlers[type(action)](action)
        finally:
            self._flushing = False
            CALL_ID.reset(context)
        self._arm(self.call.get_timer())

    def _arm(self, when_ms: float | None) -> None:
        self._deadline.arm(None if when_ms is None else when_ms / 1000.0)

    def _on_timer(self) -> None:
        self.call.handle_timer(self.now_ms())
        self.flush()

    def _spawn(self, coro: Coroutine[Any, Any, Any], gate: bool = False) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if gate:
            self._gate.append(task)
        return task

    # -- refer ---------------------------------------------------------------------------------------------------
    def _refer(self, action: Refer) -> None:
        """A new SIP leg to the refer's callee, bridged to this call's leg when it answers (any call type)."""
        if self._transfer is not None:
            self._transfer.close()
            self._transfer = None
        if self.transport.refers_itself():
            self.transport.carry_out(action)
            return
        leg = self.call.leg
        if self.services.sip is None or self.services.sip.ua is None or not isinstance(leg, EngineLeg):
            self.call.transfer_done("refer needs the server's SIP port ([sip])", False, self.now_ms())
            return
        self._transfer = Transfer(self, self.services.sip, self.services.media, action.command, leg)
        self._transfer.start()

    # -- recording ------------------------------------------------------------------------------------------
    def _open_recording(self, action: OpenRecording) -> None:
        self._spawn(self._create_recording(action.option), gate=True)

    async def _create_recording(self, recorder: RecorderOption) -> None:
        """The file is created on a worker thread: creating a file can take milliseconds, which every
        other call's media would wait for."""
        recording: WavWriter | None = None
        error: str | None = None
        try:
            recording = await asyncio.to_thread(create_recording, self.services.recordings_dir, recorder)
        except RecordingError as exc:
            error = str(exc)
        except Exception as exc:   # a bug must not leave the call waiting for its recording
            log_failure(f"call {self.id}: creating the recording failed")
            error = f"cannot record to {recorder.recorder_file}: {type(exc).__name__}"
        self.call.recording_opened(recording, error, self.now_ms())
        self.flush()

    def _close_recording(self, action: CloseRecording) -> None:
        self._spawn(self._finish_recording(action.recording, action.discard))

    async def _finish_recording(self, recording: Recording, discard: bool) -> None:
        """The last flush and the final header, on a worker thread; the hangup event waits for it."""
        error: str | None = None
        if isinstance(recording, WavWriter):
            try:
                await asyncio.shield(asyncio.to_thread(finish_recording, recording, discard))
            except OSError as exc:
                error = str(exc)
        self.call.recording_closed(recording, error, self.now_ms())
        self.flush()

    # -- speech recognition -----------------------------------------------------------------------------------
    def _open_asr(self, action: OpenAsr) -> None:
        self._spawn(self._start_asr(action), gate=True)

    async def _start_asr(self, action: OpenAsr) -> None:
        try:
            # bounded: the next command waits for it, and a slow provider must not hold the call
            stream = await asyncio.wait_for(self.services.providers.open_asr(action.option), ASR_OPEN_TIMEOUT_S)
        except TimeoutError:
            self.call.asr_failed(PbxError(f"the asr stream did not open within {ASR_OPEN_TIMEOUT_S:g} s"),
                                 self.now_ms())
            self.flush()
            return
        except Exception as exc:
            if not isinstance(exc, PbxError):
                log_failure(f"call {self.id}: opening the asr stream failed")
            self.call.asr_failed(exc, self.now_ms())
            self.flush()
            return
        self._asr_stream = stream
        self.call.asr_opened(self.now_ms())
        if self._asr_stream is stream:      # not closed at once (the call ended meanwhile)
            self._asr_worker = self._spawn(self._recognise(stream))
        self.flush()

    def _wake_asr(self, action: WakeAsr) -> None:
        self._asr_wake.set()

    async def _recognise(self, stream: AsrStream) -> None:
        call = self.call
        while True:
            job = call.next_asr_job(self.now_ms())
            if job is None:
                self._asr_wake.clear()
                await self._asr_wake.wait()
                continue
            try:
                if isinstance(job, Feed):
                    call.asr_partials(await stream.feed(job.pcm), self.now_ms())
                else:
                    call.asr_final(await stream.end_utterance(), self.now_ms())
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # a provider bug must not end the call
                if not isinstance(exc, PbxError):
                    log_failure(f"call {self.id}: asr failed")
                call.asr_error(exc, self.now_ms())
            self.flush()

    def _close_asr(self, action: CloseAsr) -> None:
        stream, self._asr_stream = self._asr_stream, None
        worker, self._asr_worker = self._asr_worker, None
        if worker is not None:
            worker.cancel()
        if stream is not None:
            self._spawn(self._close_stream(stream, worker))

    async def _close_stream(self, stream: AsrStream, worker: asyncio.Task[None] | None) -> None:
        if worker is not None:
            with contextlib.suppress(BaseException):
                await worker
        try:
            await stream.close()
        except Exception:
            log_failure(f"call {self.id}: closing the asr stream failed")

    # -- playback work --------------------------------------------------------------------------------------------
    def _synthesize(self, action: Synthesize) -> None:
        self._work[action.item_id] = self._spawn(self._run_synthesis(action))

    async def _run_synthesis(self, action: Synthesize) -> None:
        error: BaseException | None = None
        try:
            providers = self.services.providers
            option = providers.tts_option(action.option)   # credentials from the environment
            request = action.request if option is action.option else TtsRequest.from_option(
                action.request.text, option, action.request.samplerate, action.request.cacheable)
            provider, cache = providers.tts(option), self.services.tts_cache
            chunks = (cache.synthesize(provider, request) if cache and request.cacheable
                      else provider.synthesize(request))
            async for chunk in chunks:
                self.call.tts_chunk(action.item_id, chunk, self.now_ms())
                self.flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # a provider bug must not take the call down
            if not isinstance(exc, PbxError):
                log_failure(f"call {self.id}: tts failed")
            error = exc
        self._work_done(action.item_id, error)

    def _load(self, action: Load) -> None:
        self._work[action.item_id] = self._spawn(self._run_load(action))

    async def _run_load(self, action: Load) -> None:
        error: BaseException | None = None
        try:
            pcm = await self.services.loader.load(action.url, RATE)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, PbxError):
                log_failure(f"call {self.id}: loading a play failed")
            error = exc
        else:
            self._work.pop(action.item_id, None)
            self.call.play_loaded(action.item_id, pcm, self.now_ms())
            self.flush()
            return
        self._work_done(action.item_id, error)

    def _work_done(self, item_id: int, error: BaseException | None) -> None:
        self._work.pop(item_id, None)
        self.call.work_done(item_id, error, self.now_ms())
        self.flush()

    def _cancel(self, action: Cancel) -> None:
        task = self._work.pop(action.item_id, None)
        if task is not None:
            task.cancel()

    # -- media pass -------------------------------------------------------------------------------------------------
    def _open_media_pass(self, action: OpenMediaPass) -> None:
        link = MediaPassLink(framing_for(action.option, self.id, action.parameters), self.services.providers.context,
                             self.call, self.now_ms, self.flush)
        self._media_pass = link
        self._spawn(link.run())

    def _media_pass_marks(self, action: MediaPassMarks) -> None:
        if self._media_pass is not None:
            self._media_pass.send_marks(action.names)

    def _close_media_pass(self, action: CloseMediaPass) -> None:
        link, self._media_pass = self._media_pass, None
        if link is not None:
            link.close()

    # -- liveness and the end -------------------------------------------------------------------------------------
    def _ping(self, action: SendPing) -> None:
        self._spawn(self._send_ping())

    async def _send_ping(self) -> None:
        waiter = await self.control.ping()
        if waiter is None:
            return
        with contextlib.suppress(Exception):
            await waiter
            self.call.pong(self.now_ms())
            self.flush()

    def _close(self, action: Close) -> None:
        self._arm(None)
        if self._transfer is not None:
            self._transfer.close()
            self._transfer = None
        for task in list(self._work.values()):
            task.cancel()
        self._work.clear()
        self.services.unregister(self)
        self._spawn(self._close_connection(action))

    async def _close_connection(self, action: Close) -> None:
        await self.control.close(action.code, action.reason)
        self._finished.set()
