"""The call record (CDR): one JSON file per call, written when its hangup event is sent.

Where: ``<call id>.cdr.json`` next to the call's recording (the folder of its ``recorderFile``), or in
the recordings folder when the call did not record, so an operator finds every record in one tree.
The name is the id when that is a plain file name, else a sanitised stem with a hash of the id
(:func:`pbx.server.dump.dump_name`), so a hostile id (``../x``, a slash, a NUL) cannot leave the
folder; a record already there (an id used again) is kept and the new one gets ``-2``, ``-3``...

What (see :func:`build_record`): the call's id and type, its times (created, ringing, answered, ended,
epoch ms and ISO 8601) and durations, the parties (the hangup event's ``from``/``to``), the remote
addresses (the application's WebSocket, the SIP peer, the RTP peer), the codecs, the RTP/RTCP quality
(the same figures as ``hangup.extra.rtp``), the hangup reason and initiator, the recording, and this
server's pid and worker.

How: the record is built on the loop from what the call knows (small: a few hundred bytes of
JSON) and written on a worker thread. A failure (disk full, a folder that is a file) is logged and
counted (``pypbx_cdr_failed_total``); the call has already ended and nothing else is affected. A file
left half written is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbx.core import engine as eng
from pbx.core.codec import CODEC_NAMES
from pbx.paths import OutsideDirectory, confine
from pbx.protocol import AnswerEvent, Attendee, Event, HangupEvent, RingingEvent
from pbx.server.dump import MAX_SUFFIX, dump_name
from pbx.server.media import EngineLeg
from pbx.server.siptransport import SipTransport

if TYPE_CHECKING:
    from pbx.server.driver import CallDriver

log = logging.getLogger(__name__)

SUFFIX = ".cdr.json"
CODEC_BY_KIND = {kind: name for name, kind in CODEC_NAMES.items()}


@dataclass(slots=True)
class MediaNotes:
    """What the call's leg looked like while it had one (the leg is released before the hangup)."""

    codec: str | None = None
    payload_type: int | None = None
    remote_media: str | None = None
    remote_signalling: str | None = None


@dataclass(slots=True)
class PendingRecord:
    record: dict[str, Any]
    recorder_file: str | None = None


