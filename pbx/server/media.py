"""The media engine on the asyncio loop: ticks it, decodes what it reports, routes it to each leg's sink.

One :class:`MediaRunner` per server ticks :class:`pbx.core.engine.Engine` just after each 20 ms frame
of the engine's own grid is due (``loop.call_at``; both clocks are ``time.monotonic``), so each tick
processes one frame and a late tick makes the engine catch up frame by frame. After each tick
(:meth:`MediaRunner.serve`, which tests call with explicit times) it decodes the engine's event
tuples once into the typed events of :mod:`pbx.call.media` (an unknown kind is logged as an error
and counted, never dropped silently) and hands them, the outbound frames and, every ``ASR_EVERY``
ticks, the audio tapped for speech recognition to the sink of each leg.

:class:`EngineLeg` is one engine leg behind the call core's :class:`~pbx.call.media.LegMedia`
interface: nothing else in the control plane touches ``engine.*`` or ``leg.playout.*``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pbx.call.media import (
    Dtmf,
    InboundOverflow,
    Latched,
    MediaEvent,
    Pcm,
    PlayDropped,
    PlayEnded,
    PlayStarted,
    RecorderError,
    RtcpBye,
    RtpTimeout,
    SegmentCap,
    Silence,
    Speaking,
)
from pbx.core import engine as eng
from pbx.core.engine import Engine, Leg
from pbx.core.wav import WavWriter
from pbx.server.tickstats import LoadSample, TickStats

log = logging.getLogger(__name__)

TICK_MS = 20
ASR_EVERY = 5          # ticks between ASR drains (100 ms of audio per provider call)
BUDGET_EVERY = 50      # ticks between recounts of the audio legs hold to play
TICK_SLACK_S = 0.001   # wake this long after a frame is due, so the timer never fires just before it
SAMPLE_EVERY = 50      # ticks per load window (pbx.server.tickstats): about a second
TEST_BURN_ENV = "PYPBX_TEST_TICK_BURN_US"   # tests only: CPU burnt per leg per tick, in µs


class CapacityError(ValueError):
    """Every leg of the engine is in use (``max_calls``)."""


class AudioBudget:
    """The audio every leg holds to play, against one server-wide limit.

    Each leg's playout queue has its own bound; this one stops a thousand calls from each queueing
    minutes of audio. Legs drain their queues in the engine without telling Python, so the count
    per leg is refreshed when that leg appends and for every leg once a second (:meth:`recount`):
    between refreshes it can only be too high, never too low, so the limit is never overrun.
    A shared buffer (a decoded file, :meth:`EngineLeg.share`) counts once however many legs play it;
    it is held here (so its identity stays unique) until a recount finds no leg playing it.
    """

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.total = 0
        self._per_leg: dict[int, int] = {}
        self._shared: dict[int, Pcm] = {}    # id -> buffer

    def take(self, leg: Leg, samples: int) -> None:
        """Count ``samples`` more for ``leg``; ValueError (the queue-full error) past the limit."""
        now = self._refresh(leg)
        if self.total + samples > self.max_samples:
            raise self._full()
        self._per_leg[leg.slot] = now + samples
        self.total += samples

    def take_shared(self, leg: Leg, pcm: Pcm) -> None:
        """Count a shared buffer ``leg`` is to play, unless it is counted already; ValueError past the limit."""
        self._refresh(leg)
        if id(pcm) in self._shared:
            return
        if self.total + len(pcm) > self.max_samples:
            raise self._full()
        self._shared[id(pcm)] = pcm
        self.total += len(pcm)

    def _refresh(self, leg: Leg) -> int:
        now = leg.playout.queued_samples
        self.total += now - self._per_leg.get(leg.slot, 0)
        self._per_leg[leg.slot] = now
        return now

    def _full(self) -> ValueError:
        return ValueError(f"the server holds its maximum of {self.max_samples * 2 / 1e6:g} MB of audio "
                          "to play (playout_max_bytes); try again when some has played")

    def forget(self, leg: Leg) -> None:
        self.total -= self._per_leg.pop(leg.slot, 0)

    def recount(self, engine: Engine) -> None:
        legs = [leg for slot in self._per_leg if (leg := engine.leg(slot)) is not None]
        self._per_leg = {leg.slot: leg.playout.queued_samples for leg in legs}
        self._shared = {id(pcm): pcm for leg in legs for pcm in leg.playout.shared_buffers()}
        self.total = sum(self._per_leg.values()) + sum(len(pcm) for pcm in self._shared.values())


class UnknownMediaEvent(Exception):
    """The engine reported a kind of event this control plane does not know (a version mismatch)."""


_DECODERS: dict[int, Callable[[int, int, int, int, int], MediaEvent]] = {
    eng.SPEAKING: lambda t, a, b, c, d: Speaking(t, a),
    eng.SILENCE: lambda t, a, b, c, d: Silence(t, a, b),
    eng.SEGMENT_CAP: lambda t, a, b, c, d: SegmentCap(t, a),
    eng.DTMF: lambda t, a, b, c, d: Dtmf(t, chr(a)),
    eng.PLAY_STARTED_: lambda t, a, b, c, d: PlayStarted(t, a),
    eng.PLAY_ENDED_: lambda t, a, b, c, d: PlayEnded(t, a, b, c, bool(d)),
    eng.PLAY_DROPPED_: lambda t, a, b, c, d: PlayDropped(t, a),
    eng.RTP_TIMEOUT: lambda t, a, b, c, d: RtpTimeout(t, a),
    eng.LATCHED: lambda t, a, b, c, d: Latched(t),
    eng.RECORDER_ERROR: lambda t, a, b, c, d: RecorderError(t, a),
    eng.INBOUND_OVERFLOW: lambda t, a, b, c, d: InboundOverflow(t, a),
    eng.RTCP_BYE_: lambda t, a, b, c, d: RtcpBye(t),
}


def decode_event(kind: int, t: int, a: int, b: int, c: int, d: int) -> MediaEvent:
    """One engine event tuple (without its slot) as its typed event; UnknownMediaEvent otherwise."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise UnknownMediaEvent(f"the media engine reported an event of unknown kind {kind}")
    return decoder(t, a, b, c, d)


