"""Framing SIP messages off a byte stream (TCP, TLS; RFC 3261 §18.3, RFC 5626 §3.5.1), sans-I/O.

:meth:`StreamParser.feed` takes whatever octets arrived and returns the messages they complete, in order;
a message split across any number of reads comes out the same as when it arrived whole. Rules:

- CRLFs between messages are skipped: they are RFC 5626 keep-alives (a double-CRLF ping, a CRLF pong) or
  the stray line ends RFC 3261 §7.5 tells a stream receiver to ignore.
- Content-Length is mandatory on a stream (§18.3, §20.14); without it the message cannot be framed.
- The buffer is bounded by ``Limits.max_size``: a header section still open past it, or a Content-Length
  that takes the message past it, is :class:`~pbx.sip.errors.MessageTooLarge` (513) as soon as it is known.
- Any error (bad framing, bad start line, bad Content-Length, too large) is final: the stream cannot be
  resynchronised, so every later :meth:`~StreamParser.feed` raises it again and the transport should answer
  (when it can) and close the connection (RFC 4475 §3.1.2.3, §3.3.9). The messages completed before the
  error are still returned, as they would have been had the error come in a later read: the call that
  meets an error after them returns them and sets :attr:`~StreamParser.error`, the next call raises it.
"""

from __future__ import annotations

from pbx.sip.errors import MessageTooLarge, SipParseError
from pbx.sip.message import (
    DEFAULT_LIMITS,
    Limits,
    Message,
    content_length,
    head_end,
    parse_head,
    skip_blank_lines,
)

__all__ = ["StreamParser"]


class StreamParser:
    """One connection's framer: ``feed(data) -> list[Message]``."""

    __slots__ = ("_buffer", "_error", "_pending", "_resume", "limits")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._resume = 0                                   # where the search for the empty line goes on
        self._pending: tuple[Message, int, int] | None = None  # parsed head, body start, body length
        self._error: SipParseError | None = None

    @property
    def error(self) -> SipParseError | None:
        """The error that ended the stream, None while it is good."""
        return self._error

    @property
    def buffered(self) -> int:
        """Octets received and not yet part of a returned message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """The messages ``data`` completes (maybe none). Raises SipParseError, then again on every call;
        when the error follows messages completed by this call, it returns them and raises next time."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[Message] = []
        try:
            while (message := self._next()) is not None:
                messages.append(message)
        except SipParseError as exc:
            self._error = exc
            self._buffer.clear()
            if not messages:
                raise
        return messages

    def _next(self) -> Message | None:
        buffer = self._buffer
        limit = self.limits.max_size
        if self._pending is None:
            blank = skip_blank_lines(buffer)
            if blank:
                del buffer[:blank]
                self._resume = 0
            if not buffer:
                return None
            end, self._resume = head_end(buffer, self._resume)
            if end is None:
                if len(buffer) > limit:
                    raise MessageTooLarge(f"header section longer than {limit} octets")
                return None
            if end > limit:
                raise MessageTooLarge(f"header section of {end} octets (the limit is {limit})")
            head = parse_head(bytes(buffer[:end]), self.limits)
            length = content_length(head.headers)
            if length is None:
                raise SipParseError("no Content-Length on a stream transport")
            if end + length > limit:
                raise MessageTooLarge(f"message of {end + length} octets (the limit is {limit})")
            self._pending = (head, end, length)
        head, end, length = self._pending
        if len(buffer) < end + length:
            return None
        head.body = bytes(buffer[end:end + length])
        del buffer[:end + length]
        self._pending = None
        self._resume = 0
        return head
