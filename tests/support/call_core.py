"""Drive a :class:`pbx.call.core.Call` as its shell would, with explicit time: no sockets, no sleeps.

:class:`CallBench` plays the transport and the driver around one call. Its leg is a real stream leg of
a real :class:`~pbx.core.engine.Engine` (through :class:`~pbx.server.media.MediaRunner.serve` at
explicit times), so playout, VAD and the recorder behave as in production; recordings are real WAV
files. What would need a provider or the network is answered by the test: ``answer()``,
``ring()``, ``asr_opened()``... :meth:`CallBench.advance` moves time forward frame by frame, ticking
the engine and firing the call's timer exactly when it is due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbx.call.actions import (
    Action,
    Answer,
    Close,
    CloseRecording,
    Connect,
    OpenAsr,
    OpenRecording,
)
from pbx.call.core import Call, CallSettings
from pbx.call.media import MediaEvent, Pcm
from pbx.call.state import CallState
from pbx.call.transport import TransportProfile
from pbx.core.engine import Engine
from pbx.core.wav import WavWriter
from pbx.paths import confine
from pbx.protocol import Command, Event, command_from_dict
from pbx.providers import builtin_registry
from pbx.server.media import EngineLeg, LegSink, MediaRunner
from pbx.server.recording import finish_recording

FRAME_MS = 20
ALL_COMMANDS = frozenset({"invite", "accept", "ringing", "reject", "tts", "play", "interrupt", "refer", "mute",
                          "unmute", "hangup", "dtmf"})
# A transport with every capability, as the SIP transport will have.
FULL_PROFILE = TransportProfile(call_type="sip", carries=ALL_COMMANDS, not_carried="{command}: not carried")


def command(**fields: Any) -> Command:
    return command_from_dict(fields)


@dataclass
class CallBench:
    tmp_path: Path
    profile: TransportProfile = FULL_PROFILE
    ping_interval_s: float = 0.0
    liveness_interval_s: float = 0.0
    invite_timeout_s: float = 0.0
    auto_answer: bool = True             # Connect/Answer answered at once, as /call does
    dtmf_payload_type: int = -1          # >= 0: the leg is an RTP (PCMU) leg with telephone-event, as a SIP call's
    now: float = 1000.0
    call: Call = field(init=False)
    runner: MediaRunner = field(init=False)
    events: list[Event] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    closed_recordings: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runner = MediaRunner(Engine(8))
        self.runner.engine.epoch_offset_ms = 1_700_000_000_000.0
        self.runner.serve(self.now)          # starts the engine's frame grid at the bench's time 0
        settings = CallSettings(call_id="c1", ping_interval_s=self.ping_interval_s,
                                liveness_interval_s=self.liveness_interval_s, invite_timeout_s=self.invite_timeout_s,
                                epoch_offset_ms=self.runner.engine.epoch_offset_ms)
        self.call = Call(settings, self.profile, builtin_registry(), self.now)
        self.recordings = self.tmp_path / "recordings"
        self.pending_recordings: list[CloseRecording] = []

    # -- time ---------------------------------------------------------------------------------------
    def advance(self, ms: float) -> None:
        """Move time forward by ``ms``: engine frames when due, the call's timer exactly when due."""
        end = self.now + ms
        while True:
            frame = self.runner.engine.next_frame_ms if self.runner.engine.leg_count else float("inf")
            timer = self.call.get_timer()
            step = min(frame, timer if timer is not None else float("inf"))
            if step > end:
                break
            self.now = max(self.now, step)
            if timer is not None and timer <= frame:
                self.call.handle_timer(self.now)
            else:
                self.runner.serve(self.now)
            self.collect()
        self.now = end

    def epoch(self, now: float | None = None) -> int:
        return round((self.now if now is None else now) + self.runner.engine.epoch_offset_ms)

    # -- inputs -------------------------------------------------------------------------------------
    def send(self, cmd: Command | dict[str, Any]) -> list[Event]:
        """One command; the events it caused (the bench answers what it is set to answer)."""
        mark = len(self.events)
        self.call.receive_command(command_from_dict(cmd) if isinstance(cmd, dict) else cmd, self.now)
        self.collect()
        return self.events[mark:]

    def answer(self) -> EngineLeg:
        leg = self.new_leg()
        self.call.answered(leg, "", self.now)
        self.collect()
        return leg

    def new_leg(self) -> EngineLeg:
        sink = LegSink(self._media_event, self.frames.append, self._asr_audio)
        if self.dtmf_payload_type >= 0:
            return self.runner.add_leg(sink, "packets", "pcmu", self.now, dtmf_payload_type=self.dtmf_payload_type)
        return self.runner.add_leg(sink, "stream", "pcm", self.now)

    def _media_event(self, event: MediaEvent) -> None:
        self.call.media_event(event, self.now)

    def _asr_audio(self, pcm: Pcm) -> None:
        self.call.asr_audio(pcm, self.now)

    # -- outputs ------------------------------------------------------------------------------------
    def collect(self) -> None:
        """Take the call's events and actions; carry out those the bench answers by itself."""
        while True:
            events = self.call.events_to_send()
            actions = self.call.actions_to_run()
            if not events and not actions:
                return
            self.events.extend(events)
            for action in actions:
                self.actions.append(action)
                self._carry_out(action)

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, OpenRecording):
            path = confine(self.recordings, action.option.recorder_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.call.recording_opened(WavWriter(path, action.option.samplerate, 2), None, self.now)
        elif isinstance(action, CloseRecording):
            self.pending_recordings.append(action)
        elif isinstance(action, Connect | Answer) and self.auto_answer:
            self.answer()

    def close_recordings(self) -> None:
        """Finish the recordings the call asked to close (the shell does it on a worker thread)."""
        while self.pending_recordings:
            action = self.pending_recordings.pop(0)
            finish_recording(action.recording, action.discard)
            self.closed_recordings.append(Path(action.recording.path))
            self.call.recording_closed(action.recording, None, self.now)
            self.collect()

    def names(self, since: int = 0) -> list[str]:
        return [type(e).__name__ for e in self.events[since:]]

    def of(self, kind: type[Any], since: int = 0) -> list[Any]:
        return [e for e in self.events[since:] if isinstance(e, kind)]

    def actions_of(self, kind: type[Any]) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]

    @property
    def state(self) -> CallState:
        return self.call.state

    def closed(self) -> Close | None:
        found = self.actions_of(Close)
        return found[-1] if found else None

    def open_asr(self) -> None:
        assert self.actions_of(OpenAsr), "no OpenAsr requested"
        self.call.asr_opened(self.now)
        self.collect()
