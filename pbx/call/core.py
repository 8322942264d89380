"""One call, without I/O: commands, media events and provider results in; events, actions and a timer out.

The shape is ``websockets``' ``protocol.py`` and aioquic's connection: every input method takes the
time (``now_ms``: the engine's clock, ``time.monotonic()`` in milliseconds in production, anything in
tests), and afterwards the shell collects

- :meth:`Call.events_to_send`: events for the control WebSocket, in order;
- :meth:`Call.actions_to_run`: I/O for the shell to carry out (:mod:`pbx.call.actions`), whose
  outcomes come back through the inputs below;
- :meth:`Call.get_timer`: when to call :meth:`Call.handle_timer` next (None: no timer).

Operations on the leg (VAD, recorder, playout) are synchronous calls on the :class:`LegMedia` the
transport supplied. Which input is allowed in which state is :mod:`pbx.call.state`'s table; playback
is :class:`~pbx.call.playback.Playback`, speech recognition :class:`~pbx.call.speech.Recognition`.

Rules beyond the table:

- Bad input never ends a call: a malformed or refused command, a wrong option, an unusable recorder
  path, a provider without credentials each produce one ``error`` event whose ``sender`` names the
  component (``command``, ``vad``, ``recorder``, ``asr``, ``tts``, ``play``, ``media``).
- ``invite``/``accept``: the recording file is opened first, then the transport is asked to connect,
  so the leg records from its first frame. The ``answer`` event comes when the transport reports the
  leg; then denoise, VAD, the recorder and the ASR stream are set up, each reporting its own error.
- Every call ends with exactly one ``hangup`` event, whatever ended it; it follows the recording's
  close, so a client that fetches the file on hangup gets all of it. Nothing follows it.
- Timers: ``waitInputTimeout`` (a ``silence`` event of the server track once a track has ended and
  the caller has not spoken, pressed a key or sent a playback command since), ``handshakeTimeout``
  (from ``invite``/``accept`` to the answer), the invite timeout (a connection that sends no
  ``invite``, ``accept`` or ``ringing`` in time ends with ``handshake_timeout``), the ping (a ``ping``
  event and a WebSocket ping every ``pingInterval``, or WebSocket pings alone every liveness interval
  when the client asked for no ping events; two unanswered in a row end the call), ASR endpointing,
  and ``autoHangup`` (due the moment its track ends). None fires once the call is ending.
- RTP legs: an RTP timeout ends the call (``rtp_timeout``); latching and the peer's RTCP BYE are
  noted (:attr:`Call.latched_ms`, :attr:`Call.rtcp_bye_ms`): the signalling's BYE ends a call, not RTCP.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pbx.asr.base import AsrResult
from pbx.call.actions import (
    Action,
    Answer,
    Close,
    CloseAsr,
    CloseRecording,
    Connect,
    Disconnect,
    OpenAsr,
    OpenRecording,
    Refer,
    Reject,
    Ring,
    SendPing,
    WakeAsr,
)
from pbx.call.attendee import attendee
from pbx.call.media import (
    Dtmf,
    InboundOverflow,
    Latched,
    LegMedia,
    MediaEvent,
    Pcm,
    PlayDropped,
    PlayEnded,
    PlayStarted,
    RecorderError,
    Recording,
    RtcpBye,
    RtpTimeout,
    SegmentCap,
    Silence,
    Speaking,
)
from pbx.call.mediapass import MediaPass, check_option
from pbx.call.playback import Playback
from pbx.call.speech import Job, Recognition
from pbx.call.state import CallState, Signal, after_signal, dropped, next_state, refusal
from pbx.call.transport import TransportProfile
from pbx.errors import PbxError, ProtocolError
from pbx.protocol import (
    AcceptCommand,
    AddIceCandidateCommand,
    AnswerEvent,
    CallOption,
    Command,
    DtmfCommand,
    DtmfEvent,
    ErrorEvent,
    Event,
    HangupCommand,
    HangupEvent,
    HangupReason,
    IncomingEvent,
    Initiator,
    InterruptCommand,
    InviteCommand,
    MuteCommand,
    OtherEvent,
    PingEvent,
    PlayCommand,
    RecorderOption,
    ReferCommand,
    RejectCommand,
    RejectEvent,
    RingingCommand,
    RingingEvent,
    SilenceEvent,
    SpeakingEvent,
    SynthesisOption,
    TranscriptionOption,
    TtsCommand,
    UnmuteCommand,
    VADOption,
)
from pbx.tts.base import TtsChunk

VAD_KINDS = ("webrtc", "silero", "ten")
NORMAL_CLOSE = (1000, "call ended")
PING_TIMEOUT_CLOSE = (1011, "ping timeout")
MISSED_PINGS = 2             # unanswered pings in a row that end the call
MAX_DTMF_DIGITS = 32         # per command (the engine queues up to 64 per leg)
DTMF_DIGITS = re.compile(rf"[0-9*#A-D]{{1,{MAX_DTMF_DIGITS}}}")


class ProviderNames(Protocol):
    """Checks a provider name without creating anything (:class:`pbx.providers.ProviderRegistry`)."""

    def tts_name(self, option: SynthesisOption) -> str: ...
    def asr_name(self, option: TranscriptionOption) -> str: ...


@dataclass(frozen=True, slots=True)
class CallSettings:
    call_id: str
    server_track_id: str = "serverSideTrack"
    ping_interval_s: float = 20.0        # ping events (and WebSocket pings); 0: no ping events
    liveness_interval_s: float = 20.0    # WebSocket pings when there are no ping events; 0: none
    invite_timeout_s: float = 0.0        # time to the first invite/accept/ringing; 0: unlimited
    epoch_offset_ms: float = 0.0         # wall clock minus the engine clock: event timestamps

    @property
    def ping_every_s(self) -> float:
        """How often the client is pinged (events or not); 0: never."""
        return self.ping_interval_s or self.liveness_interval_s


class Call:
    """One call's logic (see the module docstring)."""

    def __init__(self, settings: CallSettings, profile: TransportProfile, providers: ProviderNames,
                 now_ms: float) -> None:
        self.settings = settings
        self.profile = profile
        self.providers = providers
        self.id = settings.call_id
        self.track_id = settings.call_id               # the caller's track
        self.server_track_id = settings.server_track_id
        self.state = CallState.NEW
        self._now = now_ms
        self.created_ms = self.epoch_ms()
        self.answered_ms: int | None = None
        self.ringing_ms: int | None = None
        self.option: CallOption | None = None
        self.leg: LegMedia | None = None
        self.playback: Playback | None = None
        self.recognition: Recognition | None = None
        self.media_pass: MediaPass | None = None
        self.vad_events = False
        self.latched_ms: int | None = None
        self.rtcp_bye_ms: int | None = None
        self._events: list[Event] = []
        self._actions: list[Action] = []
        # set-up in progress
        self._dial: Connect | Answer | None = None     # waits for the recording to open
        self._opening_recording = False
        self._recording: Recording | None = None       # open, not yet attached to a leg
        self._recording_error: str | None = None       # reported once the call is answered
        self._option_applied = False
        self._asr_name = ""
        self._asr_state = ""                            # "", "opening", "open"
        self._dialled = False                           # the transport was asked to connect or ring
        # ending
        self._hangup: tuple[str | None, str | None] = (None, None)
        self._ringtone: str | None = None               # ringing's ringtone, played on the early media
        self._waiting_sound = False                      # a ringtone or moh plays until the wait ends
        self._parties: tuple[str | None, str | None] = (None, None)   # an inbound call's caller, callee
        self._quality: dict[str, Any] = {}                 # the released leg's RTP figures, for hangup.extra
        self._close = NORMAL_CLOSE
        self._file_work = 0                             # recordings being opened or closed
        # timers (engine-clock ms)
        self._wait_input_at: float | None = None
        self._wait_input_since = 0
        self._handshake_at: float | None = None
        self._auto_hangup_at: float | None = None
        self._ping_at: float | None = None
        self._ping_outstanding = False
        self._missed_pings = 0
        if settings.ping_every_s > 0:
            self._ping_at = now_ms + settings.ping_every_s * 1000.0
        self._invite_by: float | None = None
        if settings.invite_timeout_s > 0:
            self._invite_by = now_ms + settings.invite_timeout_s * 1000.0
        self._media_handlers: dict[type[Any], Callable[[Any], None]] = {
            Speaking: self._on_speaking, Silence: self._on_silence, SegmentCap: self._on_segment_cap,
            Dtmf: self._on_dtmf, PlayStarted: self._on_play, PlayEnded: self._on_play, PlayDropped: self._on_play,
            RecorderError: self._on_recorder_error, InboundOverflow: self._on_inbound_overflow,
            RtpTimeout: self._on_rtp_timeout, Latched: self._on_latched, RtcpBye: self._on_rtcp_bye,
        }
        self._commands: dict[type[Any], Callable[[Any, CallState], None]] = {
            InviteCommand: self._invite, AcceptCommand: self._accept, RingingCommand: self._ringing,
            RejectCommand: self._reject, TtsCommand: self._tts, PlayCommand: self._play,
            InterruptCommand: self._interrupt, MuteCommand: self._mute, UnmuteCommand: self._mute,
            ReferCommand: self._refer, HangupCommand: self._hangup_command, DtmfCommand: self._dtmf,
            AddIceCandidateCommand: self._ice_candidate,
        }

    # == outputs ======================================================================================
    def events_to_send(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def actions_to_run(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is due (engine-clock ms), or None."""
        if self.state in (CallState.ENDING, CallState.ENDED):
            return None
        due = [t for t in (self._auto_hangup_at, self._wait_input_at, self._handshake_at, self._ping_at,
                           self._invite_by) if t is not None]
        if self.recognition is not None and self.recognition.endpoint_at is not None:
            due.append(self.recognition.endpoint_at)
        return min(due) if due else None

    @property
    def now_ms(self) -> float:
        """The time of the input being handled."""
        return self._now

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def listing(self) -> dict[str, Any]:
        """The call's entry in ``GET /call/lists`` (secrets redacted)."""
        created = datetime.fromtimestamp(self.created_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
        return {"id": self.id, "call_type": self.profile.call_type, "created_at": created,
                "option": self.option.echo() if self.option is not None else {}}

    # == inputs: the client ============================================================================
    def receive_command(self, command: Command, now_ms: float) -> None:
        self._now = now_ms
        name = command.COMMAND
        if dropped(self.state):
            return
        why = self.profile.refuses(name)
        if why is not None:
            self.report_error("command", why)
            return
        target = next_state(self.state, name)
        if target is None:
            self.report_error("command", refusal(self.state, name))
            return
        try:
            self._commands[type(command)](command, target)
        except PbxError as exc:
            self.report_error(exc.sender, str(exc))

    def refuse_message(self, error: PbxError, now_ms: float) -> None:
        """A message that is not a command (bad JSON, unknown command, wrong field type)."""
        self._now = now_ms
        if not dropped(self.state):
            self.report_error(error.sender, str(error))

    def refuse_audio(self, message: str, now_ms: float) -> None:
        """Audio the transport cannot take (before the answer, or on a call type without it)."""
        self._now = now_ms
        if not dropped(self.state):
            self.report_error("media", message)

    def pong(self, now_ms: float) -> None:
        self._now = now_ms
        self._ping_outstanding = False

    def end(self, reason: str, initiator: str, now_ms: float,
            close: tuple[int, str] = NORMAL_CLOSE) -> None:
        """End the call from outside the protocol: kill, shutdown, the client gone or too slow."""
        self._now = now_ms
        self._end(reason, initiator, close=close)

    # == inputs: the transport =========================================================================
    def incoming(self, caller: str, callee: str, sdp: str, now_ms: float) -> None:
        """An inbound call waits for this connection's decision (``ringing``, ``accept``, ``reject``)."""
        self._now = now_ms
        if dropped(self.state):
            return
        self._parties = (caller, callee)
        self._dialled = True        # a call is on the transport: ending undecided must refuse it (603)
        self.emit(IncomingEvent(track_id=self.id, timestamp=self.epoch_ms(), caller=caller, callee=callee, sdp=sdp))

    def notice(self, sender: str, extra: dict[str, Any], now_ms: float) -> None:
        """Something the far end did that the call goes on through (a hold, a REFER, an INFO): ``other``."""
        self._now = now_ms
        if dropped(self.state):
            return
        self.emit(OtherEvent(track_id=self.id, timestamp=self.epoch_ms(), sender=sender, extra=extra))

    def remote_ringing(self, early_media: bool, leg: LegMedia | None, now_ms: float) -> None:
        """The far end rings (180), or sends early media (183 with SDP: ``leg`` carries it)."""
        self._now = now_ms
        if dropped(self.state):
            return
        self.state = after_signal(self.state, Signal.REMOTE_EARLY_MEDIA if early_media else Signal.REMOTE_RINGING)
        self.ringing_ms = self.epoch_ms()
        self.emit(RingingEvent(track_id=self.id, timestamp=self.ringing_ms, early_media=early_media))
        if leg is not None:
            self._attach_leg(leg)

    def early_media(self, leg: LegMedia, now_ms: float) -> None:
        """Our early media (a ``ringing`` with ``earlyMedia``) is ready: the leg to play the ringtone on."""
        self._now = now_ms
        if dropped(self.state):
            leg.release()
            return
        self._attach_leg(leg)
        if self._ringtone and self.playback is not None:
            self.playback.play(PlayCommand(url=self._ringtone))   # until the answer interrupts it
            self._waiting_sound = True

    def answered(self, leg: LegMedia | None, sdp: str, now_ms: float) -> None:
        """The call is connected; ``leg`` is its media (None if early media already supplied it)."""
        self._now = now_ms
        if dropped(self.state):   # ended while connecting: the transport hangs up on Disconnect
            if leg is not None and leg is not self.leg:
                self._discard_recording(leg.release())
            return
        self.state = after_signal(self.state, Signal.ANSWERED)
        self._handshake_at = None
        self.answered_ms = self.epoch_ms()
        self.emit(AnswerEvent(track_id=self.id, timestamp=self.answered_ms, sdp=sdp))
        self._stop_waiting_sound()
        if leg is not None and self.leg is None:
            self._attach_leg(leg)
        self._apply_option()
        self._start_media_pass()

    def connect_failed(self, sender: str, message: str, now_ms: float) -> None:
        """Nothing went out (no capacity, no port): an error, and the call is NEW again."""
        self._now = now_ms
        if dropped(self.state):
            return
        self.state = after_signal(self.state, Signal.CONNECT_FAILED)
        self._handshake_at = None
        self.option = None
        self._dialled = False
        self._recording_error = None
        self._discard_recording(self._recording)
        self._recording = None
        self.report_error(sender, message)

    def rejected(self, code: int | None, reason: str, now_ms: float) -> None:
        """The far end refused the call (4xx-6xx)."""
        self._now = now_ms
        if dropped(self.state):
            return
        self.emit(RejectEvent(track_id=self.id, timestamp=self.epoch_ms(), reason=reason, code=code))
        self._end(HangupReason.REJECTED.value, Initiator.CALLEE.value, signal=Signal.REJECTED, disconnect=False)

    def remote_hangup(self, initiator: str, now_ms: float, reason: str = HangupReason.REMOTE_HANGUP.value) -> None:
        """The far end hung up (BYE) or gave up (CANCEL: ``reason`` canceled)."""
        self._now = now_ms
        self._end(reason, initiator, signal=Signal.REMOTE_HANGUP, disconnect=False)

    def transfer_done(self, error: str | None, auto_hangup: bool, now_ms: float) -> None:
        """A refer finished: ``error`` says why it failed; a transfer that worked may end the call."""
        self._now = now_ms
        if dropped(self.state):
            return
        self.state = after_signal(self.state, Signal.TRANSFER_DONE)
        self._stop_waiting_sound()
        if error is not None:
            self.report_error("refer", error)
        elif auto_hangup:
            self._end(HangupReason.REFER.value, Initiator.SYSTEM.value)

    def transfer_failed(self, code: int | None, reason: str, now_ms: float) -> None:
        """The refer's callee refused or never answered (408): ``reject``, and the call goes on."""
        self._now = now_ms
        if dropped(self.state):
            return
        if self.state is CallState.TRANSFERRING:
            self.state = after_signal(self.state, Signal.TRANSFER_DONE)
        self._stop_waiting_sound()
        self.emit(RejectEvent(track_id=self.id, timestamp=self.epoch_ms(), reason=reason, code=code))

    def transfer_ended(self, auto_hangup: bool, now_ms: float) -> None:
        """The bridged transfer leg hung up: with the refer's ``autoHangup`` the call ends too."""
        self._now = now_ms
        if auto_hangup:
            self._end(HangupReason.REFER.value, Initiator.SYSTEM.value)

    def _stop_waiting_sound(self) -> None:
        """The ringtone stops at the answer, the music on hold when the refer finishes."""
        if self._waiting_sound and self.playback is not None:
            self.playback.interrupt(graceful=False)
        self._waiting_sound = False

    # == inputs: the shell's I/O ========================================================================
    def recording_opened(self, recording: Recording | None, error: str | None, now_ms: float) -> None:
        """The outcome of :class:`OpenRecording`: the open file, or why there is none."""
        self._now = now_ms
        self._opening_recording = False
        self._file_work -= 1
        if dropped(self.state) or self.state is CallState.NEW:   # ended, or failed, meanwhile
            self._discard_recording(recording)
            self._finish_when_files_done()
            return
        self._recording = recording
        if error is not None:
            self._recording_error = error
        if self.leg is not None:
            self._attach_recording()
        if self._dial is not None:
            self._dialled = True
            self.request(self._dial)
            self._dial = None

    def recording_closed(self, recording: Recording, error: str | None, now_ms: float) -> None:
        self._now = now_ms
        self._file_work -= 1
        if error is not None:
            self.report_error("recorder", f"recording {recording.path} not finished: {error}")
        self._finish_when_files_done()

    def asr_opened(self, now_ms: float) -> None:
        self._now = now_ms
        if dropped(self.state) or self.leg is None:
            self.request(CloseAsr())
            return
        self._asr_state = "open"
        tap_start = self.leg.start_asr_tap()
        self.recognition = Recognition(self, self._asr_name, round(tap_start + self.settings.epoch_offset_ms))

    def asr_failed(self, error: BaseException, now_ms: float) -> None:
        self._now = now_ms
        self._asr_state = ""
        self._report_failure(error, "asr", self._asr_name)

    def next_asr_job(self, now_ms: float) -> Job | None:
        self._now = now_ms
        return None if self.recognition is None else self.recognition.next_job(now_ms)

    def asr_partials(self, results: list[AsrResult], now_ms: float) -> None:
        self._now = now_ms
        if self.recognition is not None:
            self.recognition.partials(results, now_ms)

    def asr_final(self, result: AsrResult | None, now_ms: float) -> None:
        self._now = now_ms
        if self.recognition is not None:
            self.recognition.final(result, now_ms)

    def asr_error(self, error: BaseException, now_ms: float) -> None:
        """A job failed on the provider; recognition goes on with the next one."""
        self._now = now_ms
        if self.recognition is not None:
            self._report_failure(error, "asr", self._asr_name)

    def tts_chunk(self, item_id: int, chunk: TtsChunk, now_ms: float) -> None:
        self._now = now_ms
        if self.playback is not None:
            self.playback.tts_chunk(item_id, chunk)

    def play_loaded(self, item_id: int, pcm: Pcm, now_ms: float) -> None:
        self._now = now_ms
        if self.playback is not None:
            self.playback.loaded(item_id, pcm)

    def work_done(self, item_id: int, error: BaseException | None, now_ms: float) -> None:
        """A synthesis or load ended (``error``: why it failed)."""
        self._now = now_ms
        if self.playback is not None:
            self.playback.work_done(item_id, error)

    def media_pass_opened(self, now_ms: float) -> None:
        """The service is connected: from now on it gets the caller's audio (the engine's tap)."""
        self._now = now_ms
        media_pass = self.media_pass
        if media_pass is None or self.leg is None or not media_pass.active:
            return
        media_pass.opened()
        if self._asr_state != "open":   # the tap runs already for ASR: restarting it would shift ASR's times
            self.leg.start_asr_tap()

    def media_pass_failed(self, error: BaseException, now_ms: float) -> None:
        self._now = now_ms
        if self.media_pass is not None:
            code = getattr(error, "code", None)
            self.media_pass.failed(str(error) if isinstance(error, PbxError) else f"mediaPass failed: {error}",
                                   code if isinstance(code, int) else None)

    def media_pass_audio(self, pcm: Pcm, now_ms: float) -> None:
        """Audio from the service, at 16 kHz."""
        self._now = now_ms
        if self.media_pass is not None:
            self.media_pass.audio(pcm)

    def media_pass_mark(self, name: str, now_ms: float) -> None:
        self._now = now_ms
        if self.media_pass is not None:
            self.media_pass.mark(name)

    def media_pass_clear(self, now_ms: float) -> None:
        self._now = now_ms
        if self.media_pass is not None and self.media_pass.state == "open":
            self.media_pass.clear()

    def media_pass_refused(self, message: str, now_ms: float) -> None:
        """A message from the service that could not be used."""
        self._now = now_ms
        if self.media_pass is not None:
            self.media_pass.refused(message)

    def media_pass_ended(self, message: str, now_ms: float) -> None:
        """The connection ended without us closing it."""
        self._now = now_ms
        if self.media_pass is not None:
            self.media_pass.ended(message)

    # == inputs: the media ==============================================================================
    def media_event(self, event: MediaEvent, now_ms: float) -> None:
        self._now = now_ms
        if self.leg is None:   # released: the engine's last events of the leg
            return
        self._media_handlers[type(event)](event)

    def asr_audio(self, pcm: Pcm, now_ms: float) -> None:
        self._now = now_ms
        if self.recognition is not None:
            self.recognition.audio(pcm)

    # == timers ==========================================================================================
    def handle_timer(self, now_ms: float) -> None:
        self._now = now_ms
        if self.state in (CallState.ENDING, CallState.ENDED):
            return
        if self._auto_hangup_at is not None and now_ms >= self._auto_hangup_at:
            self._auto_hangup_at = None
            self._end(HangupReason.AUTOHANGUP.value, Initiator.SYSTEM.value)
            return
        if self._handshake_at is not None and now_ms >= self._handshake_at:
            self._handshake_at = None
            self._end(HangupReason.HANDSHAKE_TIMEOUT.value, Initiator.SYSTEM.value)
            return
        if self._invite_by is not None and now_ms >= self._invite_by:
            self._invite_by = None
            self._end(HangupReason.HANDSHAKE_TIMEOUT.value, Initiator.SYSTEM.value)
            return
        if self._ping_at is not None and now_ms >= self._ping_at and not self._ping_due():
            return   # too many pings went unanswered: the call ended
        if self._wait_input_at is not None and now_ms >= self._wait_input_at:
            self._wait_input_at = None
            now = self.epoch_ms()
            self.emit(SilenceEvent(track_id=self.server_track_id, timestamp=now, start_time=self._wait_input_since,
                                   duration=now - self._wait_input_since))
        if self.recognition is not None:
            self.recognition.handle_timer(now_ms)

    def _ping_due(self) -> bool:
        """Send the next ping, or end the call when too many went unanswered; False if it ended."""
        if self._ping_outstanding:
            self._missed_pings += 1
            if self._missed_pings >= MISSED_PINGS:
                self._end(HangupReason.PING_TIMEOUT.value, Initiator.SYSTEM.value, close=PING_TIMEOUT_CLOSE)
                return False
        else:
            self._missed_pings = 0
        if self.settings.ping_interval_s > 0:
            self.emit(PingEvent(timestamp=self.epoch_ms()))
        self.request(SendPing())
        self._ping_outstanding = True
        self._ping_at = self._now + self.settings.ping_every_s * 1000.0
        return True

    # == commands ========================================================================================
    def _invite(self, cmd: InviteCommand, target: CallState) -> None:
        self._start(cmd.option, Connect(cmd.option), target)

    def _accept(self, cmd: AcceptCommand, target: CallState) -> None:
        self._start(cmd.option, Answer(cmd.option), target)

    def _start(self, option: CallOption, dial: Connect | Answer, target: CallState) -> None:
        self.profile.check_option("invite" if isinstance(dial, Connect) else "accept", option)
        self.option = option
        self.state = target
        self._invite_by = None
        if option.handshake_timeout:
            self._handshake_at = self._now + option.handshake_timeout * 1000.0
        if option.recorder is not None and self._recording is None and not self._opening_recording:
            self._dial = dial
            self._open_recording(option.recorder)
        else:
            self._dialled = True
            self.request(dial)

    def _ringing(self, cmd: RingingCommand, target: CallState) -> None:
        self.state = CallState.EARLY_MEDIA if cmd.early_media else target
        self._invite_by = None
        self.ringing_ms = self.epoch_ms()
        if cmd.recorder is not None and self._recording is None and not self._opening_recording:
            self._open_recording(cmd.recorder)
        self._dialled = True
        self._ringtone = cmd.ringtone if cmd.early_media else None
        self.request(Ring(cmd.early_media, cmd.ringtone))

    def _reject(self, cmd: RejectCommand, target: CallState) -> None:
        self.request(Reject(cmd.code, cmd.reason))
        self._end(HangupReason.REJECTED.value, Initiator.USER.value, disconnect=False)

    def _tts(self, cmd: TtsCommand, target: CallState) -> None:
        if self._media_pass_refuses(cmd):
            return
        _check_wait_input(cmd)
        self._wait_input_at = None
        self._playback().tts(cmd)

    def _play(self, cmd: PlayCommand, target: CallState) -> None:
        if self._media_pass_refuses(cmd):
            return
        _check_wait_input(cmd)
        self._wait_input_at = None
        self._playback().play(cmd)

    def _interrupt(self, cmd: InterruptCommand, target: CallState) -> None:
        self._wait_input_at = None
        self._auto_hangup_at = None
        self._playback().interrupt(cmd.graceful)
        if self.media_pass is not None:
            self.media_pass.clear()

    def _mute(self, cmd: MuteCommand | UnmuteCommand, target: CallState) -> None:
        muted = isinstance(cmd, MuteCommand)
        track = cmd.track_id
        if track not in (None, self.id, self.server_track_id):
            self.report_error("command", f"{cmd.COMMAND}: no track {track!r} (tracks: {self.id!r}, "
                                         f"{self.server_track_id!r})")
            return
        if track in (None, self.id) and self.leg is not None:
            self.leg.set_inbound_mute(muted)
        if track in (None, self.server_track_id):
            self._playback().mute(muted)

    def _ice_candidate(self, cmd: AddIceCandidateCommand, target: CallState) -> None:
        """Taken and not needed: the server is an ICE-lite agent, the browser's checks find its candidate."""

    def _dtmf(self, cmd: DtmfCommand, target: CallState) -> None:
        digits = cmd.digits.upper()
        if not DTMF_DIGITS.fullmatch(digits):
            self.report_error("command", f"dtmf.digits: {cmd.digits[:40]!r} is not 1 to {MAX_DTMF_DIGITS} of "
                                         "0-9, *, #, A-D")
            return
        if self.leg is None:
            self.report_error("command", "dtmf: the call has no media yet")
            return
        try:
            self.leg.send_dtmf(digits)
        except ValueError as exc:
            self.report_error("command", f"dtmf: {exc}")

    def _refer(self, cmd: ReferCommand, target: CallState) -> None:
        self.state = target
        moh = cmd.options.moh if cmd.options is not None else None
        if moh and self.playback is not None:
            self.playback.play(PlayCommand(url=moh))      # the caller hears it while the callee rings
            self._waiting_sound = True
        self.request(Refer(cmd))

    def _hangup_command(self, cmd: HangupCommand, target: CallState) -> None:
        self._end(cmd.reason, cmd.initiator or Initiator.USER.value)

    def _playback(self) -> Playback:
        if self.playback is None:   # the table allows media commands only in states with a leg
            raise PbxError(f"the call has no media in state {self.state.value}")
        return self.playback

    # == media set-up ======================================================================================
    def _attach_leg(self, leg: LegMedia) -> None:
        self.leg = leg
        tts = self.option.tts if self.option is not None and self.option.tts is not None else SynthesisOption()
        self.playback = Playback(self, leg, tts)
        if self._recording is not None:
            self._attach_recording()
        if self.option is not None:
            self._apply_option()

    def _apply_option(self) -> None:
        """The invite's or accept's option on the leg, once: denoise, VAD, recorder, ASR."""
        option, leg = self.option, self.leg
        if option is None or leg is None or self._option_applied:
            return
        self._option_applied = True
        if self.playback is not None and option.tts is not None:
            self.playback.call_tts = option.tts
        if option.denoise:
            leg.set_denoise(True)
        if option.vad is not None:
            self._configure_vad(leg, option.vad)
        if self._recording_error is not None:
            self.report_error("recorder", self._recording_error)
            self._recording_error = None
        if option.asr is not None:
            self._start_asr(leg, option.asr, internal_vad=option.vad is None)

    def _start_media_pass(self) -> None:
        """``option.mediaPass``, once the call is answered: the service gets the caller's audio."""
        option = self.option.media_pass if self.option is not None else None
        if option is None or self.leg is None or self.media_pass is not None:
            return
        problem = check_option(option)
        if problem is not None:
            self.report_error("mediaPass", problem)
            return
        extra = self.option.extra if self.option is not None and self.option.extra else {}
        parameters = {str(k): str(v) for k, v in extra.items() if isinstance(v, str | int | float | bool)}
        self.media_pass = MediaPass(self, self.leg, option, parameters)

    def _media_pass_refuses(self, cmd: TtsCommand | PlayCommand) -> bool:
        """True (after an error event) while the media pass service plays to the caller."""
        if self.media_pass is None or not self.media_pass.active:
            return False
        self.report_error(cmd.COMMAND, f"{cmd.COMMAND} refused: the mediaPass service plays to the caller "
                                       "while it is connected")
        return True

    def _configure_vad(self, leg: LegMedia, vad: VADOption) -> None:
        kind = vad.type.lower()
        if kind not in VAD_KINDS:
            self.report_error("vad", f"unknown vad type {vad.type!r}; expected webrtc, silero or ten")
            return
        try:
            leg.set_vad(kind, speech_padding_ms=vad.speech_padding, silence_padding_ms=vad.silence_padding,
                        ratio=vad.ratio, voice_threshold=vad.voice_threshold, silence_timeout_ms=vad.silence_timeout,
                        max_buffer_secs=float(vad.max_buffer_duration_secs))
        except (ValueError, ImportError) as exc:   # ImportError: the optional ten-vad is not installed
            self.report_error("vad", str(exc))
            return
        except OverflowError as exc:   # a time beyond the engine's C int
            self.report_error("vad", f"vad option out of range: {exc}")
            return
        self.vad_events = True

    def _attach_recording(self) -> None:
        recording, leg = self._recording, self.leg
        if recording is None or leg is None:
            return
        self._recording = None
        try:
            leg.attach_recorder(recording)
        except ValueError as exc:   # a rate the engine cannot resample to
            self._close_recording(recording, discard=True)
            self._recording_error = f"cannot record to {recording.path}: {exc}"

    def _discard_recording(self, recording: Recording | None) -> None:
        """A recording that never got a leg: closed and removed."""
        if recording is not None:
            self._close_recording(recording, discard=True)

    def _open_recording(self, option: RecorderOption) -> None:
        self._opening_recording = True
        self._file_work += 1
        self.request(OpenRecording(option))

    def _close_recording(self, recording: Recording, discard: bool) -> None:
        self._file_work += 1
        self.request(CloseRecording(recording, discard))

    def _start_asr(self, leg: LegMedia, option: TranscriptionOption, internal_vad: bool) -> None:
        try:
            self._asr_name = self.providers.asr_name(option)
        except PbxError as exc:
            self.report_error(exc.sender, str(exc))
            return
        if internal_vad:
            # ASR finals follow VAD silences: a default webrtc VAD runs, its events stay internal.
            defaults = VADOption()
            leg.set_vad("webrtc", speech_padding_ms=defaults.speech_padding,
                        silence_padding_ms=defaults.silence_padding, ratio=defaults.ratio,
                        voice_threshold=defaults.voice_threshold, silence_timeout_ms=None,
                        max_buffer_secs=float(defaults.max_buffer_duration_secs))
        self._asr_state = "opening"
        self.request(OpenAsr(option))

    # == media events ========================================================================================
    def _on_speaking(self, event: Speaking) -> None:
        self._wait_input_at = None
        if self.recognition is not None:
            self.recognition.speaking(self._now)
        if self.vad_events:
            self.emit(SpeakingEvent(track_id=self.id, timestamp=self.epoch_ms(event.at_ms),
                                    start_time=self.epoch_ms(event.start_ms)))

    def _on_silence(self, event: Silence) -> None:
        if self.vad_events:
            self.emit(SilenceEvent(track_id=self.id, timestamp=self.epoch_ms(event.at_ms),
                                   start_time=self.epoch_ms(event.start_ms), duration=event.duration_ms))
        if self.recognition is not None:
            self.recognition.silence(event.duration_ms, self._now)

    def _on_segment_cap(self, event: SegmentCap) -> None:
        if self.recognition is not None:
            self.recognition.segment_cap()

    def _on_dtmf(self, event: Dtmf) -> None:
        self._wait_input_at = None
        self.emit(DtmfEvent(track_id=self.id, timestamp=self.epoch_ms(event.at_ms), digit=event.digit))

    def _on_play(self, event: PlayStarted | PlayEnded | PlayDropped) -> None:
        if self.media_pass is not None and self.media_pass.on_play_event(event):
            return
        if self.playback is not None:
            self.playback.on_play_event(event)

    def _on_recorder_error(self, event: RecorderError) -> None:
        self.report_error("recorder", f"recording stopped: {os.strerror(event.errno)}")

    def _on_inbound_overflow(self, event: InboundOverflow) -> None:
        self.report_error("media", f"inbound audio buffer full: {event.dropped_samples} samples dropped "
                                   "(send audio in real time)")

    def _on_rtp_timeout(self, event: RtpTimeout) -> None:
        self._end(HangupReason.RTP_TIMEOUT.value, Initiator.SYSTEM.value)

    def _on_latched(self, event: Latched) -> None:
        self.latched_ms = self.epoch_ms(event.at_ms)

    def _on_rtcp_bye(self, event: RtcpBye) -> None:
        self.rtcp_bye_ms = self.epoch_ms(event.at_ms)

    # == for playback and recognition ==========================================================================
    def epoch_ms(self, leg_ms: int | None = None) -> int:
        """Epoch milliseconds of now, or of a time on the leg's clock."""
        if leg_ms is None or self.leg is None:
            return round(self._now + self.settings.epoch_offset_ms)
        return round(self.leg.start_ms + leg_ms + self.settings.epoch_offset_ms)

    def emit(self, event: Event) -> None:
        if self.state is not CallState.ENDED:
            self._events.append(event)

    def report_error(self, sender: str, message: str, code: int | None = None) -> None:
        self.emit(ErrorEvent(track_id=self.id, timestamp=self.epoch_ms(), sender=sender, error=message, code=code))

    def request(self, action: Action) -> None:
        self._actions.append(action)

    def tts_name(self, option: SynthesisOption) -> str:
        return self.providers.tts_name(option)

    def auto_hangup(self) -> None:
        self._auto_hangup_at = self._now

    def start_wait_input(self, timeout_s: float, since_ms: int) -> None:
        """From ``since_ms`` (epoch ms: the track's end in media time), not from when it was reported."""
        self._wait_input_at = since_ms - self.settings.epoch_offset_ms + timeout_s * 1000.0
        self._wait_input_since = since_ms

    def wake_asr(self) -> None:
        self.request(WakeAsr())

    def _report_failure(self, error: BaseException, sender: str, what: str) -> None:
        if isinstance(error, PbxError):
            self.report_error(error.sender if error.sender != "server" else sender, str(error),
                              getattr(error, "code", None))
        else:   # a provider bug: the shell logged it; the call goes on
            self.report_error(sender, f"{what} failed: {error}")

    # == ending ================================================================================================
    def _end(self, reason: str | None, initiator: str | None, *, signal: Signal = Signal.END,
             disconnect: bool = True, close: tuple[int, str] = NORMAL_CLOSE) -> None:
        if dropped(self.state):
            return
        self.state = after_signal(self.state, signal)
        self._hangup = (reason, initiator)
        self._close = close
        self._wait_input_at = self._handshake_at = self._auto_hangup_at = self._ping_at = self._invite_by = None
        self._dial = None
        if self.playback is not None:
            self.playback.close()
        if self.media_pass is not None:
            self.media_pass.close()
        self.recognition = None
        if disconnect and self._dialled:
            self.request(Disconnect(reason))
        self._discard_recording(self._recording)   # opened, never attached
        self._recording = None
        if self.leg is not None:
            self._quality = self.leg.quality()
            recording = self.leg.release()
            self.leg = None
            if recording is not None:
                self._close_recording(recording, discard=False)
        self._finish_when_files_done()

    def _hangup_extra(self, option: CallOption | None) -> dict[str, Any] | None:
        """The invite's ``extra``, plus ``rtp``: the phone leg's loss and jitter both ways (RTCP)."""
        extra = dict(option.extra) if option is not None and option.extra else {}
        if self._quality:
            extra["rtp"] = self._quality
        return extra or None

    def _finish_when_files_done(self) -> None:
        """The hangup event waits for every recording being opened or closed: when it arrives, a
        recording is complete and a discarded one is gone."""
        if self.state is CallState.ENDING and self._file_work == 0:
            self._finish()

    def _finish(self) -> None:
        option = self.option
        reason, initiator = self._hangup
        now = self.epoch_ms()
        self.emit(HangupEvent(
            track_id=self.id, timestamp=now, reason=reason, initiator=initiator, start_time=self.created_ms,
            hangup_time=now, answer_time=self.answered_ms, ringing_time=self.ringing_ms,
            from_=attendee((option.caller if option else None) or self._parties[0]),
            to=attendee((option.callee if option else None) or self._parties[1]),
            extra=self._hangup_extra(option)))
        self.state = after_signal(self.state, Signal.ENDED)
        if self._asr_state == "open":   # a stream still opening is closed when it opens
            self.request(CloseAsr())
        self.request(Close(*self._close))


def _check_wait_input(cmd: TtsCommand | PlayCommand) -> None:
    timeout = cmd.wait_input_timeout
    if timeout is not None and timeout < 0:
        raise ProtocolError(f"{cmd.COMMAND}.waitInputTimeout: must not be negative, got {timeout:g}")