@dataclass(slots=True)
class LegSink:
    """Where one leg's output goes: its typed events, its outbound frames (drained legs), its ASR audio,
    and for a WebRTC leg the STUN and DTLS datagrams it received (with their source)."""

    event: Callable[[MediaEvent], None]
    out: Callable[[bytes], None]
    asr: Callable[[Pcm], None]
    control: Callable[[tuple[str, int], bytes], None] | None = None


class EngineLeg:
    """One engine leg as :class:`pbx.call.media.LegMedia`."""

    __slots__ = ("_budget", "_engine", "_release", "_released", "_start_ms", "leg")

    def __init__(self, engine: Engine, leg: Leg, start_ms: float,
                 release: Callable[[Leg], WavWriter | None], budget: AudioBudget) -> None:
        self._engine = engine
        self.leg = leg
        self._start_ms = start_ms
        self._release = release
        self._budget = budget
        self._released = False

    @property
    def start_ms(self) -> float:
        return self._start_ms

    @property
    def ssrc(self) -> int:
        return self.leg.ssrc

    def feed(self, data: bytes) -> int:
        """Codec bytes from a stream transport (a WebSocket binary message); dropped once released."""
        if self._released:
            return 0
        return self._engine.feed(self.leg, data)

    def set_vad(self, kind: str, *, speech_padding_ms: int, silence_padding_ms: int, ratio: float,
                voice_threshold: float, silence_timeout_ms: int | None, max_buffer_secs: float) -> None:
        self._engine.set_vad(self.leg, kind, speech_padding_ms=speech_padding_ms,
                             silence_padding_ms=silence_padding_ms, ratio=ratio, voice_threshold=voice_threshold,
                             silence_timeout_ms=silence_timeout_ms, max_buffer_secs=max_buffer_secs)

    def set_denoise(self, enabled: bool) -> None:
        self._engine.set_denoise(self.leg, enabled)

    def set_inbound_mute(self, muted: bool) -> None:
        self._engine.set_inbound_mute(self.leg, muted)

    def attach_recorder(self, recording: object) -> None:
        if not isinstance(recording, WavWriter):
            raise TypeError(f"the engine records into a WavWriter, not {type(recording).__name__}")
        self._engine.attach_recorder(self.leg, recording)

    def start_asr_tap(self) -> float:
        self._engine.set_asr_tap(self.leg, True)
        return self._engine.next_frame_ms

    def enqueue(self, item_id: int, track: int) -> None:
        self.leg.playout.enqueue(item_id, track, None, complete=False)

    def append(self, item_id: int, pcm: Pcm) -> None:
        self._budget.take(self.leg, len(pcm))
        self.leg.playout.append(item_id, pcm, complete=False)

    def share(self, item_id: int, pcm: Pcm) -> None:
        self._budget.take_shared(self.leg, pcm)
        self.leg.playout.share(item_id, pcm)

    def complete(self, item_id: int) -> None:
        self.leg.playout.complete(item_id)

    def interrupt(self, graceful: bool) -> None:
        self.leg.playout.interrupt(graceful)

    def mute_playout(self, muted: bool) -> None:
        self.leg.playout.mute_all_tracks(muted)

    def send_dtmf(self, digits: str) -> None:
        self._engine.send_dtmf(self.leg, digits)

    def quality(self) -> dict[str, Any]:
        if self.leg.transport != eng.TRANSPORTS["udp"]:
            return {}
        stats = self.leg.stats

        def number(key: str) -> float:
            value = stats.get(key, 0)
            return round(float(value), 2) if isinstance(value, int | float) else 0.0

        return {"packetsReceived": int(number("rx_packets")), "packetsSent": int(number("tx_packets")),
                "packetsLost": max(int(number("rx_lost")), 0), "lossPercent": number("rx_loss_percent"),
                "jitterMs": number("rx_jitter_ms"), "remoteLossPercent": number("remote_loss_percent"),
                "remoteJitterMs": number("remote_jitter_ms"), "rttMs": number("rtt_ms"),
                "rtcpReceived": int(number("rtcp_rx")), "rtcpSent": int(number("rtcp_tx"))}

    def release(self) -> WavWriter | None:
        if self._released:
            return None
        self._released = True
        return self._release(self.leg)


