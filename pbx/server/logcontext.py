"""Log records that say which call they are about: the call id in a context variable, added by a filter.

The call's connection handler (:meth:`pbx.server.app.CallServer._handle`) sets :data:`CALL_ID`, and so
does the call driver around each flush (its work runs from the media tick and SIP callbacks too, whose
context is not the call's); tasks it starts copy the context, so their records carry the id as well.
:class:`CallIdFilter` on the handlers puts it on every record as ``call_id`` (None outside a call).

``log_format = "text"`` writes ``... name: [call <id>] message``; ``"json"`` writes one JSON object a
line: ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``, ``call_id``, ``pid``
(which worker), and ``exception`` (the formatted traceback) when there is one.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextvars import ContextVar

CALL_ID: ContextVar[str | None] = ContextVar("pypbx_call_id", default=None)
LOG_FORMATS = ("text", "json")
PREFIX_CHARS = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CallIdFilter(logging.Filter):
    """Adds ``call_id`` (the call being served, or None) and ``call_prefix`` (for the text format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        call_id = getattr(record, "call_id", None) or CALL_ID.get()
        record.call_id = call_id
        record.call_prefix = f"[call {printable(call_id)}] " if call_id else ""
        return True


def printable(call_id: str) -> str:
    """A client's id fit for a text line: control characters escaped (a newline would forge a log
    line), at most :data:`PREFIX_CHARS` characters."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", call_id)
    return text if len(text) <= PREFIX_CHARS else text[:PREFIX_CHARS] + "..."


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, object] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name,
            "message": record.getMessage(), "call_id": getattr(record, "call_id", None) or CALL_ID.get(),
            "pid": record.process}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


def text_format(who: str = "") -> str:
    """The text format's layout; ``who`` (e.g. "worker 123 ") goes before the logger's name."""
    return f"%(asctime)s %(levelname)s {who}%(name)s: %(call_prefix)s%(message)s"


def configure(level: str, log_format: str, who: str = "") -> logging.Handler:
    """The root logger writes to stderr in ``log_format`` at ``level``, every record with its call id."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be text or json, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.addFilter(CallIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(text_format(who)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
