"""Errors of the SIP stack.

Hierarchy::

    SipError
    ├── SipParseError (also ValueError)      the peer sent something we cannot accept; ``status`` and
    │   │                                    ``reason`` are the response a UAS answers a request with,
    │   │                                    ``headers`` the extra header fields that response carries
    │   ├── RequestUriTooLong                414 Request-URI Too Long
    │   ├── MethodNotAllowed                 405 Method Not Allowed (with Allow)
    │   ├── NotAcceptable                    406 Not Acceptable
    │   ├── UnsupportedMediaType             415 Unsupported Media Type (with Accept)
    │   ├── UnsupportedUriScheme             416 Unsupported URI Scheme
    │   ├── BadExtension                     420 Bad Extension (with Unsupported)
    │   ├── MethodNotImplemented             501 Not Implemented (with Allow)
    │   ├── UnsupportedVersion               505 Version Not Supported
    │   └── MessageTooLarge                  513 Message Too Large (size or header count over the limits)
    ├── InvalidMessage (also ValueError)     we were asked to build a message that cannot be sent (a
    │                                        header value with CR or LF, a method that is not a token)
    └── the other layers' errors             TransactionError, DialogError, ... (in their modules)

A :class:`SipParseError` raised for a request maps to one response (:func:`pbx.sip.message.response_for_error`);
one raised for a response means the response is dropped. Either way only that message is lost: the
transport, the other transactions and the calls go on. After a stream framing error the TCP connection
cannot be resynchronised and is closed.
"""

from __future__ import annotations

from collections.abc import Iterable


class SipError(Exception):
    """Root of the SIP stack's errors."""


class SipParseError(SipError, ValueError):
    """The peer sent a message (or a part of one) that we cannot accept."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def __init__(self, message: str, status: int = 400, reason: str = "Bad Request",
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)


class RequestUriTooLong(SipParseError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 414, "Request-URI Too Long")


class MethodNotAllowed(SipParseError):
    """A SIP method we know but do not serve; ``allow`` lists those we do."""

    def __init__(self, message: str, allow: Iterable[str]) -> None:
        super().__init__(message, 405, "Method Not Allowed", [("Allow", ", ".join(allow))])


class NotAcceptable(SipParseError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 406, "Not Acceptable")


class UnsupportedMediaType(SipParseError):
    """A body of a type we do not take; ``accept`` lists those we do."""

    def __init__(self, message: str, accept: Iterable[str]) -> None:
        super().__init__(message, 415, "Unsupported Media Type", [("Accept", ", ".join(accept))])


class UnsupportedUriScheme(SipParseError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 416, "Unsupported URI Scheme")


class BadExtension(SipParseError):
    """Require named option tags we do not support; they go back in Unsupported (RFC 3261 §8.2.2.3)."""

    def __init__(self, message: str, unsupported: Iterable[str]) -> None:
        self.unsupported = tuple(unsupported)
        super().__init__(message, 420, "Bad Extension", [("Unsupported", ", ".join(self.unsupported))])


class MethodNotImplemented(SipParseError):
    """A method we do not know at all (RFC 3261 §8.2.1); ``allow`` lists those we serve."""

    def __init__(self, message: str, allow: Iterable[str]) -> None:
        super().__init__(message, 501, "Not Implemented", [("Allow", ", ".join(allow))])


class UnsupportedVersion(SipParseError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 505, "Version Not Supported")


class MessageTooLarge(SipParseError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 513, "Message Too Large")


class InvalidMessage(SipError, ValueError):
    """A message or header we were asked to build cannot be sent as it is."""
