"""Drives the media engine from the asyncio loop and routes its output to the sessions.

One :class:`MediaRunner` per server ticks :class:`pbx.core.engine.Engine` just after each 20 ms frame
of the engine's own grid is due (``loop.call_at``; both clocks are ``time.monotonic``), so each tick
processes one frame and a late tick makes the engine catch up frame by frame. After each tick it hands
engine events and outbound frames to the owner of each leg, and every ``ASR_EVERY`` ticks the audio
tapped for speech recognition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pbx.core.engine import Engine, Leg
from pbx.core.wav import WavWriter

log = logging.getLogger(__name__)

TICK_MS = 20
ASR_EVERY = 5          # ticks between ASR drains (100 ms of audio per provider call)
TICK_SLACK_S = 0.001   # wake this long after a frame is due, so the timer never fires just before it

EngineEvent = tuple[int, int, int, int, int, int, int]


class LegOwner(Protocol):
    """What a session implements to receive its leg's media output."""

    def on_media_event(self, event: EngineEvent) -> None: ...
    def on_media_out(self, data: bytes) -> None: ...
    def on_asr_audio(self, pcm: npt.NDArray[np.int16]) -> None: ...


class MediaRunner:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._owners: dict[int, LegOwner] = {}
        self._handle: asyncio.Handle | None = None
        self._ticks = 0
        self.tick_seconds_total = 0.0     # CPU spent in tick + routing, for /health

    @staticmethod
    def now_ms() -> float:
        """The engine's clock: the loop's monotonic time in ms (legs are created with it)."""
        return time.monotonic() * 1000.0

    def add_leg(self, owner: LegOwner, transport: str, codec: str, **options: object) -> Leg:
        leg = self.engine.add_leg(transport, codec, self.now_ms(), **options)  # type: ignore[arg-type]
        self._owners[leg.slot] = owner
        return leg

    def remove_leg(self, leg: Leg) -> WavWriter | None:
        """Free the leg; its recorder comes back still open, for the caller to close off the loop."""
        self._owners.pop(leg.slot, None)
        rec = self.engine.detach_recorder(leg)
        self.engine.remove_leg(leg)
        return rec

    def start(self) -> None:
        self.engine.epoch_offset_ms = time.time() * 1000.0 - self.now_ms()   # RTCP's NTP timestamps
        self._ticks = 0
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            self._serve()
        except Exception:  # a bug in one leg's routing must not stop every call's media
            log.exception("media tick failed")
        self.tick_seconds_total += time.perf_counter() - started
        self._ticks += 1
        # Wake just after the engine's next frame is due: a tick on its own grid would sometimes find
        # no frame due and the next one two, doubling that tick's work and jittering output by 20 ms.
        # (loop.time() and the engine clock are both time.monotonic().) After a stall, the engine
        # catches up frame by frame.
        when = self.engine.next_frame_ms / 1000.0 + TICK_SLACK_S
        self._handle = loop.call_at(max(when, loop.time()), self._tick)

    def _serve(self) -> None:
        engine = self.engine
        owners = self._owners
        for event in engine.tick(self.now_ms()):
            owner = owners.get(event[0])
            if owner is not None:
                owner.on_media_event(event)
        slots, offsets, data = engine.drain_out()
        if len(slots):
            view = memoryview(data)
            for i, slot in enumerate(slots.tolist()):
                owner = owners.get(slot)
                if owner is not None:
                    owner.on_media_out(bytes(view[offsets[i]:offsets[i + 1]]))
        if self._ticks % ASR_EVERY == 0:
            for leg, pcm in engine.drain_asr():
                owner = owners.get(leg.slot)
                if owner is not None:
                    owner.on_asr_audio(pcm)
