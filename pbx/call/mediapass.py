"""A call's media pass (``option.mediaPass``), without I/O: an external WebSocket service takes over
what the server plays to the caller.

The shell (:mod:`pbx.server.mediapass`) connects, sends the caller's audio and reports back what the
service sends: its audio (16 kHz by then), and in the Twilio mode its ``mark`` and ``clear``
messages. This module decides what that does to the call:

- States: ``opening`` (the :class:`OpenMediaPass` action is out), ``open``, ``closed`` (failed, dropped
  by the service, or closed by us). While opening or open, ``tts`` and ``play`` are refused: the
  service's audio is the server-side audio. VAD, ASR and the recorder do not depend on it.
- The service's audio plays through the leg's playout queue as a streaming item that stays open
  until a mark or the end of the connection, so the recorder, ``mute`` of the server track and
  ``interrupt`` act on it as on tts. Its items use ids and a track of their own, above any that
  :class:`~pbx.call.playback.Playback` hands out, so its events are never confused with a track's.
- A mark (Twilio) ends the current item: the mark is answered (:class:`MediaPassMarks`) when that
  item has played, that is when the audio queued before the mark has been heard. A ``clear`` or an
  ``interrupt`` drops the queued audio; the items end at once and so answer their marks (Twilio does
  the same). When the queue holds its maximum of items, a mark joins the item playing instead.
- A connection that ends while the call goes on is an ``error`` event (sender ``mediaPass``); what
  it queued still plays out.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Protocol

from pbx.call.actions import Action, CloseMediaPass, MediaPassMarks, OpenMediaPass
from pbx.call.media import LegMedia, Pcm, PlayDropped, PlayEnded, PlayStarted
from pbx.protocol import MediaPassOption

SENDER = "mediaPass"
PROTOCOLS = ("pcm", "twilio")
MIN_RATE, MAX_RATE = 8000, 192000
MAX_PACKET_BYTES = 1 << 20
ITEM_BASE = 1 << 40          # playout item ids of media pass (Playback's count from 1)
TRACK = 1 << 30              # the playout track of media pass (Playback's tracks count from 1)


class MediaPassHost(Protocol):
    def report_error(self, sender: str, message: str, code: int | None = None) -> None: ...
    def request(self, action: Action) -> None: ...


def check_option(option: MediaPassOption) -> str | None:
    """Why the option cannot be used, or None."""
    if option.protocol not in PROTOCOLS:
        return f"mediaPass.protocol: {option.protocol[:40]!r} is not one of {', '.join(PROTOCOLS)}"
    if not option.url:
        return "mediaPass.url: empty"
    for name, rate in (("inputSampleRate", option.input_sample_rate), ("outputSampleRate", option.output_sample_rate)):
        if not MIN_RATE <= rate <= MAX_RATE:
            return f"mediaPass.{name}: must be {MIN_RATE}-{MAX_RATE} Hz, got {rate}"
    if not 2 <= option.packet_size <= MAX_PACKET_BYTES or option.packet_size % 2:
        return f"mediaPass.packetSize: must be an even number of bytes from 2 to {MAX_PACKET_BYTES}, " \
               f"got {option.packet_size}"
    return None


@dataclass(slots=True)
class _Item:
    item_id: int
    marks: list[str] = field(default_factory=list)   # answered when the item has played
    complete: bool = False


class MediaPass:
    def __init__(self, host: MediaPassHost, leg: LegMedia, option: MediaPassOption,
                 parameters: dict[str, str]) -> None:
        self.host = host
        self.leg = leg
        self.option = option
        self.state = "opening"
        self._ids = itertools.count(ITEM_BASE)
        self._items: dict[int, _Item] = {}           # queued, not yet ended, in queue order
        self._current: _Item | None = None           # the item the service's audio goes into
        host.request(OpenMediaPass(option, parameters))

    @property
    def active(self) -> bool:
        """True while the service has (or is getting) the call's audio: tts and play are refused."""
        return self.state != "closed"

    # -- the shell's reports ---------------------------------------------------------------------
    def opened(self) -> None:
        if self.state == "opening":
            self.state = "open"

    def failed(self, message: str, code: int | None = None) -> None:
        """The connection could not be made."""
        if self.state == "opening":
            self.state = "closed"
            self.host.report_error(SENDER, message, code)

    def ended(self, message: str) -> None:
        """The connection ended by itself (the service closed it, or it broke): the call goes on."""
        if self.state == "closed":
            return
        self.state = "closed"
        self._finish_current()
        self.host.report_error(SENDER, message)

    def refused(self, message: str) -> None:
        """A message from the service that could not be used (the connection goes on)."""
        if self.state == "open":
            self.host.report_error(SENDER, message)

    def audio(self, pcm: Pcm) -> None:
        if self.state != "open" or not len(pcm):
            return
        item = self._current or self._new_item()
        if item is None:
            return
        try:
            self.leg.append(item.item_id, pcm)
        except KeyError:                 # dropped by an interrupt just now: the next audio starts anew
            self._current = None
        except ValueError as exc:        # the queue's sample limit: the service sends faster than real time
            self.host.report_error(SENDER, f"audio from the media pass service dropped: {exc}")

    def mark(self, name: str) -> None:
        """Answer ``name`` once everything queued so far has played."""
        if self.state != "open":
            return
        current = self._current
        if current is not None and len(self._items) < 64:   # a free slot for the item after it
            current.marks.append(name)
            self._finish_current()
            return
        last = next(reversed(self._items.values()), None)
        if last is None:
            self.host.request(MediaPassMarks((name,)))     # nothing is queued: it has all played
        else:
            last.marks.append(name)

    def clear(self) -> None:
        """Drop the audio queued and not yet played (``clear``, or the ``interrupt`` command)."""
        if self._items:
            self._current = None
            self.leg.interrupt(False)

    def close(self) -> None:
        """We end it (the call ends): nothing more is reported."""
        if self.state != "closed":
            self.state = "closed"
            self.host.request(CloseMediaPass())
        self._items.clear()
        self._current = None

    # -- engine events -------------------------------------------------------------------------------
    def on_play_event(self, event: PlayStarted | PlayEnded | PlayDropped) -> bool:
        """Handle an event of one of our items; False if it is not ours."""
        if event.item_id < ITEM_BASE:
            return False
        if isinstance(event, PlayStarted):
            return True
        item = self._items.pop(event.item_id, None)
        if item is None:
            return True
        if item is self._current:
            self._current = None
        if item.marks and self.state == "open":
            self.host.request(MediaPassMarks(tuple(item.marks)))
        return True

    # -- internals ------------------------------------------------------------------------------------
    def _new_item(self) -> _Item | None:
        item = _Item(next(self._ids))
        try:
            self.leg.enqueue(item.item_id, TRACK)
        except ValueError as exc:
            self.host.report_error(SENDER, f"audio from the media pass service dropped: {exc}")
            return None
        self._items[item.item_id] = item
        self._current = item
        return item

    def _finish_current(self) -> None:
        item, self._current = self._current, None
        if item is not None and not item.complete:
            item.complete = True
            with contextlib.suppress(KeyError, ValueError):   # dropped meanwhile: its end event is on its way
                self.leg.complete(item.item_id)
