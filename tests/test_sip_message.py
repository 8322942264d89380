"""The SIP message layer: header values (URIs, name-addr, Via, CSeq, parameters, lists), the Headers
multi-map, parsing datagrams (folding, compact forms, bodies, limits), serialising, the UAS checks,
responses, TCP framing split at every byte boundary, and a fuzz loop that accepts only SipParseError.

The RFC 4475 / 5118 torture messages and their expected outcomes are in test_sip_torture.py.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from pbx.sip.errors import (
    InvalidMessage,
    MessageTooLarge,
    MethodNotAllowed,
    MethodNotImplemented,
    NotAcceptable,
    RequestUriTooLong,
    SipError,
    SipParseError,
    UnsupportedMediaType,
    UnsupportedUriScheme,
    UnsupportedVersion,
)
from pbx.sip.headers import CSeq, NameAddr, SipUri, Via, parse_params, quote, split_list, unquote
from pbx.sip.message import (
    Headers,
    Limits,
    Message,
    Request,
    Response,
    canonical_name,
    check_request,
    check_response,
    parse_message,
    response_for_error,
    response_to,
)
from pbx.sip.stream import StreamParser

FIXTURES = Path(__file__).parent / "fixtures" / "sip"


def raises(kind: type[BaseException], message: str) -> Any:
    """pytest.raises for exactly ``message``."""
    return pytest.raises(kind, match="^" + re.escape(message) + "$")


def sip(text: str, body: bytes = b"") -> bytes:
    """A message written one header per line, with CRLF line ends and the closing empty line."""
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


INVITE = sip("""
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Content-Type: application/sdp
Content-Length: 4""", b"v=0\n")

OK = sip("""
SIP/2.0 200 OK
Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Content-Length: 0""")


def request(data: bytes = INVITE) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


# -- errors -----------------------------------------------------------------------------------------------------
def test_error_hierarchy() -> None:
    assert issubclass(SipParseError, SipError) and issubclass(SipParseError, ValueError)
    assert issubclass(InvalidMessage, SipError) and issubclass(InvalidMessage, ValueError)
    assert not issubclass(InvalidMessage, SipParseError)
    error = SipParseError("x")
    assert (error.status, error.reason, error.headers) == (400, "Bad Request", ())
    assert (MessageTooLarge("x").status, MessageTooLarge("x").reason) == (513, "Message Too Large")
    assert (UnsupportedVersion("x").status, UnsupportedUriScheme("x").status) == (505, 416)
    assert RequestUriTooLong("x").status == 414 and NotAcceptable("x").status == 406
    assert MethodNotAllowed("x", ["INVITE", "BYE"]).headers == (("Allow", "INVITE, BYE"),)
    assert MethodNotImplemented("x", ["BYE"]).status == 501
    assert UnsupportedMediaType("x", ["application/sdp"]).headers == (("Accept", "application/sdp"),)


# -- URIs -------------------------------------------------------------------------------------------------------
def test_sip_uri_parts() -> None:
    uri = SipUri.parse("sips:alice:secret@Atlanta.example.com:5061;transport=TCP;lr;Maddr=192.0.2.1?Subject=hi&X=1")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "alice", "secret", "Atlanta.example.com", 5061)
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "192.0.2.1"}
    assert uri.headers == {"Subject": "hi", "X": "1"}
    assert uri.host_port == "Atlanta.example.com:5061"
    assert str(uri) == "sips:alice:secret@Atlanta.example.com:5061;transport=TCP;lr;maddr=192.0.2.1?Subject=hi&X=1"
    assert SipUri.parse("SIP:host").scheme == "sip"
    bare = SipUri.parse("sip:192.0.2.4")
    assert (bare.user, bare.host, bare.port, bare.params, bare.headers) == (None, "192.0.2.4", None, {}, {})


def test_sip_uri_ipv6_references() -> None:
    uri = SipUri.parse("sip:user@[2001:db8::10]:5070;maddr=[2001:db8::1]")
    assert (uri.host, uri.port, uri.params) == ("2001:db8::10", 5070, {"maddr": "[2001:db8::1]"})
    assert uri.host_port == "[2001:db8::10]:5070" and str(uri) == "sip:user@[2001:db8::10]:5070;maddr=[2001:db8::1]"
    assert SipUri.parse("sip:[2001:db8::10:5070]").port is None               # RFC 5118 §4.3
    assert SipUri.parse("sip:[::ffff:192.0.2.2]").host == "::ffff:192.0.2.2"
    assert SipUri.parse("sip:[2001:db8:::192.0.2.1]").host == "2001:db8::192.0.2.1"   # RFC 5118 §4.10
    assert SipUri(scheme="sip", user=None, password=None, host="::1", port=None).host_port == "[::1]"


def test_sip_uri_escapes_are_decoded_and_encoded_again() -> None:
    uri = SipUri.parse("sip:%61lice%20b;x=%3b@h;n%61me=v%61lue%25%34%31?Route=%3Csip:a%40b%3E")
    assert (uri.user, uri.params, uri.headers) == ("alice b;x=;", {"name": "value%41"}, {"Route": "<sip:a@b>"})
    assert str(uri) == "sip:alice%20b;x=;@h;name=value%2541?Route=%3Csip:a%40b%3E"
    assert SipUri.parse(str(uri)) == uri
    assert SipUri.parse("sip:null-%00-null@h").user == "null-\x00-null"
    assert SipUri.parse("sip:%E2%82%AC@h").user == "€"
    odd = SipUri.parse("sip:%FF%FE@h")                       # not UTF-8: kept exactly
    assert str(odd) == "sip:%FF%FE@h" and SipUri.parse(str(odd)) == odd
    built = SipUri("sip", "a@b c", "p@ss", "example.com", None, {"k": "v;w"}, {})
    assert str(built) == "sip:a%40b%20c:p%40ss@example.com;k=v%3Bw"
    assert SipUri.parse(str(built)) == built


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host, uri.port, uri.params) == (
        "tel", "+1-201-555-0123", "", None, {"phone-context": "example.com"})
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(("text", "kind", "message"), [
    ("", SipParseError, "empty URI"),
    ("sip:a b@h", SipParseError, "white space in URI 'sip:a b@h'"),
    ("<sip:h>", SipParseError, "not a URI: '<sip:h>'"),
    ("http://example.com/", UnsupportedUriScheme, "unsupported URI scheme 'http'"),
    ("sip:", SipParseError, "no host in 'sip:'"),
    ("sip:@h", SipParseError, "bad user part in 'sip:@h'"),
    ("sip:a<b@h", SipParseError, "bad user part in 'sip:a<b@h'"),
    ("sip:a:b@c@h", SipParseError, "bad host 'c@h'"),
    ("sip:a%2@h", SipParseError, "bad escape in user part 'a%2'"),
    ("sip:h:65536", SipParseError, "bad port '65536'"),
    ("sip:h:", SipParseError, "bad port ''"),
    ("sip:h;;x", SipParseError, "bad URI parameter '' in 'sip:h;;x'"),
    ("sip:h;x=", SipParseError, "bad URI parameter 'x=' in 'sip:h;x='"),
    ("sip:h?x", SipParseError, "bad URI header 'x' in 'sip:h?x'"),
    ("sip:2001:db8::10", SipParseError, "an IPv6 address must be in brackets: 'sip:2001:db8::10'"),
    ("sip:[2001:db8::10", SipParseError, "unterminated IPv6 reference in 'sip:[2001:db8::10'"),
    ("sip:[2001:db8::10]x", SipParseError, "junk after the host in 'sip:[2001:db8::10]x'"),
    ("sip:[::g]", SipParseError, "bad IPv6 address '::g'"),
    ("sip:ex_ample..com", SipParseError, "bad host 'ex_ample..com'"),
    ("sip:192.0.2.256", SipParseError, "bad host '192.0.2.256'"),
    ("tel:", SipParseError, "bad telephone number in 'tel:'"),
])
def test_sip_uri_errors(text: str, kind: type[SipParseError], message: str) -> None:
    with raises(kind, message):
        SipUri.parse(text)


# -- quoted strings, parameters, lists --------------------------------------------------------------------------
def test_quote_and_unquote() -> None:
    assert quote('J "Rosie" \\') == '"J \\"Rosie\\" \\\\"'
    assert unquote(quote('J "Rosie" \\')) == 'J "Rosie" \\'
    assert quote("a\x00b\x7f\r\nc\td") == '"a\\\x00b\\\x7f  c\td"'
    assert unquote("token") == "token" and unquote('"') == '"'


def test_parse_params() -> None:
    assert parse_params("") == {}
    assert parse_params(" ; Tag = 1x ;lr; received=[2001:db8::1] ;q=0.5") == {
        "tag": "1x", "lr": None, "received": "[2001:db8::1]", "q": "0.5"}
    assert parse_params(';x="a;b,\\"c";y') == {"x": '"a;b,\\"c"', "y": None}
    with raises(SipParseError, "empty parameter in ';;'"):
        parse_params(";;")
    with raises(SipParseError, "expected ';' at 'x'"):
        parse_params("x")
    with raises(SipParseError, "parameter 'a' has no value in ';a='"):
        parse_params(";a=")
    with raises(SipParseError, "unterminated quoted string in ';a=\"b'"):
        parse_params(';a="b')
    with raises(SipParseError, "expected ';' at 'c'"):
        parse_params(";a=b c")


def test_split_list() -> None:
    assert split_list("a, b ,c") == ["a", "b", "c"]
    assert split_list('"Doe, J" <sip:j@a;x=1,2>;q=1, <sip:b@c,d>') == ['"Doe, J" <sip:j@a;x=1,2>;q=1', "<sip:b@c,d>"]
    assert split_list('"a \\" , b" <sip:x@y>, z') == ['"a \\" , b" <sip:x@y>', "z"]
    assert split_list(" , ,") == []


# -- name-addr --------------------------------------------------------------------------------------------------
def test_name_addr_forms() -> None:
    quoted = NameAddr.parse('"J \\"Rosie\\" Rosenberg" <sip:jdrosen@example.com>;tag=98asjd8')
    assert (quoted.display, quoted.uri.user, quoted.tag) == ('J "Rosie" Rosenberg', "jdrosen", "98asjd8")
    assert str(quoted) == '"J \\"Rosie\\" Rosenberg" <sip:jdrosen@example.com>;tag=98asjd8'
    tokens = NameAddr.parse("  Alice   Liddell <sip:alice@example.com> ; tag = 1 ; x")
    assert (tokens.display, tokens.params) == ("Alice Liddell", {"tag": "1", "x": None})
    assert NameAddr.parse("caller<sip:caller@example.com>").display == "caller"      # RFC 4475 §3.1.1.6
    bare = NameAddr.parse("<sip:bob@example.com;transport=tcp>;expires=60")
    assert (bare.display, bare.uri.params, bare.params) == (None, {"transport": "tcp"}, {"expires": "60"})
    spec = NameAddr.parse("sip:bob@example.com ;tag=a;user=phone")
    assert (spec.display, spec.uri.params, spec.params) == (None, {}, {"tag": "a", "user": "phone"})
    assert str(spec) == "<sip:bob@example.com>;tag=a;user=phone"
    assert NameAddr.parse('"" <sip:x@y>').display == ""
    assert NameAddr.parse(str(quoted)) == quoted and NameAddr.parse(str(spec)) == spec


def test_name_addr_tags() -> None:
    address = NameAddr.parse("<sip:bob@example.com>;x=1")
    assert address.tag is None
    tagged = address.with_tag("abc")
    assert (tagged.tag, address.tag, str(tagged)) == ("abc", None, "<sip:bob@example.com>;x=1;tag=abc")
    assert tagged.with_tag("def").params == {"x": "1", "tag": "def"}


def test_name_addr_display_with_control_characters_round_trips() -> None:
    address = NameAddr(display="BEL:\x07 NUL:\x00", uri=SipUri.parse("sip:a@b"))
    assert str(address) == '"BEL:\\\x07 NUL:\\\x00" <sip:a@b>'
    assert NameAddr.parse(str(address)) == address
    assert str(NameAddr("evil\r\nVia: x", SipUri.parse("sip:a@b"))) == '"evil  Via: x" <sip:a@b>'


@pytest.mark.parametrize(("text", "message"), [
    ('"Mr. J. User <sip:j.user@example.com>', "unterminated quoted string in '\"Mr. J. User <sip:j.user@example.com>'"),
    ('"J" sip:j@example.com', "expected '<' after the display name in '\"J\" sip:j@example.com'"),
    ("<sip:j@example.com", "missing '>' in '<sip:j@example.com'"),
    ("Bell, Alexander <sip:a@b>", "bad display name 'Bell, Alexander'"),
    ("< sip:a@b >", "white space in URI ' sip:a@b '"),
    ("sip:a@b?Route=x", "a URI with '?' or ',' must be enclosed in '<>': 'sip:a@b?Route=x'"),
    ("<sip:a@b> x", "expected ';' at 'x'"),
    ("isbn:2983792873", "unsupported URI scheme 'isbn'"),
])
def test_name_addr_errors(text: str, message: str) -> None:
    with raises(SipParseError, message):
        NameAddr.parse(text)


# -- Via, CSeq --------------------------------------------------------------------------------------------------
def test_via() -> None:
    via = Via.parse("SIP / 2.0 / tcp  spindle.example.com : 5061  ; branch = z9hG4bK9ikj8 ;rport;received=192.0.2.1")
    assert (via.transport, via.host, via.port, via.branch) == ("TCP", "spindle.example.com", 5061, "z9hG4bK9ikj8")
    assert (via.rport, via.received) == (True, "192.0.2.1")
    assert str(via) == "SIP/2.0/TCP spindle.example.com:5061;branch=z9hG4bK9ikj8;rport;received=192.0.2.1"
    assert Via.parse(str(via)) == via
    v6 = Via.parse("SIP/2.0/UDP [2001:db8::9:1]:5060;received=[2001:db8::9:255];rport=4000")
    assert (v6.host, v6.port, v6.received, v6.rport, v6.host_port) == (
        "2001:db8::9:1", 5060, "2001:db8::9:255", 4000, "[2001:db8::9:1]:5060")
    assert str(v6) == "SIP/2.0/UDP [2001:db8::9:1]:5060;received=[2001:db8::9:255];rport=4000"
    plain = Via.parse("SIP/2.0/UDP host")
    assert (plain.branch, plain.received, plain.rport, plain.port) == (None, None, None, None)
    assert Via(transport="WS", host="h", port=None).params == {}


@pytest.mark.parametrize(("text", "message"), [
    ("SIP/2.0/UDP", "bad Via 'SIP/2.0/UDP'"),
    ("SIP/2.0 UDP host", "bad Via 'SIP/2.0 UDP host'"),
    ("SIP/2.0/UDPhost", "bad Via 'SIP/2.0/UDPhost'"),
    ("SIP/7.0/UDP host", "unsupported Via protocol SIP/7.0"),
    ("HTTP/2.0/UDP host", "unsupported Via protocol HTTP/2.0"),
    ("SIP/2.0/UDP host;;", "empty parameter in ';;'"),
    ("SIP/2.0/UDP host:x", "bad port ''"),
    ("SIP/2.0/UDP [::1", "unterminated IPv6 reference in 'SIP/2.0/UDP [::1'"),
    ("SIP/2.0/UDP host;rport=x", "bad rport 'x' in 'SIP/2.0/UDP host;rport=x'"),
    ("SIP/2.0/UDP ho<st", "bad host 'ho<st'"),
])
def test_via_errors(text: str, message: str) -> None:
    with raises(SipParseError, message):
        Via.parse(text)


def test_cseq() -> None:
    assert CSeq.parse("0009 INVITE") == CSeq(9, "INVITE")
    assert CSeq.parse(" 4294967295\tACK ") == CSeq(2**32 - 1, "ACK")
    assert str(CSeq(1, "BYE")) == "1 BYE"
    for text, message in [("4294967296 INVITE", "CSeq number '4294967296' is larger than 2**32-1"),
                          ("1" * 5000 + " INVITE", f"CSeq number {'1' * 80!r}... is larger than 2**32-1"),
                          ("INVITE 1", "bad CSeq 'INVITE 1'"), ("1", "bad CSeq '1'"),
                          ("1 IN<VITE", "bad CSeq '1 IN<VITE'"), ("-1 INVITE", "bad CSeq '-1 INVITE'")]:
        with raises(SipParseError, message):
            CSeq.parse(text)


# -- Headers ----------------------------------------------------------------------------------------------------
def test_headers_names_are_case_insensitive_and_compact_forms_are_canonical() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b, SIP/2.0/UDP c"), ("i", "x@y"),
                       ("X-Custom", "1"), ("x-custom", "2"), ("m", "<sip:a@b>"), ("l", "0"), ("f", "<sip:f@h>"),
                       ("t", "<sip:t@h>"), ("o", "refer"), ("u", "talk"), ("r", "<sip:r@h>"), ("b", "<sip:b@h>"),
                       ("x", "1800"), ("k", "timer"), ("e", "gzip"), ("c", "text/plain"), ("s", "hi")])
    assert [name for name, _ in headers.items()] == [
        "Via", "Via", "Call-ID", "X-Custom", "x-custom", "Contact", "Content-Length", "From", "To", "Event",
        "Allow-Events", "Refer-To", "Referred-By", "Session-Expires", "Supported", "Content-Encoding",
        "Content-Type", "Subject"]
    assert headers.get_all("via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert headers.get("Via") == "SIP/2.0/UDP a" and headers.get("CALL-ID") == "x@y"
    assert headers.get_all("X-CUSTOM") == ["1", "2"] and "call-id" in headers and "I" in headers
    assert headers.get("Nope") is None and headers.get_all("Nope") == [] and "Nope" not in headers
    assert 3 not in headers
    assert canonical_name("cseq") == "CSeq" and canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("X-Foo") == "X-Foo" and len(headers) == 18


def test_headers_split_list_fields_only() -> None:
    headers = Headers([
        ("Contact", '"Doe, John" <sip:j@a.example>;q=0.5, <sip:b@c>'),
        ("Allow", "INVITE, ACK,BYE"), ("Route", "<sip:p1;lr>, <sip:p2;lr>"), ("Supported", "timer, 100rel"),
        ("WWW-Authenticate", 'Digest realm="a, b", nonce="x", qop="auth,auth-int"'),
        ("Authorization", 'Digest username="u", realm="r"'), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ("X-Unknown", "a, b"), ("Warning", '399 host "a, b", 399 host2 "c"'),
    ])
    assert headers.get_all("Contact") == ['"Doe, John" <sip:j@a.example>;q=0.5', "<sip:b@c>"]
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert headers.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert headers.get_all("k") == ["timer", "100rel"]
    assert headers.get_all("WWW-Authenticate") == ['Digest realm="a, b", nonce="x", qop="auth,auth-int"']
    assert headers.get("Authorization") == 'Digest username="u", realm="r"'
    assert headers.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"
    assert headers.get_all("X-Unknown") == ["a, b"]
    assert headers.get_all("Warning") == ['399 host "a, b"', '399 host2 "c"']


def test_headers_set_remove_copy() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("Via", "b"), ("From", "f")])
    copy = headers.copy()
    headers.set("v", "c")
    assert headers.items() == [("Via", "c"), ("To", "t"), ("From", "f")]
    headers.set("Subject", "s")
    assert headers.items()[-1] == ("Subject", "s")
    headers.remove("TO")
    assert "To" not in headers and copy.items() == [("Via", "a"), ("To", "t"), ("Via", "b"), ("From", "f")]
    assert copy == Headers(copy.items()) and copy != headers and copy != "x"
    assert next(iter(copy)) == ("Via", "a") and repr(Headers([("To", "t")])) == "Headers([('To', 't')])"


def test_headers_refuse_injection() -> None:
    headers = Headers()
    with raises(InvalidMessage, "CR or LF in the value of Subject: 'a\\r\\nVia: x'"):
        headers.add("Subject", "a\r\nVia: x")
    with raises(InvalidMessage, "bad header field name 'Bad Name'"):
        headers.add("Bad Name", "x")
    with raises(InvalidMessage, "bad header field name ''"):
        Headers([("", "x")])
    assert len(headers) == 0


# -- parsing ----------------------------------------------------------------------------------------------------
def test_parse_request_and_properties() -> None:
    message = request()
    assert (message.method, message.uri, message.body) == ("INVITE", "sip:bob@biloxi.example.com", b"v=0\n")
    assert message.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert message.cseq == CSeq(314159, "INVITE")
    assert message.branch == "z9hG4bK776asdhds" and message.top_via.host == "pc33.atlanta.example.com"
    assert (message.from_.display, message.from_.tag) == ("Alice", "1928301774")
    assert (message.to.display, message.to.tag) == ("Bob", None)


def test_parse_response() -> None:
    message = parse_message(OK)
    assert isinstance(message, Response)
    assert (message.status, message.reason, message.body) == (200, "OK", b"")
    assert [v.received for v in message.vias] == ["192.0.2.3", "192.0.2.1"]
    assert message.to.tag == "a6c85cf"
    reason = parse_message(sip("SIP/2.0 180 Ringing, really\nVia: SIP/2.0/UDP h"))
    assert isinstance(reason, Response) and reason.reason == "Ringing, really"
    for line in ("SIP/2.0 100", "SIP/2.0 100 ", "sip/2.0 100 "):
        bare = parse_message(sip(line))
        assert isinstance(bare, Response) and (bare.status, bare.reason) == (100, "")


def test_properties_name_the_bad_or_missing_field() -> None:
    message = parse_message(sip("OPTIONS sip:a@b SIP/2.0\nCSeq: x OPTIONS\nTo: <sip:a@b\nVia: SIP/2.0/UDP h;;"))
    with raises(SipParseError, "bad CSeq header field: bad CSeq 'x OPTIONS'"):
        _ = message.cseq
    with raises(SipParseError, "bad To header field: missing '>' in '<sip:a@b'"):
        _ = message.to
    with raises(SipParseError, "bad Via header field: empty parameter in ';;'"):
        _ = message.branch
    with raises(SipParseError, "missing From header field"):
        _ = message.from_
    with raises(SipParseError, "missing Call-ID header field"):
        _ = message.call_id


def test_folding_compact_forms_and_case() -> None:
    data = (b"INVITE sip:a@b SIP/2.0\r\n"
            b"v: SIP/2.0/UDP h1;branch=z9hG4bK1,\r\n SIP/2.0/UDP h2\r\n"
            b"subject: first\r\n\tsecond\r\n  \r\n third\r\n"
            b"T:\r\n <sip:a@b>\r\n"
            b"f: <sip:c@d>;tag=1\r\n"
            b"i: id\r\nCSEQ: 1 INVITE\r\nl: 0\r\n\r\n")
    message = request(data)
    assert [v.host for v in message.vias] == ["h1", "h2"]
    assert message.headers.get("Subject") == "first second third"
    assert message.headers.get("To") == "<sip:a@b>"
    assert message.headers.items()[0] == ("Via", "SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2")
    check_request(message)


def test_bare_lf_line_ends_and_stray_line_ends() -> None:
    message = request(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nTo: <sip:a@b>\n"
                      b"From: <sip:c@d>;tag=1\nCall-ID: x\nCSeq: 1 OPTIONS\nContent-Type: text/plain\n"
                      b"Content-Length: 2\n\nab")
    assert message.body == b"ab"
    check_request(message)
    with raises(SipParseError, "bare CR in 'Subject: a\\rb'"):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\rb\r\n\r\n")


def test_header_section_without_the_empty_line_on_a_datagram() -> None:
    message = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n")
    assert message.headers.get("To") == "<sip:a@b>" and message.body == b""
    with raises(SipParseError, "Content-Length 5 is larger than the 0 octets of body present"):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5\r\n")


def test_bodies_by_content_length() -> None:
    head = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Type: text/plain\r\n"
    assert parse_message(head + b"\r\nno length: the rest").body == b"no length: the rest"
    assert parse_message(head + b"Content-Length: 4\r\n\r\nfourextra octets").body == b"four"   # RFC 3261 §18.3
    assert parse_message(head + b"l: 0004\r\n\r\nfour").body == b"four"
    assert parse_message(head + b"l: 4\r\nContent-Length: 4\r\n\r\nfour").body == b"four"
    for extra, message in [
        (b"Content-Length: 5\r\n\r\nfour", "Content-Length 5 is larger than the 4 octets of body present"),
        (b"Content-Length: five\r\n\r\n", "bad Content-Length 'five'"),
        (b"Content-Length: -1\r\n\r\n", "bad Content-Length '-1'"),
        (b"Content-Length: 4, 4\r\n\r\nfour", "bad Content-Length '4, 4'"),
        (b"Content-Length: 4\r\nl: 3\r\n\r\nfour", "conflicting Content-Length values 4, 3"),
        (b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n",
         "Content-Length 1000000000000000 is larger than the 0 octets of body present"),
    ]:
        with raises(SipParseError, message):
            parse_message(head + extra)


@pytest.mark.parametrize(("data", "kind", "message"), [
    (b"", SipParseError, "empty message"),
    (b"\r\n\r\n", SipParseError, "empty message"),
    (b"INVITE sip:a@b SIP/2.0 \r\n\r\n", SipParseError, "malformed Request-Line 'INVITE sip:a@b SIP/2.0 '"),
    (b"INVITE\tsip:a@b SIP/2.0\r\n\r\n", SipParseError, "malformed Request-Line 'INVITE\\tsip:a@b SIP/2.0'"),
    (b"INV<ITE sip:a@b SIP/2.0\r\n\r\n", SipParseError, "bad method 'INV<ITE'"),
    (b"INVITE sip:a\x7fb SIP/2.0\r\n\r\n", SipParseError, "bad Request-URI 'sip:a\\x7fb'"),
    (b"INVITE nouri SIP/2.0\r\n\r\n", SipParseError, "bad Request-URI 'nouri'"),
    (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", SipParseError, "bad SIP version 'HTTP/1.1'"),
    (b"INVITE sip:a@b SIP/2.1\r\n\r\n", UnsupportedVersion, "SIP version SIP/2.1 is not supported"),
    (b"SIP/3.0 200 OK\r\n\r\n", UnsupportedVersion, "SIP version SIP/3.0 is not supported"),
    (b"SIP/2.0 099 Early\r\n\r\n", SipParseError, "bad status code '099'"),
    (b"SIP/2.0 700 Late\r\n\r\n", SipParseError, "bad status code '700'"),
    (b"SIP/2.0 2000 OK\r\n\r\n", SipParseError, "bad status code '2000'"),
    (b"SIP/2.0\r\n\r\n", SipParseError, "bad status code ''"),
    (b"INVITE sip:a@b SIP/2.0\r\n Via: x\r\n\r\n", SipParseError,
     "continuation line before the first header field: ' Via: x'"),
    (b"INVITE sip:a@b SIP/2.0\r\nFoobar roobar\r\n\r\n", SipParseError, "header line without a colon: 'Foobar roobar'"),
    (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", SipParseError, "bad header field name 'Bad Name'"),
    (b"INVITE sip:a@b SIP/2.0\r\n: x\r\n\r\n", SipParseError, "bad header field name ''"),
])
def test_start_line_and_header_line_errors(data: bytes, kind: type[SipParseError], message: str) -> None:
    with raises(kind, message):
        parse_message(data)


def test_non_utf8_octets_survive_the_round_trip() -> None:
    data = (b"MESSAGE sip:a@b SIP/2.0\r\nSubject: caf\xe9 \xff\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1\r\n\r\n\x00")
    message = parse_message(data)
    assert message.headers.get("Subject") == "caf\udce9 \udcff"
    assert message.serialize() == data


def test_limits() -> None:
    limits = Limits(max_size=200, max_headers=3, max_uri=20)
    assert Limits() == Limits(65535, 128, 4096)
    with raises(MessageTooLarge, "message of 201 octets (the limit is 200)"):
        parse_message(b"x" * 201, limits)
    with raises(MessageTooLarge, "more than 3 header fields"):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n", limits)
    parse_message(b"OPTIONS sip:a@b SIP/2.0\r\na: 1\r\nb: 2\r\n c: 3\r\nc: 3\r\n\r\n", limits)
    with raises(RequestUriTooLong, "Request-URI of 21 characters (the limit is 20)"):
        parse_message(b"OPTIONS sip:" + b"a" * 15 + b"@b SIP/2.0\r\n\r\n", limits)
    error = MessageTooLarge("x")
    assert (error.status, error.reason) == (513, "Message Too Large")


# -- serialising ------------------------------------------------------------------------------------------------
def test_serialize_sets_content_length_from_the_body() -> None:
    built = Request("MESSAGE", "sip:bob@example.com", Headers([
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("Content-Length", "99"), ("To", "<sip:bob@example.com>"),
        ("l", "7")]), b"hello")
    assert built.serialize() == (b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                                 b"Content-Length: 5\r\nTo: <sip:bob@example.com>\r\n\r\nhello")
    response = Response(180, "Ringing", Headers([("To", "<sip:a@b>;tag=1")]))
    assert response.serialize() == b"SIP/2.0 180 Ringing\r\nTo: <sip:a@b>;tag=1\r\nContent-Length: 0\r\n\r\n"
    assert built.headers.get("Content-Length") == "99"          # serialize does not change the message


def test_serialize_refuses_what_cannot_be_sent() -> None:
    with raises(InvalidMessage, "bad method 'IN VITE'"):
        Request("IN VITE", "sip:a@b", Headers()).serialize()
    with raises(InvalidMessage, "bad Request-URI 'sip:a b'"):
        Request("INVITE", "sip:a b", Headers()).serialize()
    with raises(InvalidMessage, "bad status code 99"):
        Response(99, "x", Headers()).serialize()
    with raises(InvalidMessage, "CR or LF in the reason phrase 'OK\\r\\nVia: x'"):
        Response(200, "OK\r\nVia: x", Headers()).serialize()
    with raises(InvalidMessage, "cannot encode the message: 'utf-8' codec can't encode character '\\ud800' in "
                                "position 25: surrogates not allowed"):
        Response(200, "OK", Headers([("Subject", "\ud800")])).serialize()


def test_serialize_parse_round_trip() -> None:
    message = request()
    again = parse_message(message.serialize())
    assert again == message
    for path in sorted((FIXTURES / "rfc4475").glob("*.dat")):
        try:
            original = parse_message(path.read_bytes())
        except SipParseError:
            continue
        copy = parse_message(original.serialize())
        assert type(copy) is type(original) and copy.body == original.body, path.name
        for each in (original, copy):
            each.headers.remove("Content-Length")
        assert copy.headers == original.headers, path.name


# -- checks -----------------------------------------------------------------------------------------------------
def test_check_request_accepts_a_plain_request() -> None:
    check_request(request())
    check_request(request(), methods=("INVITE",), accept=("application/sdp",), supported=("timer",))


def test_check_request_methods() -> None:
    bye = request(INVITE.replace(b"INVITE", b"BYE"))
    with raises(MethodNotAllowed, "method BYE is not allowed here") as caught:
        check_request(bye, methods=("INVITE", "ACK"))
    assert caught.value.headers == (("Allow", "INVITE, ACK"),)
    novel = request(INVITE.replace(b"INVITE", b"NOVEL"))
    with raises(MethodNotImplemented, "method 'NOVEL' is not implemented"):
        check_request(novel, methods=("INVITE",))
    check_request(novel)                                        # no methods given: any method


def test_check_request_require() -> None:
    data = INVITE.replace(b"Max-Forwards: 70", b"Require: 100rel, timer\r\nProxy-Require: sec-agree")
    with raises(SipParseError, "unsupported option tags: 100rel") as caught:
        check_request(request(data), supported=("timer",))
    assert (caught.value.status, caught.value.headers) == (420, (("Unsupported", "100rel"),))
    check_request(request(data), supported=("timer", "100rel"))
    ack = data.replace(b"INVITE", b"ACK")
    check_request(request(ack))                                 # ACK and CANCEL are not refused for Require


def test_check_request_bodies_and_accept() -> None:
    plain = INVITE.replace(b"application/sdp", b"text/plain")
    with raises(UnsupportedMediaType, "unsupported body type 'text/plain'") as caught:
        check_request(request(plain), accept=("application/sdp",))
    assert caught.value.headers == (("Accept", "application/sdp"),)
    for value, ok in [(b"application/sdp", True), (b"application/*", True), (b"*/*", True),
                      (b"text/html, application/SDP;level=1", True), (b"text/html", False), (b"", False)]:
        data = INVITE.replace(b"Max-Forwards: 70", b"Accept: " + value)
        if ok:
            check_request(request(data), accept=("application/sdp",))
        else:
            with pytest.raises(NotAcceptable):
                check_request(request(data), accept=("application/sdp",))
    untyped = INVITE.replace(b"Content-Type: application/sdp\r\n", b"")
    with raises(SipParseError, "a body without a Content-Type header field"):
        check_request(request(untyped))


@pytest.mark.parametrize(("change", "message"), [
    ((b"Max-Forwards: 70", b"Max-Forwards: 256"), "bad Max-Forwards header field '256'"),
    ((b"Max-Forwards: 70", b"Max-Forwards: 7O"), "bad Max-Forwards header field '7O'"),
    ((b"Call-ID: a84b4c76e66710", b"Call-ID: a84b 4c76e66710"),
     "bad Call-ID header field 'a84b 4c76e66710@pc33.atlanta.example.com'"),
    ((b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), "CSeq method BYE does not match the request method INVITE"),
    ((b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: <sip:alice@pc33"),
     "bad Contact header field: missing '>' in '<sip:alice@pc33'"),
    ((b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: *, <sip:a@b>"),
     "bad Contact header field: not a URI: '*'"),
    ((b"Max-Forwards: 70", b"Route: <sip:p1;lr>, sip:p2?x=y"),
     "bad Route header field: a URI with '?' or ',' must be enclosed in '<>': 'sip:p2?x=y'"),
    ((b"INVITE sip:bob@biloxi.example.com", b"INVITE sip:bob@biloxi.example.com:99999"),
     "bad Request-URI: bad port '99999'"),
    ((b"Max-Forwards: 70", b"To: <sip:x@y>"), "header fields given more than once: To"),
    ((b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n", b""), "missing header fields: Via"),
])
def test_check_request_errors(change: tuple[bytes, bytes], message: str) -> None:
    with raises(SipParseError, message):
        check_request(request(INVITE.replace(*change)))


def test_check_request_content_length_of_a_built_request() -> None:
    built = request()
    built.body = b"v=0\r\n"
    with raises(SipParseError, "Content-Length 4 does not match the 5 octets of body"):
        check_request(built)
    built.headers.remove("Content-Length")
    check_request(built)
    check_request(request(), schemes=("sip",))
    with raises(UnsupportedUriScheme, "unsupported Request-URI scheme 'sip'"):
        check_request(request(), schemes=("sips",))
    register = request(INVITE.replace(b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: *"))
    check_request(register)


def test_check_response() -> None:
    response = parse_message(OK)
    assert isinstance(response, Response)
    check_response(response)
    response.headers.remove("From")
    with raises(SipParseError, "missing header fields: From"):
        check_response(response)


# -- building responses -----------------------------------------------------------------------------------------
def test_response_to_copies_the_rfc_3261_8_2_6_fields() -> None:
    invite = request(INVITE.replace(b"Max-Forwards: 70", b"Via: SIP/2.0/UDP proxy;branch=z9hG4bKp, SIP/2.0/TCP p2"
                                                            b"\r\nTimestamp: 54"))
    ringing = response_to(invite, 180, "Ringing", to_tag="a6c85cf")
    assert (ringing.status, ringing.reason, ringing.body) == (180, "Ringing", b"")
    assert ringing.headers.items() == [
        ("Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds"),
        ("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp"), ("Via", "SIP/2.0/TCP p2"),
        ("From", "Alice <sip:alice@atlanta.example.com>;tag=1928301774"),
        ("To", '"Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf'),
        ("Call-ID", "a84b4c76e66710@pc33.atlanta.example.com"), ("CSeq", "314159 INVITE")]
    trying = response_to(invite, 100, "Trying")
    assert trying.headers.get("To") == "Bob <sip:bob@biloxi.example.com>" and trying.headers.get("Timestamp") == "54"
    tagged = request(INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:bob@b>;tag=x"))
    assert response_to(tagged, 200, "OK", to_tag="y").to.tag == "x"
    again = parse_message(ringing.serialize())
    again.headers.remove("Content-Length")
    assert again == ringing


def test_response_for_error_adds_the_error_fields() -> None:
    error = MethodNotAllowed("no", ["INVITE", "BYE"])
    response = response_for_error(request(), error, to_tag="t")
    assert (response.status, response.reason, response.headers.get_all("Allow")) == (
        405, "Method Not Allowed", ["INVITE", "BYE"])
    assert response.to.tag == "t"
    bare = Request("OPTIONS", "sip:a@b", Headers([("Via", "SIP/2.0/UDP h")]))
    assert response_to(bare, 400, "Bad Request").headers.items() == [("Via", "SIP/2.0/UDP h")]


# -- TCP framing ------------------------------------------------------------------------------------------------
STREAM_MESSAGES = [INVITE, OK, (FIXTURES / "rfc4475" / "wsinv.dat").read_bytes(),
                   (FIXTURES / "rfc4475" / "mpart01.dat").read_bytes()]


def test_stream_parser_splits_at_every_boundary() -> None:
    """Two messages with keep-alives around them, split in two at every offset and fed byte by byte: the
    same messages as parse_message gives, whatever the chunking."""
    for first in STREAM_MESSAGES:
        for second in STREAM_MESSAGES:
            stream = b"\r\n\r\n" + first + b"\r\n\r\n\r\n" + second + b"\r\n"
            expected = [parse_message(first), parse_message(second)]
            for cut in range(len(stream) + 1):
                parser = StreamParser()
                got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
                assert got == expected, cut
                assert parser.buffered == 0
            parser = StreamParser()
            got = [m for i in range(len(stream)) for m in parser.feed(stream[i:i + 1])]
            assert got == expected


def test_stream_parser_with_random_chunks_and_many_messages() -> None:
    rng = random.Random(4475)
    messages = STREAM_MESSAGES * 5
    stream = b"".join(messages)
    expected = [parse_message(m) for m in messages]
    for _ in range(50):
        parser = StreamParser()
        got: list[Message] = []
        i = 0
        while i < len(stream):
            size = rng.choice([1, 2, 3, 7, 64, 500, 5000])
            got += parser.feed(stream[i:i + size])
            i += size
        assert got == expected
    assert StreamParser().feed(stream) == expected


def test_stream_parser_waits_for_the_body_and_bare_lf() -> None:
    parser = StreamParser()
    head = b"MESSAGE sip:a@b SIP/2.0\nContent-Type: text/plain\nContent-Length: 10\n\n"
    assert parser.feed(head + b"12345") == [] and parser.buffered == len(head) + 5
    [message] = parser.feed(b"67890MESSAGE")
    assert message.body == b"1234567890" and parser.buffered == len(b"MESSAGE")


def test_stream_parser_needs_content_length() -> None:
    parser = StreamParser()
    with raises(SipParseError, "no Content-Length on a stream transport"):
        parser.feed(b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n")
    with raises(SipParseError, "no Content-Length on a stream transport"):      # the error is final
        parser.feed(INVITE)


def test_stream_parser_bounds_its_buffer() -> None:
    limits = Limits(max_size=300)
    parser = StreamParser(limits)
    assert parser.feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 40) == []
    with raises(MessageTooLarge, "header section longer than 300 octets"):
        parser.feed(b"X: y\r\n" * 10)
    assert parser.buffered == 0
    with raises(MessageTooLarge, "message of 1049 octets (the limit is 300)"):
        StreamParser(limits).feed(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n")
    with raises(MessageTooLarge, "header section of 321 octets (the limit is 300)"):
        StreamParser(limits).feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 49 + b"\r\n")
    with raises(SipParseError, "bad Content-Length 'x'"):
        StreamParser().feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n")
    with raises(SipParseError, "conflicting Content-Length values 13, 5"):
        StreamParser().feed((FIXTURES / "rfc4475" / "mcl01.dat").read_bytes())


def test_stream_parser_keeps_the_messages_before_an_error() -> None:
    """A good message and a bad one in one read: the good one comes out, as it does when the bad one comes in
    a later read, and the error is raised by the next feed (found by fuzz/sip_stream.py)."""
    bad = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n"
    parser = StreamParser()
    assert parser.feed(INVITE + bad) == [parse_message(INVITE)]
    assert isinstance(parser.error, SipParseError) and str(parser.error) == "bad Content-Length 'x'"
    with raises(SipParseError, "bad Content-Length 'x'"):
        parser.feed(b"\r\n")
    split = StreamParser()
    assert split.feed(INVITE) == [parse_message(INVITE)] and split.error is None
    with raises(SipParseError, "bad Content-Length 'x'"):
        split.feed(bad)


def test_stream_parser_keepalives_only() -> None:
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n") == [] and parser.feed(b"\r\n") == [] and parser.buffered == 0
    assert parser.feed(b"\r") == [] and parser.feed(b"\n" + OK) == [parse_message(OK)]


# -- fuzzing ----------------------------------------------------------------------------------------------------
def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(buf) + 1)
        kind = rng.randrange(9)
        if kind == 0 and buf:
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        elif kind == 1:
            buf[at:at] = bytes([rng.choice(b' \t\r\n:;,"<>[]%@?=\\/0')])
        elif kind == 2:
            del buf[at:at + rng.randint(1, 20)]
        elif kind == 3:
            end = min(len(buf), at + rng.randint(1, 40))
            buf[at:at] = buf[at:end]
        elif kind == 4:
            del buf[at:]
        elif kind == 5:
            buf[at:at] = rng.choice([b"\r\n", b"\r\n ", b"\r\n\r\n", b"\n"])
        elif kind == 6:
            buf[at:at] = str(rng.choice([0, 255, 256, 65536, 2**32, 10**30])).encode()
        elif kind == 7:
            buf[at:at] = rng.choice([b"%", b"%4", b"%00", b"[", b"]", b":::", b";;", b"<sip:", b"\xff\xfe", b"\x00"])
        else:
            buf[at:at] = rng.choice([b"\r\nContent-Length: 3", b"\r\nl: 99999", b"\r\nVia: SIP/2.0/UDP [::1]:5",
                                     b"\r\nContact: *", b"\r\nTo: \"a\\", b"\r\nRequire: x"])
    return bytes(buf)


def exercise(message: Message) -> None:
    """Everything a receiver might do with a parsed message; only SipParseError may come out of it."""
    profiles: list[dict[str, Any]] = [{}, {"methods": ("INVITE", "BYE"), "accept": ("application/sdp",)}]
    for profile in profiles:
        try:
            if isinstance(message, Request):
                check_request(message, **profile)
            else:
                check_response(message)
        except SipParseError:
            pass
    assert parse_message(message.serialize()).body == message.body
    for name in ("call_id", "cseq", "vias", "top_via", "branch", "from_", "to"):
        try:
            value = getattr(message, name)
        except SipParseError:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (NameAddr, Via, CSeq)):
                assert type(item).parse(str(item)) == item       # what parses prints as it parses
    for value in message.headers.get_all("Contact") + message.headers.get_all("Route"):
        try:
            address = NameAddr.parse(value)
        except SipParseError:
            continue
        assert NameAddr.parse(str(address)) == address
        assert SipUri.parse(str(address.uri)) == address.uri
    if isinstance(message, Request):
        try:
            uri = SipUri.parse(message.uri)
        except SipParseError:
            pass
        else:
            assert SipUri.parse(str(uri)) == uri
        try:
            response = response_to(message, 400, "Bad Request", to_tag="z")
        except SipParseError:
            return
        parse_message(response.serialize())


def test_fuzz_mutated_fixtures_raise_only_sip_parse_error() -> None:
    rng = random.Random(5118)
    seeds = [path.read_bytes() for path in sorted(FIXTURES.glob("rfc*/*.dat"))] + [INVITE, OK]
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(4000):
        data = mutate(rng.choice(seeds), rng)
        try:
            message = parse_message(data)
        except SipParseError:
            outcomes["refused"] += 1
        else:
            outcomes["parsed"] += 1
            exercise(message)
        parser = StreamParser(Limits(max_size=4096))
        try:
            for i in range(0, len(data), 97):
                for each in parser.feed(data[i:i + 97]):
                    exercise(each)
        except SipParseError:
            pass
    assert min(outcomes.values()) > 400, outcomes            # the mutations reach both sides