class MediaRunner:
    def __init__(self, engine: Engine, audio_max_bytes: int = 512_000_000) -> None:
        self.engine = engine
        self.budget = AudioBudget(audio_max_bytes // 2)
        self._sinks: dict[int, LegSink] = {}
        self._handle: asyncio.Handle | None = None
        self._ticks = 0
        self.tick_seconds_total = 0.0     # CPU spent in tick + routing, for /health
        self.unknown_events = 0
        self.tick_stats = TickStats()
        self.on_load: Callable[[LoadSample], None] | None = None   # each load window (admission control)
        # tests of admission control make calls expensive with this; never set in production
        self._test_burn_s = float(os.environ.get(TEST_BURN_ENV, "0") or 0) / 1e6

    @staticmethod
    def now_ms() -> float:
        """The engine's clock: the loop's monotonic time in ms (legs are created with it)."""
        return time.monotonic() * 1000.0

    def add_leg(self, sink: LegSink, transport: str, codec: str, now_ms: float, **options: object) -> EngineLeg:
        """A new leg whose output goes to ``sink``; CapacityError when every leg is in use, ValueError for a
        bad option."""
        if self.engine.leg_count >= self.engine.max_legs:
            raise CapacityError(f"the server is at its limit of {self.engine.max_legs} concurrent calls (max_calls)")
        leg = self.engine.add_leg(transport, codec, now_ms, **options)  # type: ignore[arg-type]
        self._sinks[leg.slot] = sink
        return EngineLeg(self.engine, leg, now_ms, self._release, self.budget)

    def _release(self, leg: Leg) -> WavWriter | None:
        self._sinks.pop(leg.slot, None)
        self.budget.forget(leg)
        rec = self.engine.detach_recorder(leg)
        self.engine.remove_leg(leg)
        return rec

    def start(self) -> None:
        self.engine.epoch_offset_ms = time.time() * 1000.0 - self.now_ms()   # RTCP's NTP timestamps
        self._ticks = 0
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    @property
    def epoch_offset_ms(self) -> float:
        """Wall clock minus the engine clock, in ms (event timestamps are epoch milliseconds)."""
        return self.engine.epoch_offset_ms

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        started_cpu = time.thread_time()
        frames = self.engine.frames
        try:
            self.serve(self.now_ms())
        except Exception:  # a bug in one leg's routing must not stop every call's media
            log.exception("media tick failed")
        if self._test_burn_s:
            burn_until = started + self._test_burn_s * self.engine.leg_count * (self.engine.frames - frames)
            while time.perf_counter() < burn_until:
                pass
        elapsed = time.perf_counter() - started
        self.tick_seconds_total += elapsed
        self.tick_stats.record(elapsed, self.engine.leg_count, time.thread_time() - started_cpu)
        if self._ticks % SAMPLE_EVERY == 0:
            sample = self.tick_stats.sample(time.monotonic(), time.thread_time())
            if sample is not None and self.on_load is not None:
                self.on_load(sample)
        # Wake just after the engine's next frame is due: a tick on its own grid would sometimes find
        # no frame due and the next one two, doubling that tick's work and jittering output by 20 ms.
        # (loop.time() and the engine clock are both time.monotonic().) After a stall, the engine
        # catches up frame by frame.
        when = self.engine.next_frame_ms / 1000.0 + TICK_SLACK_S
        self._handle = loop.call_at(max(when, loop.time()), self._tick)

    def serve(self, now_ms: float) -> None:
        """One tick at ``now_ms``: the engine's frames, then its output to the sinks."""
        engine = self.engine
        sinks = self._sinks
        for slot, kind, t, a, b, c, d in engine.tick(now_ms):
            sink = sinks.get(slot)
            if sink is None:
                continue
            try:
                event = decode_event(kind, t, a, b, c, d)
            except UnknownMediaEvent:
                self.unknown_events += 1
                log.error("leg %d: the media engine reported an event of unknown kind %d", slot, kind)
                continue
            sink.event(event)
        for slot, addr, datagram in engine.drain_control():
            sink = sinks.get(slot)
            if sink is not None and sink.control is not None:
                sink.control(addr, datagram)
        slots, offsets, data = engine.drain_out()
        if len(slots):
            view = memoryview(data)
            for i, slot in enumerate(slots.tolist()):
                sink = sinks.get(slot)
                if sink is not None:
                    sink.out(bytes(view[offsets[i]:offsets[i + 1]]))
        self._ticks += 1
        if self._ticks % BUDGET_EVERY == 0:
            self.budget.recount(self.engine)
        if self._ticks % ASR_EVERY == 0:
            for leg, pcm in engine.drain_asr():
                sink = sinks.get(leg.slot)
                if sink is not None:
                    sink.asr(pcm)
