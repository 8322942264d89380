"""A call's dump (``dump=true``): every command and event as a JSON line, secrets masked.

Each line is ``{"ts": <epoch ms>, "command": {...}}`` or ``{"ts": ..., "event": {...}}``. A command is
written from the JSON value the control socket decoded (parsed once); an event from the text that
was sent (serialised once), re-serialised redacted only when it carries a secret. A message that is
not JSON is written as text with anything that looks like a secret's value masked, cut at 1000
characters.

Bounds, since a client controls what is written:

- Each call gets a file of its own, created exclusively: ``<id>.jsonl`` when the id is a plain file
  name, else the id made safe plus a hash of it (ids such as ``p/q`` and ``p_q`` differ); a name
  taken already (an id used again) gets ``-2``, ``-3``, ... The file opens with its first line.
- A line over :data:`LINE_MAX` characters (a megabyte of base64 audio in a ``tts``) is replaced by
  one that names the command and its size. A file stops at ``max_bytes`` with a last line
  ``{"ts": ..., "truncated": <bytes left out so far>}``.
- :func:`prune_dumps` removes dump files older than the retention (``dump_retention_days``).
- A write that fails (disk full) stops the dump, not the call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import IO, Any

from pbx.protocol import MASK, SECRET_KEYS, contains_secret, redact, to_json

log = logging.getLogger(__name__)

# A secret's value in JSON text that does not parse (cut short, its closing quote may be missing).
_SECRET_VALUE = re.compile('("(?:' + "|".join(sorted(SECRET_KEYS)) + r')"\s*:\s*)"(?:[^"\\]|\\.)*("|\\?$)')
UNPARSED_MAX = 1000
# How a secret key appears in an event's JSON text (a key is written as itself: plain ASCII, no escape)
_SECRET_KEY_TEXTS = tuple(f'"{key}"' for key in sorted(SECRET_KEYS))
LINE_MAX = 64 * 1024
NAME_MAX = 100               # characters of the id kept in the file name
MAX_SUFFIX = 1000


def dump_name(call_id: str) -> str:
    """The file name stem of a call's dump: the id itself when it is a plain name, else unique by hash."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in call_id)
    if safe == call_id and 0 < len(call_id) <= NAME_MAX and not call_id.startswith("."):
        return call_id
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe[:NAME_MAX].lstrip('.') or 'call'}-{digest}"


class CallDump:
    def __init__(self, folder: Path, call_id: str, max_bytes: int = 10_000_000) -> None:
        self.folder = folder
        self.call_id = call_id
        self.max_bytes = max_bytes
        self.path: Path | None = None
        self._file: IO[str] | None = None
        self._failed = False
        self._written = 0
        self._left_out = 0

    def command(self, value: object) -> None:
        """A decoded command (or any JSON value the client sent)."""
        text = to_json_any(redact(value))
        if len(text) > LINE_MAX:
            name = value.get("command") if isinstance(value, dict) else None
            text = to_json_any({"command": name if isinstance(name, str) else None, "omitted": len(text)})
        self._write("command", text)

    def unparsed(self, text: str) -> None:
        """A text message that is not JSON."""
        masked = _SECRET_VALUE.sub(r'\1"' + MASK + '"', text)[:UNPARSED_MAX]
        self._write("command", to_json_any(masked))

    def event(self, text: str, value: dict[str, Any]) -> None:
        """An event as sent (``text``) and as its JSON object (``value``)."""
        # Searching the text for a secret key is cheaper than walking the value (this runs for every event
        # of every call); only a text that names one is walked, and redacted if a value is set there.
        secret = any(key in text for key in _SECRET_KEY_TEXTS) and contains_secret(value)
        line = to_json(redact(value)) if secret else text
        if len(line) > LINE_MAX:
            line = to_json_any({"event": value.get("event"), "omitted": len(line)})
        self._write("event", line)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                if self._left_out:
                    self._file.write(f'{{"ts":{_now_ms()},"truncated":{self._left_out}}}\n')
                self._file.close()
            self._file = None
        self._failed = True

    def _write(self, kind: str, json_text: str) -> None:
        if self._failed:
            return
        line = f'{{"ts":{_now_ms()},"{kind}":{json_text}}}\n'
        if self._written + len(line) > self.max_bytes:
            self._left_out += len(line)
            return
        file = self._file or self._open()
        if file is None:
            return
        try:
            file.write(line)
            file.flush()
        except OSError as exc:   # disk full, ...: the call goes on without its dump
            log.warning("call %s: dump stopped: %s", self.call_id, exc)
            self.close()
            return
        self._written += len(line)

    def _open(self) -> IO[str] | None:
        stem = dump_name(self.call_id)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for n in range(1, MAX_SUFFIX + 1):
                path = self.folder / (f"{stem}.jsonl" if n == 1 else f"{stem}-{n}.jsonl")
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
                except FileExistsError:
                    continue
                # backslashreplace: a lone surrogate (valid in a JSON string) is written as its JSON escape
                self._file = open(fd, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115 - closed in close()
                self.path = path
                return self._file
            raise FileExistsError(f"{MAX_SUFFIX} dumps named {stem} already")
        except OSError as exc:
            log.warning("call %s: cannot open dump: %s", self.call_id, exc)
            self._failed = True
            return None


def prune_dumps(folder: Path, max_age_s: float, now: float | None = None) -> int:
    """Remove the dumps in ``folder`` last written more than ``max_age_s`` ago; returns how many."""
    limit = (time.time() if now is None else now) - max_age_s
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.name.endswith(".jsonl") and entry.is_file(follow_symlinks=False) \
                    and entry.stat(follow_symlinks=False).st_mtime < limit:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


def to_json_any(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _now_ms() -> int:
    return int(time.time() * 1000)
