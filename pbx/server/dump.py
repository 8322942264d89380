"""A call's dump (``dump=true``): every command and event as a JSON line, secrets masked.

Each line is ``{"ts": <epoch ms>, "command": {...}}`` or ``{"ts": ..., "event": {...}}``. A command is
written from the JSON value the control socket decoded (parsed once); an event from the text that
was sent (serialised once), re-serialised redacted only when it carries a secret. A message that is
not JSON is written as text with anything that looks like a secret's value masked, cut at 1000
characters. The file opens with its first line; a write that fails (disk full) stops the dump, not
the call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from pathlib import Path
from typing import IO, Any

from pbx.paths import OutsideDirectory, confine
from pbx.protocol import MASK, SECRET_KEYS, contains_secret, redact, to_json

log = logging.getLogger(__name__)

# A secret's value in JSON text that does not parse (cut short, its closing quote may be missing).
_SECRET_VALUE = re.compile('("(?:' + "|".join(sorted(SECRET_KEYS)) + r')"\s*:\s*)"(?:[^"\\]|\\.)*("|\\?$)')
UNPARSED_MAX = 1000


def safe_name(call_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in call_id)[:128] or "call"


class CallDump:
    def __init__(self, folder: Path, call_id: str) -> None:
        self.folder = folder
        self.call_id = call_id
        self._file: IO[str] | None = None
        self._failed = False

    def command(self, value: object) -> None:
        """A decoded command (or any JSON value the client sent)."""
        self._write("command", to_json_any(redact(value)))

    def unparsed(self, text: str) -> None:
        """A text message that is not JSON."""
        masked = _SECRET_VALUE.sub(r'\1"' + MASK + '"', text)[:UNPARSED_MAX]
        self._write("command", to_json_any(masked))

    def event(self, text: str, value: dict[str, Any]) -> None:
        """An event as sent (``text``) and as its JSON object (``value``)."""
        self._write("event", to_json(redact(value)) if contains_secret(value) else text)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self._failed = True

    def _write(self, kind: str, json_text: str) -> None:
        if self._failed:
            return
        file = self._file or self._open()
        if file is None:
            return
        try:
            file.write(f'{{"ts":{int(time.time() * 1000)},"{kind}":{json_text}}}\n')
            file.flush()
        except OSError as exc:   # disk full, ...: the call goes on without its dump
            log.warning("call %s: dump stopped: %s", self.call_id, exc)
            self.close()

    def _open(self) -> IO[str] | None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = confine(self.folder, f"{safe_name(self.call_id)}.jsonl")
            # backslashreplace: a lone surrogate (valid in a JSON string) is written as its JSON escape
            self._file = open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115 - closed in close()
        except (OSError, OutsideDirectory) as exc:
            log.warning("call %s: cannot open dump: %s", self.call_id, exc)
            self._failed = True
        return self._file


def to_json_any(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
