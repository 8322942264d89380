"""Fuzz target: one SIP datagram, as the server's UDP port handles it.

The path (pbx/server/sipnet.py ``datagram``, then pbx/sip/ua.py ``receive``):
:func:`pbx.sip.message.parse_message`; on failure :func:`pbx.server.sipnet.error_response` builds the
answer from whatever can be read; on success the header properties the transaction layer reads (Via,
CSeq, Call-ID, From, To), :func:`~pbx.sip.message.check_request` (or ``check_response``) and, for a
refused request, :func:`~pbx.sip.message.response_for_error`.

Documented errors (pbx/sip/errors.py, pbx/sip/message.py): everything the peer got wrong is a
:class:`~pbx.sip.errors.SipParseError` (a ValueError; subclasses carry the status: 414, 405, 406, 415,
416, 420, 501, 505, 513). ``error_response`` and ``response_for_error`` raise nothing: they answer. That
is all this target catches; anything else (InvalidMessage included: it means "we built a bad message")
is a crash.

Invariants checked besides "no other exception":
- every message that parses serialises, and the serialised form parses to the same start line, header
  fields (Content-Length aside: serialising sets it) and body;
- every structured header value that parses round-trips: ``X.parse(str(x)) == x`` (pbx/sip/headers.py);
- the answer to a refused datagram, when there is one, parses as a response.

Run: ``.venv/bin/python fuzz/sip_message.py -max_total_time=60 <work dir> fuzz/corpus/sip_message``
"""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["pbx"]):
    from pbx.server.sipnet import error_response
    from pbx.sip.errors import SipParseError
    from pbx.sip.headers import SipUri, Via
    from pbx.sip.message import (
        Message,
        Request,
        Response,
        check_request,
        check_response,
        parse_message,
        response_for_error,
    )
    from pbx.sip.ua import ALLOWED_METHODS

from harness import main


def _round_trip_fields(message: Message) -> None:
    """Each structured field that parses gives itself back from its wire form."""
    for prop in ("cseq", "from_", "to"):
        try:
            value = getattr(message, prop)
        except SipParseError:
            continue
        again = type(value).parse(str(value))
        assert again == value, (prop, value, again)
    try:
        vias = message.vias
    except SipParseError:
        vias = []
    for via in vias:
        assert Via.parse(str(via)) == via, via
    if isinstance(message, Request):
        try:
            uri = SipUri.parse(message.uri)
        except SipParseError:
            return
        assert SipUri.parse(str(uri)) == uri, uri
    for prop in ("call_id", "branch"):
        with contextlib.suppress(SipParseError):
            getattr(message, prop)


def _round_trip(message: Message) -> None:
    again = parse_message(message.serialize())
    assert type(again) is type(message)
    if isinstance(message, Request):
        assert isinstance(again, Request)
        assert (again.method, again.uri) == (message.method, message.uri)
    else:
        assert isinstance(again, Response)
        assert (again.status, again.reason) == (message.status, message.reason)
    assert again.body == message.body
    mine = [(n, v) for n, v in message.headers.items() if n != "Content-Length"]
    theirs = [(n, v) for n, v in again.headers.items() if n != "Content-Length"]
    assert mine == theirs, (mine, theirs)


def _refuse(request: Request, error: SipParseError) -> None:
    """What the agent answers a request that failed its checks with (UserAgent._refuse)."""
    if not request.headers.get_all("Via"):
        return
    try:
        to_tag = None if request.to.tag is not None else "fuzz"
    except SipParseError:
        to_tag = None
    response_for_error(request, error, to_tag).serialize()


def test_one_input(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        answer = error_response(data, exc)
        if answer is not None:
            assert isinstance(parse_message(answer), Response), answer
        return
    _round_trip(message)
    _round_trip_fields(message)
    if isinstance(message, Request):
        try:
            check_request(message, methods=ALLOWED_METHODS)
        except SipParseError as exc:
            _refuse(message, exc)
    else:
        with contextlib.suppress(SipParseError):
            check_response(message)

if __name__ == "__main__":
    main(test_one_input)
