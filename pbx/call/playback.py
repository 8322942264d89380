"""What a call plays: TTS and play tracks on top of its leg's playout queue. No I/O: synthesis and
downloads are actions the shell runs, their audio comes back through :meth:`Playback.tts_chunk`,
:meth:`Playback.loaded` and :meth:`Playback.work_done`.

A *track* is what the client sees (``trackStart``/``trackEnd`` with a ``playId``); it holds one
*item* of the playout queue per ``tts`` or ``play`` command. Rules (the spec's, made exact):

- A ``tts``/``play`` whose playId equals the live track's joins that track (a new item after the
  others); any other playId replaces the live track: ``interruption``, ``trackEnd``, then the new
  track's ``trackStart`` when its audio starts. ``play``'s playId is its URL.
- An item is reserved in the playout queue when the command arrives (so items play in command order
  however long synthesis or download takes) and filled as audio arrives.
- A track ends (``trackEnd``, ``duration`` = ms of audio played) when every item has played, no audio
  is still being produced, and, for a streaming track, a command with ``endOfStream`` arrived.
- ``interrupt``: the live track's current item stops at the next frame; ``interruption`` reports the
  subtitle (the text of the item cut), ``position`` (index of the word playing), ``totalDuration``
  (ms of audio the track had) and ``current`` (ms since the track started); then ``trackEnd``.
  ``graceful`` lets the current item finish and drops the rest, without ``interruption``.
  Either cancels a pending ``autoHangup``.
- A track that ends by itself triggers its ``autoHangup`` or starts its ``waitInputTimeout``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from pbx.call.actions import Action, Cancel, Load, Synthesize
from pbx.call.media import LegMedia, PlayDropped, PlayEnded, PlayStarted
from pbx.errors import MediaError, PbxError, ProviderError
from pbx.protocol import (
    Event,
    InterruptionEvent,
    MetricsEvent,
    PlayCommand,
    SynthesisOption,
    TrackEndEvent,
    TrackStartEvent,
    TtsCommand,
    merge_option,
)
from pbx.tts.base import TtsChunk, TtsRequest, WordMark

log = logging.getLogger(__name__)

RATE = 16000
MIN_RATE, MAX_RATE = 8000, 192000     # accepted SynthesisOption.samplerate (base64 PCM is resampled from it)


class PlaybackHost(Protocol):
    """The call, as its playback needs it."""

    server_track_id: str

    @property
    def now_ms(self) -> float: ...
    def emit(self, event: Event) -> None: ...
    def report_error(self, sender: str, message: str, code: int | None = None) -> None: ...
    def epoch_ms(self, leg_ms: int | None = None) -> int: ...
    def request(self, action: Action) -> None: ...
    def tts_name(self, option: SynthesisOption) -> str: ...
    def auto_hangup(self) -> None: ...
    def start_wait_input(self, timeout_s: float, since_ms: int) -> None: ...


@dataclass(slots=True)
class Item:
    item_id: int
    text: str | None                      # subtitle of a TTS item
    marks: list[WordMark] = field(default_factory=list)
    samples: int = 0                      # audio queued so far
    played_ms: int = 0
    elapsed_ms: int = 0
    ended: bool = False
    producing: bool = True                # synthesis / download still running
    working: bool = False                 # a Synthesize or Load action is out for it
    provider: str = ""                    # the TTS provider's name (metrics)
    requested_ms: float = 0.0             # when the synthesis was asked for (ttfb and completed metrics)
    first_audio: bool = False             # ttfb reported
    gain: float = 1.0                     # tts volume as a linear gain


@dataclass(slots=True)
class Track:
    number: int
    play_id: str | None
    streaming: bool
    auto_hangup: bool = False
    wait_input_timeout: float | None = None
    items: list[Item] = field(default_factory=list)
    end_of_stream: bool = False
    started: bool = False
    interrupting: bool = False            # an immediate interrupt is being reported
    graceful: bool = False
    finished: bool = False

    @property
    def played_ms(self) -> int:
        return sum(i.played_ms for i in self.items)

    @property
    def total_ms(self) -> int:
        return sum(i.samples for i in self.items) * 1000 // RATE


class Playback:
    def __init__(self, host: PlaybackHost, leg: LegMedia, call_tts: SynthesisOption) -> None:
        self.host = host
        self.leg = leg
        self.call_tts = call_tts
        self.track: Track | None = None
        self._numbers = itertools.count(1)
        self._item_ids = itertools.count(1)
        self._items: dict[int, tuple[Track, Item]] = {}
        self._closed = False

    # -- commands ---------------------------------------------------------------------------------
    def tts(self, cmd: TtsCommand) -> None:
        option = merge_option(self.call_tts, cmd.option)
        if cmd.speaker is not None:
            option = merge_option(option, SynthesisOption(speaker=cmd.speaker, fields_set=frozenset({"speaker"})))
        if not 1 <= option.volume <= 10:
            self.host.report_error("tts", f"volume must be 1-10, got {option.volume}")
            return
        if not MIN_RATE <= option.samplerate <= MAX_RATE:   # soxr stalls the loop on absurd ratios
            self.host.report_error("tts", f"samplerate must be {MIN_RATE}-{MAX_RATE} Hz, got {option.samplerate}")
            return
        provider = ""
        pcm: npt.NDArray[np.int16] | None = None
        if cmd.base64:   # decoded before the track: a command that fails must not cut what plays
            pcm = self._decode_base64(cmd.text, option)
            if pcm is None:
                return
        else:
            try:
                provider = self.host.tts_name(option)
            except PbxError as exc:
                self.host.report_error(exc.sender, str(exc))
                return
        track = self._track_for(cmd.play_id, streaming=cmd.streaming)
        track.auto_hangup = track.auto_hangup or cmd.auto_hangup
        if cmd.wait_input_timeout is not None:
            track.wait_input_timeout = cmd.wait_input_timeout
        if cmd.end_of_stream:
            track.end_of_stream = True
        if cmd.text or not cmd.end_of_stream:
            item = self._reserve(track, None if cmd.base64 else cmd.text, "tts")
            if item is not None and pcm is not None:
                self._append(item, pcm, sender="tts")
                self._complete(item)
            elif item is not None:
                item.working = True
                item.provider = provider
                item.requested_ms = self.host.now_ms
                item.gain = option.volume / 5.0
                request = TtsRequest.from_option(cmd.text, option, RATE, cacheable=not cmd.streaming)
                self.host.request(Synthesize(item.item_id, option, request))
        self._check_finished(track)

    def play(self, cmd: PlayCommand) -> None:
        track = self._track_for(cmd.url, streaming=False)
        track.auto_hangup = track.auto_hangup or cmd.auto_hangup
        if cmd.wait_input_timeout is not None:
            track.wait_input_timeout = cmd.wait_input_timeout
        item = self._reserve(track, None, "play")
        if item is not None:
            item.working = True
            self.host.request(Load(item.item_id, cmd.url))

    def interrupt(self, graceful: bool) -> None:
        track = self.track
        if track is None or track.finished:
            return
        track.auto_hangup = False
        if graceful:
            track.graceful = True
            track.streaming = False
            current = next((i for i in track.items if not i.ended), None)
            for item in track.items:
                if item is not current:
                    self._cancel(item)
            self.leg.interrupt(True)
        else:
            track.interrupting = True
            for item in track.items:
                self._cancel(item)
            self.leg.interrupt(False)
        self._check_finished(track)

    def mute(self, muted: bool) -> None:
        self.leg.mute_playout(muted)

    def close(self) -> None:
        """The call ends: stop every synthesis and download; nothing more is reported."""
        self._closed = True
        for track, item in list(self._items.values()):
            self._cancel(item)
            track.finished = True
        self._items.clear()

    # -- results of the shell's work ----------------------------------------------------------------
    def tts_chunk(self, item_id: int, chunk: TtsChunk) -> None:
        entry = self._items.get(item_id)
        if entry is None or not entry[1].working:
            return
        track, item = entry
        if not item.first_audio:
            item.first_audio = True
            self._metric("ttfb", track, item)
        item.marks.extend(chunk.words)   # offsets from the start of the item's text
        if not self._append(item, apply_gain(chunk.pcm, item.gain), sender="tts"):
            self._cancel(item)            # dropped or full: the rest of its audio is not wanted
            self._complete(item)

    def loaded(self, item_id: int, pcm: npt.NDArray[np.int16]) -> None:
        entry = self._items.get(item_id)
        if entry is None or not entry[1].working:
            return
        item = entry[1]
        item.working = False
        self._share(item, pcm)
        self._complete(item)

    def work_done(self, item_id: int, error: BaseException | None) -> None:
        """The synthesis or load of an item finished; ``error`` is why it failed."""
        entry = self._items.get(item_id)
        if entry is None or not entry[1].working:
            return
        track, item = entry
        item.working = False
        if error is None and item.provider:
            self._metric("completed", track, item)
        if error is not None:
            sender = "play" if not item.provider else "tts"
            if isinstance(error, ProviderError | MediaError):
                self.host.report_error(error.sender, str(error), error.code)
            elif isinstance(error, PbxError):
                self.host.report_error(error.sender, str(error))
            else:   # a provider bug: the shell logged it; the call goes on
                self.host.report_error(sender, f"{item.provider or 'play'} failed: {error}")
        self._complete(item)

    def _metric(self, kind: str, track: Track, item: Item) -> None:
        """ttfb: the command to the first audio; completed: to the last."""
        self.host.emit(MetricsEvent(
            timestamp=self.host.epoch_ms(), key=f"{kind}.tts.{item.provider}",
            duration=round(self.host.now_ms - item.requested_ms),
            data={"playId": track.play_id, "provider": item.provider}))

    # -- engine events ----------------------------------------------------------------------------
    def on_play_event(self, event: PlayStarted | PlayEnded | PlayDropped) -> None:
        entry = self._items.get(event.item_id)
        if entry is None:
            return
        track, item = entry
        if isinstance(event, PlayStarted):
            if not track.started and not track.interrupting:
                track.started = True
                self.host.emit(TrackStartEvent(track_id=self.host.server_track_id,
                                               timestamp=self.host.epoch_ms(event.at_ms), play_id=track.play_id))
            return
        item.ended = True
        interrupted = False
        if isinstance(event, PlayEnded):
            item.played_ms = event.played_ms
            item.elapsed_ms = event.elapsed_ms
            interrupted = event.interrupted
            if interrupted:
                self._cancel(item)
        del self._items[event.item_id]
        if interrupted and track.interrupting:
            self._report_interruption(track, item, event.at_ms)
        self._check_finished(track, event.at_ms)

    # -- internals --------------------------------------------------------------------------------
    def _cancel(self, item: Item) -> None:
        if item.working:
            item.working = False
            item.producing = False
            self.host.request(Cancel(item.item_id))

    def _track_for(self, play_id: str | None, streaming: bool) -> Track:
        live = self.track
        if live is not None and not live.finished and not live.interrupting and not live.graceful:
            if play_id == live.play_id:
                live.streaming = live.streaming or streaming
                return live
            self.interrupt(graceful=False)   # another playId replaces the live track
        track = Track(next(self._numbers), play_id, streaming)
        self.track = track
        return track

    def _reserve(self, track: Track, text: str | None, sender: str) -> Item | None:
        """A new item at the end of the playout queue, or None after an error event if the queue is full."""
        item = Item(next(self._item_ids), text)
        try:
            self.leg.enqueue(item.item_id, track.number)
        except ValueError as exc:   # the queue's item limit: a client sending commands faster than they play
            self.host.report_error(sender, str(exc))
            return None
        track.items.append(item)
        self._items[item.item_id] = (track, item)
        return item

    def _append(self, item: Item, pcm: npt.NDArray[np.int16], sender: str) -> bool:
        """Queue audio of an item; False when the item takes no more (dropped, or the queue is full)."""
        if item.ended or self._closed:
            return False
        try:
            self.leg.append(item.item_id, pcm)
        except KeyError:
            return False   # the item was dropped (interrupt) while audio was on its way
        except ValueError as exc:   # the queue's sample limit (minutes of audio not yet played)
            self.host.report_error(sender, str(exc))
            return False
        item.samples += len(pcm)
        return True

    def _share(self, item: Item, pcm: npt.NDArray[np.int16]) -> None:
        """A decoded file (read-only, the loader's cache hands the same array to every call): the queue
        keeps a reference, so calls playing one prompt share its buffer. A writeable array could change
        while it plays: it is copied in, as TTS audio is."""
        if pcm.flags.writeable:
            self._append(item, pcm, sender="play")
            return
        if item.ended or self._closed:
            return
        try:
            self.leg.share(item.item_id, pcm)
        except KeyError:
            return   # dropped (interrupt) while the file was loading
        except ValueError as exc:   # the server's audio limit
            self.host.report_error("play", str(exc))
            return
        item.samples += len(pcm)

    def _complete(self, item: Item) -> None:
        item.producing = False
        if not item.ended and not self._closed:
            # KeyError, ValueError: dropped meanwhile; its PlayDropped/PlayEnded is on its way
            with contextlib.suppress(KeyError, ValueError):
                self.leg.complete(item.item_id)
        entry = self._items.get(item.item_id)
        if entry is not None:
            self._check_finished(entry[0])

    def _decode_base64(self, text: str, option: SynthesisOption) -> npt.NDArray[np.int16] | None:
        """base64 PCM of a tts command, at our rate and volume; None after an error event."""
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.host.report_error("tts", "base64 text is not valid base64")
            return None
        if len(raw) % 2:
            raw = raw[:-1]
        pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        if option.samplerate != RATE and len(pcm):
            pcm = _resample(pcm, option.samplerate)
        return apply_gain(pcm, option.volume / 5.0)

    def _report_interruption(self, track: Track, cut: Item, leg_ms: int) -> None:
        position = None
        if cut.text is not None:
            played_samples = cut.played_ms * RATE // 1000
            spoken = [m.index for m in cut.marks if m.sample <= played_samples]
            position = spoken[-1] if spoken else 0
        current = sum(i.elapsed_ms for i in track.items if i.ended)
        self.host.emit(InterruptionEvent(
            track_id=self.host.server_track_id, timestamp=self.host.epoch_ms(leg_ms), play_id=track.play_id,
            subtitle=cut.text, position=position, total_duration=track.total_ms, current=current))

    def _check_finished(self, track: Track, leg_ms: int | None = None) -> None:
        if track.finished:
            return
        if any(not i.ended for i in track.items):
            return
        if track.interrupting:
            if not any(i.played_ms for i in track.items) and not track.started:
                # Cut before a sample played: still report what was interrupted.
                self._report_interruption_unplayed(track, leg_ms)
        elif not track.items or any(i.producing for i in track.items) or (
                track.streaming and not track.end_of_stream):
            return
        track.finished = True
        self.host.emit(TrackEndEvent(
            track_id=self.host.server_track_id, timestamp=self.host.epoch_ms(leg_ms),
            duration=track.played_ms, ssrc=self.leg.ssrc, play_id=track.play_id))
        if track.interrupting or track.graceful:
            return
        end_ms = self.host.epoch_ms(leg_ms)
        if track.auto_hangup:
            self.host.auto_hangup()
        elif track.wait_input_timeout:
            self.host.start_wait_input(track.wait_input_timeout, end_ms)

    def _report_interruption_unplayed(self, track: Track, leg_ms: int | None) -> None:
        first = track.items[0] if track.items else None
        self.host.emit(InterruptionEvent(
            track_id=self.host.server_track_id, timestamp=self.host.epoch_ms(leg_ms), play_id=track.play_id,
            subtitle=first.text if first is not None else None, position=0 if first and first.text else None,
            total_duration=track.total_ms, current=0))


def apply_gain(pcm: npt.NDArray[np.int16], gain: float) -> npt.NDArray[np.int16]:
    """``volume`` 1-10 as a linear gain, 5 = unity, saturating."""
    if gain == 1.0 or not len(pcm):
        return pcm
    return np.clip(np.round(pcm.astype(np.float32) * gain), -32768, 32767).astype(np.int16)


def _resample(pcm: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.int16]:
    out: npt.NDArray[np.float32] = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, RATE, quality="HQ")
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)
