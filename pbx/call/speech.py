"""Speech recognition of one call: utterances, endpointing and the ``asrDelta``/``asrFinal`` events.

No I/O: the shell's ASR worker takes :class:`Feed` and :class:`EndUtterance` jobs from
:meth:`Recognition.next_job` one at a time, runs them on the provider's stream, and reports what it
recognised (:meth:`Recognition.partials`, :meth:`Recognition.final`).

Rules:
- Audio reaches the provider continuously (the engine's ASR tap, ~100 ms at a time); an utterance
  ends :data:`ENDPOINT_MS` into a VAD silence unless speech resumes first, since the spec's default
  ``silencePadding`` of 100 ms would cut phrases at the pauses between words; it also ends when
  continuous speech reaches ``maxBufferDurationSecs`` (:meth:`Recognition.segment_cap`), and after
  :data:`MAX_UTTERANCE_MS` of audio whatever VAD says (on steady noise a recogniser's cost per second
  grows with the utterance).
- Jobs wait in a queue bounded by :data:`MAX_BACKLOG_MS` of audio. A provider that falls further
  behind loses the oldest audio, with one ``asr`` error event each time it starts to fall behind.
- Finals come from :class:`EndUtterance` jobs, and also among a feed's results: cloud recognisers
  end sentences themselves, while the speaker goes on.
- ``asrFinal`` carries the utterance's index (from 1, one per non-empty final) and, with
  ``asrDelta``, its start and end as epoch milliseconds of the call's audio.
- ``metrics``: ``ttfb.asr.<provider>`` at an utterance's first result (partial or final), and
  ``completed.asr.<provider>`` after its final, each the time since the speech onset (VAD's
  ``speaking``: the audio from then on is what the provider works on), ``data`` =
  ``{provider, index}``. A result before any onset (a recogniser faster than VAD) measures nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from pbx.asr.base import AsrResult
from pbx.call.media import Pcm
from pbx.protocol import AsrDeltaEvent, AsrFinalEvent, Event, MetricsEvent

RATE = 16000
ENDPOINT_MS = 500            # silence that ends an utterance
MAX_UTTERANCE_MS = 20_000    # audio after which an utterance ends even without a pause
MAX_BACKLOG_MS = 10_000      # audio waiting for the provider before the oldest is dropped


@dataclass(frozen=True, slots=True, eq=False)   # compared by identity (the queue removes one)
class Feed:
    pcm: Pcm


@dataclass(frozen=True, slots=True)
class EndUtterance:
    pass


Job: TypeAlias = Feed | EndUtterance
_END = EndUtterance()


class SpeechHost(Protocol):
    track_id: str

    def emit(self, event: Event) -> None: ...
    def report_error(self, sender: str, message: str, code: int | None = None) -> None: ...
    def epoch_ms(self, leg_ms: int | None = None) -> int: ...
    def wake_asr(self) -> None: ...


class Recognition:
    def __init__(self, host: SpeechHost, provider: str, stream_epoch_ms: int) -> None:
        self.host = host
        self.provider = provider
        self.stream_epoch_ms = stream_epoch_ms     # epoch ms of the stream's time 0
        self.index = 1
        self.endpoint_at: float | None = None      # when the pending silence ends the utterance
        self._in_utterance = False
        self._jobs: deque[Job] = deque()
        self._queued_samples = 0
        self._behind = False
        self._onset_ms: float | None = None        # speech onset of the utterance being recognised
        self._onset_over = False                    # its EndUtterance gave nothing: the next onset is new
        self._ttfb_sent = False
        self._utterance_samples = 0                 # audio queued since the last EndUtterance
        self.dropped_ms = 0

    # -- from the media ---------------------------------------------------------------------------
    def audio(self, pcm: Pcm) -> None:
        self._push(Feed(pcm))
        self._queued_samples += len(pcm)
        self._utterance_samples += len(pcm)
        if self._utterance_samples > MAX_UTTERANCE_MS * RATE // 1000:
            self._end_here()   # a recogniser's cost per second grows with the utterance (noise never pauses)
        limit = MAX_BACKLOG_MS * RATE // 1000
        if self._queued_samples <= limit:
            self._behind = False
            return
        while self._queued_samples > limit:
            oldest = next(j for j in self._jobs if isinstance(j, Feed))
            self._jobs.remove(oldest)
            self._queued_samples -= len(oldest.pcm)
            self.dropped_ms += len(oldest.pcm) * 1000 // RATE
        if not self._behind:
            self._behind = True
            self.host.report_error("asr", f"{self.provider} is more than {MAX_BACKLOG_MS // 1000} s behind the "
                                          "call; the oldest audio was dropped")

    def speaking(self, now_ms: float) -> None:
        self.endpoint_at = None       # the speaker went on: same utterance
        self._in_utterance = True
        if self._onset_ms is None or self._onset_over:
            self._onset_ms, self._onset_over, self._ttfb_sent = now_ms, False, False

    def silence(self, duration_ms: int, now_ms: float) -> None:
        if self._in_utterance and self.endpoint_at is None:
            self.endpoint_at = now_ms + max(ENDPOINT_MS - duration_ms, 0)

    def segment_cap(self) -> None:
        """maxBufferDurationSecs of continuous speech: finish this utterance, the next one goes on."""
        self._end_here()

    def handle_timer(self, now_ms: float) -> None:
        if self.endpoint_at is not None and now_ms >= self.endpoint_at:
            self.endpoint_at = None
            self._in_utterance = False
            self._end_here()   # after the audio queued before it

    def _end_here(self) -> None:
        self._utterance_samples = 0
        self._push(_END)

    # -- the shell's worker ---------------------------------------------------------------------------
    def next_job(self, now_ms: float) -> Job | None:
        if not self._jobs:
            return None
        job = self._jobs.popleft()
        if isinstance(job, Feed):
            self._queued_samples -= len(job.pcm)
        return job

    def partials(self, results: list[AsrResult], now_ms: float) -> None:
        """A feed's results: partials, and the finals of a recogniser that ends sentences itself."""
        for result in results:
            if result.final:
                self._final(result, now_ms)
                continue
            self._first_result(now_ms)
            self.host.emit(AsrDeltaEvent(track_id=self.host.track_id, index=self.index,
                                         timestamp=self.host.epoch_ms(), start_time=self._time(result.start_ms),
                                         end_time=self._time(result.end_ms), text=result.text))

    def final(self, result: AsrResult | None, now_ms: float) -> None:
        """The result of an EndUtterance job."""
        if result is None or not result.text:
            self._onset_over = True
            return
        self._final(result, now_ms)

    def _final(self, result: AsrResult, now_ms: float) -> None:
        if not result.text:
            return
        self._first_result(now_ms)
        self.host.emit(AsrFinalEvent(track_id=self.host.track_id, timestamp=self.host.epoch_ms(), index=self.index,
                                     start_time=self._time(result.start_ms), end_time=self._time(result.end_ms),
                                     text=result.text))
        self._metric("completed", now_ms)
        self._onset_ms = None
        self.index += 1

    def _first_result(self, now_ms: float) -> None:
        if not self._ttfb_sent:
            self._metric("ttfb", now_ms)
            self._ttfb_sent = True

    def _metric(self, kind: str, now_ms: float) -> None:
        if self._onset_ms is None:
            return
        self.host.emit(MetricsEvent(timestamp=self.host.epoch_ms(), key=f"{kind}.asr.{self.provider}",
                                    duration=round(now_ms - self._onset_ms),
                                    data={"index": self.index, "provider": self.provider}))

    @property
    def backlog_ms(self) -> int:
        return self._queued_samples * 1000 // RATE

    # -- internals ---------------------------------------------------------------------------------------
    def _push(self, job: Job) -> None:
        wake = not self._jobs
        self._jobs.append(job)
        if wake:
            self.host.wake_asr()

    def _time(self, ms: int | None) -> int | None:
        return None if ms is None else self.stream_epoch_ms + ms