@dataclass(slots=True)
class CdrWriter:
    """Watches the events calls send (:meth:`on_event`) and writes each call's record at its hangup."""

    folder: Path                                   # the recordings folder
    worker: int | None = None                      # set by a worker process (pbx.server.worker)
    written: int = 0
    failed: int = 0
    _notes: dict[str, MediaNotes] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def on_event(self, driver: CallDriver, event: Event) -> None:
        if isinstance(event, HangupEvent):
            notes = self._notes.pop(driver.id, None) or MediaNotes()
            self._spawn(self._write(self.prepare(driver, event, notes)))
        elif isinstance(event, AnswerEvent | RingingEvent) or (
                driver.id not in self._notes and isinstance(driver.call.leg, EngineLeg)):
            self._notes[driver.id] = media_notes(driver, self._notes.get(driver.id))

    def prepare(self, driver: CallDriver, event: HangupEvent, notes: MediaNotes) -> PendingRecord:
        option = driver.call.option
        recorder = option.recorder.recorder_file if option is not None and option.recorder is not None else None
        return PendingRecord(build_record(driver, event, notes, self.worker), recorder)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, pending: PendingRecord) -> None:
        try:
            path = await asyncio.to_thread(write_record, self.folder, pending.record, pending.recorder_file)
        except OSError as exc:
            self.failed += 1
            log.warning("call %s: cannot write its call record: %s", pending.record["callId"], exc)
        except Exception:     # a bug must not go unseen, nor reach the loop's exception handler
            self.failed += 1
            log.exception("call %s: writing its call record failed", pending.record["callId"])
        else:
            self.written += 1
            log.debug("call record written: %s", path)

    async def wait(self) -> None:
        """Every record being written is on disk (or has failed)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def media_notes(driver: CallDriver, before: MediaNotes | None) -> MediaNotes:
    notes = before or MediaNotes()
    leg = driver.call.leg
    if isinstance(leg, EngineLeg):
        notes.codec = CODEC_BY_KIND.get(leg.leg.codec.kind, notes.codec)
        if leg.leg.transport == eng.TRANSPORTS["udp"]:
            notes.payload_type = leg.leg.payload_type     # a stream leg (/call) has no payload type
        remote = leg.leg.remote
        if remote is not None:
            notes.remote_media = address(remote)
    transport = driver.transport
    if isinstance(transport, SipTransport) and transport.session is not None:
        notes.remote_signalling = address(transport.session.peer)
    return notes


def address(addr: Any) -> str | None:
    """``host:port`` (``[v6]:port``) of a socket address tuple."""
    if not isinstance(addr, tuple) or len(addr) < 2:
        return None
    host, port = str(addr[0]), addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _party(who: Attendee | None) -> dict[str, str] | None:
    return None if who is None else {"username": who.username, "realm": who.realm, "uri": who.source}


def _seconds(start: int | None, end: int | None) -> float | None:
    return None if start is None or end is None else round(max(end - start, 0) / 1000.0, 3)


def build_record(driver: CallDriver, event: HangupEvent, notes: MediaNotes, worker: int | None) -> dict[str, Any]:
    """The record of a call whose hangup event is ``event`` (see the module docstring)."""
    call = driver.call
    option = call.option
    control = address(driver.control.ws.remote_address)
    rtp = (event.extra or {}).get("rtp")
    return {
        "callId": call.id,
        "type": call.profile.call_type,
        "times": {"created": iso(event.start_time), "ringing": iso(event.ringing_time),
                  "answered": iso(event.answer_time), "ended": iso(event.hangup_time),
                  "createdMs": event.start_time, "ringingMs": event.ringing_time,
                  "answeredMs": event.answer_time, "endedMs": event.hangup_time},
        "durations": {"totalSeconds": _seconds(event.start_time, event.hangup_time),
                      "setupSeconds": _seconds(event.start_time, event.answer_time),
                      "talkSeconds": _seconds(event.answer_time, event.hangup_time)},
        "hangup": {"reason": event.reason, "initiator": event.initiator},
        "parties": {"from": _party(event.from_), "to": _party(event.to)},
        "remote": {"control": control, "signalling": notes.remote_signalling, "media": notes.remote_media},
        "codecs": {"requested": option.codec.lower() if option is not None else None,
                   "leg": notes.codec, "payloadType": notes.payload_type},
        "rtp": rtp if isinstance(rtp, dict) and rtp else None,
        "recording": None,      # filled in by write_record, which looks at the disk
        "server": {"pid": os.getpid(), "worker": worker, "host": socket.gethostname()},
    }


def write_record(folder: Path, record: dict[str, Any], recorder_file: str | None) -> Path:
    """Write ``record`` next to the recording ``recorder_file`` (if the file is there) or in ``folder``;
    returns its path. Blocking: run it on a worker thread. OSError when it cannot be written."""
    base = folder.resolve()
    target = base
    if recorder_file:
        try:
            wav = confine(base, recorder_file)
        except (OutsideDirectory, OSError, RuntimeError):
            wav = None
        if wav is not None and wav.is_file():
            record["recording"] = {"file": recorder_file, "path": str(wav), "bytes": wav.stat().st_size}
            target = wav.parent
    data = (json.dumps(record, ensure_ascii=False, indent=1, default=str) + "\n").encode("utf-8", "surrogatepass")
    stem = dump_name(str(record["callId"]))
    target.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_SUFFIX + 1):
        path = target / (f"{stem}{SUFFIX}" if n == 1 else f"{stem}-{n}{SUFFIX}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()     # half written on a full disk: nothing left behind
            raise
        return path
    raise FileExistsError(f"{MAX_SUFFIX} call records named {stem} already in {target}")
