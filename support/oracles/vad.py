"""The speaking/silence rules of core/vad.pyx (R1..R5 in its header), one leg, plain Python.

Written from the rules, not from the Cython code: a run is kept as the list of its
windows, and the voiced time and span are recomputed from that list on every
window, so that bookkeeping slips in the kernel's running counters show up as
differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPEAKING = 1
SILENCE = 2
SEGMENT_CAP = 3

Event = tuple[int, int, int, int]   # (kind, time_ms, start_ms, duration_ms)


@dataclass
class VadOracle:
    speech_padding_ms: int = 250
    silence_padding_ms: int = 100
    ratio: float = 0.5
    threshold: float = 0.5
    silence_timeout_ms: int = 0
    max_buffer_secs: float = 50.0
    speaking: bool = False
    run: list[tuple[int, int, bool]] = field(default_factory=list)   # (start, end, voiced) since onset
    last_voiced_end: int | None = None
    silence_start: int | None = None
    timeouts_done: int = 0                  # k of the last start + k * timeout passed
    segment_start: int | None = None
    cap_hit: bool = False

    @property
    def max_buffer_ms(self) -> int:
        return int(self.max_buffer_secs * 1000.0 + 0.5)

    def feed(self, value: float, start: int, window_ms: int) -> list[Event]:
        end = start + window_ms
        voiced = bool(np.float32(value) >= np.float32(self.threshold))
        events: list[Event] = []
        if self.speaking:
            if voiced:
                self.last_voiced_end = end
                self._cap(end, events)
            else:
                assert self.last_voiced_end is not None
                if end - self.last_voiced_end >= self.silence_padding_ms:
                    self.speaking = False
                    self.silence_start = self.last_voiced_end
                    self.timeouts_done = 0
                    self._pass_timeouts(end)
                    events.append((SILENCE, end, self.silence_start, end - self.silence_start))
            return events

        if voiced:
            self.run.append((start, end, True))
            self.last_voiced_end = end
            if self._qualifies() is False:          # too sparse: keep only the voicing still going on
                k = len(self.run)
                while k > 0 and self.run[k - 1][2]:
                    k -= 1
                self.run = self.run[k:]
            if self._qualifies():
                onset = self.run[0][0]
                self.run = []
                self.speaking = True
                self.cap_hit = False
                self.segment_start = onset
                self.silence_start = None
                events.append((SPEAKING, end, onset, end - onset))
                self._cap(end, events)
                return events
        elif self.run:
            assert self.last_voiced_end is not None
            if end - self.last_voiced_end >= self.silence_padding_ms:
                self.run = []                       # the blip is over
            else:
                self.run.append((start, end, False))

        if self.silence_timeout_ms > 0 and self.silence_start is not None and self._pass_timeouts(end):
            events.append((SILENCE, end, self.silence_start, end - self.silence_start))
        return events

    def _pass_timeouts(self, now: int) -> bool:
        """Count the timeout instants start + k * timeout reached by ``now``; whether any was new."""
        if self.silence_timeout_ms <= 0:
            return False
        assert self.silence_start is not None
        before = self.timeouts_done
        while self.silence_start + (self.timeouts_done + 1) * self.silence_timeout_ms <= now:
            self.timeouts_done += 1
        return self.timeouts_done > before

    def _qualifies(self) -> bool | None:
        """None while the run is shorter than speechPadding, else whether its voiced fraction is enough."""
        onset = self.run[0][0]
        end = self.run[-1][1]
        span = end - onset
        if span < self.speech_padding_ms:
            return None
        voiced_ms = sum(e - s for s, e, v in self.run if v)
        return float(voiced_ms) >= float(np.float64(self.ratio)) * float(span)

    def _cap(self, end: int, events: list[Event]) -> None:
        assert self.segment_start is not None
        if self.max_buffer_ms > 0 and end - self.segment_start >= self.max_buffer_ms:
            events.append((SEGMENT_CAP, end, self.segment_start, end - self.segment_start))
            self.segment_start = end
            self.cap_hit = True
