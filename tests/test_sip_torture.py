"""The SIP torture tests of RFC 4475 and RFC 5118 (IPv6) as an expected-outcome table.

Every message of both RFCs' archives (``tests/fixtures/sip/``, see its README) goes through
:func:`parse_message` and then :func:`check_request` (or :func:`check_response`) twice:

- with the defaults: what the message layer accepts. ``VALID`` rows then check a few parsed values (the RFC's
  point about the message); other rows give the status and the exact error, so a message refused for the
  wrong reason fails too.
- with ``UA``, the profile of our user agent (its methods, SDP bodies only, no extensions): the response a
  UA sends. Rows say so where it differs (405 for REGISTER and MESSAGE, which we do not serve; 501 for
  methods SIP does not define; 415; 406).

Where the RFC allows more than one reaction, ``note`` says which one we chose and why. Responses are not
answered: a ``status`` on a response row means "dropped".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pbx.sip.errors import BadExtension, SipParseError
from pbx.sip.headers import CSeq, NameAddr, SipUri
from pbx.sip.message import (
    Message,
    Request,
    Response,
    check_request,
    check_response,
    parse_message,
    response_for_error,
    response_to,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sip"
VALID = None
SAME = "same"
UA: dict[str, Any] = {
    "methods": ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "REFER", "NOTIFY", "UPDATE"),
    "accept": ("application/sdp",),
    "supported": (),
}


@dataclass(frozen=True)
class Case:
    name: str
    section: str
    status: int | None                       # None: valid; else the status of the SipParseError
    error: str = ""                          # its exact message
    check: Callable[[Any], None] | None = None   # values of a valid message (checked whenever it parses)
    ua: int | str | None = SAME              # the status under the UA profile, when it differs
    ua_error: str = ""
    note: str = ""


def contacts(message: Message) -> list[NameAddr]:
    return [NameAddr.parse(value) for value in message.headers.get_all("Contact")]


def ruri(message: Request) -> SipUri:
    return SipUri.parse(message.uri)


# -- RFC 4475 §3.1.1: valid messages ---------------------------------------------------------------------------
def wsinv(m: Request) -> None:
    assert (m.method, m.uri) == ("INVITE", "sip:vivekg@chair-dnrc.example.com;unknownparam")
    assert ruri(m).params == {"unknownparam": None}
    assert (m.to.uri.host, m.to.tag) == ("chair-dnrc.example.com", "1918181833n")
    assert (m.from_.display, m.from_.tag) == ('J Rosenberg \\"', "98asjd8")
    assert m.headers.get("max-forwards") == "0068" and m.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    [contact] = contacts(m)
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    route = NameAddr.parse(m.headers.get("Route") or "")
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")


def intmeth(m: Request) -> None:
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = ruri(m)
    assert (uri.user, uri.password, uri.host) == (
        "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*", "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)",
        "example.com")
    assert m.vias[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_.params == {"fromparam''~+*_!.-%": '"работающий"', "tag": "_token~1'+`*%!-."}
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.cseq == CSeq(139122385, m.method)
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def esc01(m: Request) -> None:
    uri = ruri(m)
    assert (uri.user, uri.host) == ("sips:user@example.com", "example.net")
    assert m.to.uri.user == "user" and m.from_.uri.user == "I have spaces"
    [contact] = contacts(m)
    assert (contact.uri.user, contact.uri.params) == ("caller", {"lr": None, "name": "value%41"})
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"             # "i:"
    assert m.headers.get("Content-Type") == "application/sdp"           # "C:"
    assert len(m.body) == 150


def escnull(m: Request) -> None:
    assert m.to.uri.user == m.from_.uri.user == "null-\x00-null"
    assert [c.uri.user for c in contacts(m)] == ["\x00", "\x00\x00"]
    assert m.headers.get("Content-Length") == "0"                        # "L:0"


def esc02(m: Request) -> None:
    assert m.method == m.cseq.method == "RE%47IST%45R"
    assert m.to.display == m.from_.display == "%Z%45"
    assert [c.uri.user for c in contacts(m)] == ["alias1", "alias3"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.vias[0].branch == "z9hG4bK209%fzsnel234"


def lwsdisp(m: Request) -> None:
    assert (m.from_.display, m.from_.uri.user, m.from_.tag) == ("caller", "caller", "323")


def longreq(m: Request) -> None:
    vias = m.vias
    assert len(vias) == 34 and vias[0].host == "sip33.example.com" and vias[32].host == "sip1.example.com"
    assert vias[33].branch == "very" + "long" * 50 + "branchvalue" and vias[33].received == "192.0.2.5"
    assert m.to.display == "I have a user name of " + "extreme" * 10 + " proportion"
    assert m.to.uri.port == 6000
    assert m.to.uri.params == {
        "unknownparam1": "very" + "long" * 20 + "value",
        "longparam" + "name" * 25: "shortvalue",
        ("very" + "long" * 25 + "ParameterNameWithNoValue").lower(): None,
    }
    assert m.from_.uri.user == "amazinglylongcallername" * 5
    assert m.from_.tag == "12" + "982" * 50 + "424"
    assert m.from_.params["unknownheaderparam" + "name" * 20] == "unknowheaderparam" + "value" * 15
    assert m.call_id == "longreq.one" + "really" * 20 + "longcallid"
    assert m.headers.get("unknown-" + "long" * 20 + "-name") == (
        "unknown-" + "long" * 20 + "-value; unknown-" + "long" * 20 + "-parameter-name = unknown-" + "long" * 20
        + "-parameter-value")
    assert len(m.body) == 150


def dblreq(m: Request) -> None:
    assert (m.method, m.call_id, m.body) == ("REGISTER", "dblreq.0ha0isndaksdj99sdfafnl3lk233412", b"")
    assert m.headers.get("To") == "sip:j.user@example.com"


def semiuri(m: Request) -> None:
    uri = ruri(m)
    assert (uri.user, uri.host, uri.params) == ("user;par=u@example.net", "example.com", {})
    assert m.headers.get_all("Accept") == ["application/sdp", "application/pkcs7-mime", "multipart/mixed",
                                           "multipart/signed", "message/sip", "message/sipfrag"]


def transports(m: Request) -> None:
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def mpart01(m: Request) -> None:
    assert m.method == "MESSAGE" and len(m.body) == 553 and b"\x00" in m.body
    assert m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    via = m.top_via
    assert (via.host, via.port, via.rport) == ("127.0.0.1", 5070, True)
    assert m.headers.get("Content-Type") == "multipart/mixed;boundary=7a9cbec02ceef655"


def unreason(m: Response) -> None:
    assert (m.status, m.reason) == (200, "= 2**3 * 5**2 но сто девяносто девять - простое")
    assert len(m.body) == 154


def noreason(m: Response) -> None:
    assert (m.status, m.reason) == (100, "")


# -- RFC 4475 §3.1.2-§3.4: the rest ----------------------------------------------------------------------------
def baddate(m: Request) -> None:
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def bcast(m: Response) -> None:
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


def invut(m: Request) -> None:
    assert m.headers.get("Content-Type") == "application/unknownformat" and len(m.body) == 40


def regaut01(m: Request) -> None:
    assert m.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def zeromf(m: Request) -> None:
    assert m.headers.get("Max-Forwards") == "0"


def cparam01(m: Request) -> None:
    [contact] = contacts(m)
    assert (contact.uri.user, contact.uri.params, contact.params) == ("+19725552222", {}, {"unknownparam": None})


def cparam02(m: Request) -> None:
    [contact] = contacts(m)
    assert (contact.uri.params, contact.params) == ({"unknownparam": None}, {})


def regescrt(m: Request) -> None:
    [contact] = contacts(m)
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def sdp01(m: Request) -> None:
    assert m.headers.get_all("Accept") == ["text/nobodyKnowsThis"]


def inv2543(m: Request) -> None:
    assert m.branch is None and m.from_.tag is None
    assert "Max-Forwards" not in m.headers and "Content-Length" not in m.headers
    assert m.body.startswith(b"v=0\r\n") and m.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    assert m.to.params == {"user": "phone"} and m.to.uri.params == {}      # addr-spec: header params
    assert m.from_.uri.params == {"user": "phone"}


MR = "must be refused; "
RFC4475 = [
    # §3.1.1 valid messages
    Case("wsinv", "3.1.1.1", VALID, check=wsinv),
    Case("intmeth", "3.1.1.2", VALID, check=intmeth, ua=501,
         ua_error="method \"!interesting-Method0123456789_*+`.%indeed'~\" is not implemented",
         note="an endpoint answers an unknown method with 501 and Allow"),
    Case("esc01", "3.1.1.3", VALID, check=esc01),
    Case("escnull", "3.1.1.4", VALID, check=escnull, ua=405, ua_error="method REGISTER is not allowed here",
         note="a registrar would register two contacts; our UA is no registrar (405, as §3.3.7 allows)"),
    Case("esc02", "3.1.1.5", VALID, check=esc02, ua=501,
         ua_error="method 'RE%47IST%45R' is not implemented", note="RE%47IST%45R is not REGISTER: 501"),
    Case("lwsdisp", "3.1.1.6", VALID, check=lwsdisp),
    Case("longreq", "3.1.1.7", VALID, check=longreq),
    Case("dblreq", "3.1.1.8", VALID, check=dblreq, ua=405, ua_error="method REGISTER is not allowed here",
         note="the INVITE after Content-Length is discarded (RFC 3261 §18.3)"),
    Case("semiuri", "3.1.1.9", VALID, check=semiuri),
    Case("transports", "3.1.1.10", VALID, check=transports),
    Case("mpart01", "3.1.1.11", VALID, check=mpart01, ua=405, ua_error="method MESSAGE is not allowed here"),
    Case("unreason", "3.1.1.12", VALID, check=unreason, ua=None),
    Case("noreason", "3.1.1.13", VALID, check=noreason, ua=None),
    # §3.1.2 invalid messages
    Case("badinv01", "3.1.2.1", 400, "bad Via header field: empty parameter in ';;'"),
    Case("clerr", "3.1.2.2", 400, "Content-Length 9999 is larger than the 154 octets of body present",
         note="on a stream the parser waits for the octets (test_sip_message)"),
    Case("ncl", "3.1.2.3", 400, "bad Content-Length '-999'"),
    Case("scalar02", "3.1.2.4", 400,
         "bad CSeq header field: CSeq number '36893488147419103232' is larger than 2**32-1",
         note="refused for the CSeq, as the RFC says; Max-Forwards 300 would be 400 too"),
    Case("scalarlg", "3.1.2.5", 400,
         "bad CSeq header field: CSeq number '9292394834772304023312' is larger than 2**32-1", ua=None,
         note="a response: dropped"),
    Case("quotbal", "3.1.2.6", 400,
         "bad To header field: unterminated quoted string in '\"Mr. J. User <sip:j.user@example.com>'",
         note=MR + "we infer no closing quote"),
    Case("ltgtruri", "3.1.2.7", 400, "bad Request-URI '<sip:user@example.com>'", note=MR + "not liberal"),
    Case("lwsruri", "3.1.2.8", 400, "malformed Request-Line 'INVITE sip:user@example.com; lr SIP/2.0'"),
    Case("lwsstart", "3.1.2.9", 400, "malformed Request-Line 'INVITE  sip:user@example.com  SIP/2.0'",
         note="rejecting is acceptable; we do not skip the extra SP"),
    Case("trws", "3.1.2.10", 400,
         "malformed Request-Line 'OPTIONS sip:remote-target@example.com SIP/2.0  '",
         note="rejecting is acceptable; we do not skip the trailing SP"),
    Case("escruri", "3.1.2.11", 400,
         "headers in the Request-URI 'sip:user@example.com?Route=%3Csip:example.com%3E'",
         note="400 is acceptable; RFC 3261 §19.1.1 allows no headers in a Request-URI"),
    Case("baddate", "3.1.2.12", VALID, check=baddate,
         note="accepted: the RFC says not to reject unless the Date mattered, and no layer of ours uses it"),
    Case("regbadct", "3.1.2.13", 400,
         "bad Contact header field: a URI with '?' or ',' must be enclosed in '<>': "
         "'sip:user@example.com?Route=%3Csip:sip.example.com%3E'",
         note="400 is reasonable; we infer no brackets"),
    Case("badaspec", "3.1.2.14", 400, "bad To header field: white space in URI ' sip:t.watson@example.org '",
         note="400 is reasonable; we ignore no spaces"),
    Case("baddn", "3.1.2.15", 400, "bad To header field: bad display name 'Watson, Thomas'",
         note="the archived file has no empty line after its headers: read as headers only, refused for "
              "the display names (From's too)"),
    Case("badvers", "3.1.2.16", 505, "SIP version SIP/7.0 is not supported"),
    Case("mismatch01", "3.1.2.17", 400, "CSeq method INVITE does not match the request method OPTIONS"),
    Case("mismatch02", "3.1.2.18", 400, "CSeq method INVITE does not match the request method NEWMETHOD",
         ua=501, ua_error="method 'NEWMETHOD' is not implemented",
         note="the RFC prefers 501, allows 400: a UA that knows its methods says 501, the bare check 400"),
    Case("bigcode", "3.1.2.19", 400, "bad status code '4294967301'", ua=None, note="a response: dropped"),
    # §3.2 transaction layer
    Case("badbranch", "3.2.1", 400, "the top Via's branch is the magic cookie z9hG4bK alone",
         note="the RFC allows 400 or an RFC 2543 fallback; a cookie-only branch would match every such "
              "request to one transaction, so 400"),
    # §3.3 application layer
    Case("insuf", "3.3.1", 400, "missing header fields: Call-ID, From, To"),
    Case("unkscm", "3.3.2", 416, "unsupported Request-URI scheme 'nobodyKnowsThisScheme'"),
    Case("novelsc", "3.3.3", 416, "unsupported Request-URI scheme 'soap.beep'",
         note="416 (never meaningful here) rather than 404"),
    Case("unksm2", "3.3.4", 400, "bad To header field: unsupported URI scheme 'isbn'",
         note="the registrar's 400 of the RFC: our dialogs need SIP URIs in From and To; a proxy would forward"),
    Case("bext01", "3.3.5", 420, "unsupported option tags: nothingSupportsThis, nothingSupportsThisEither",
         note="with Unsupported listing Require's tags; a UAS ignores Proxy-Require"),
    Case("invut", "3.3.6", VALID, check=invut, ua=415, ua_error="unsupported body type 'application/unknownformat'"),
    Case("regaut01", "3.3.7", VALID, check=regaut01, ua=405, ua_error="method REGISTER is not allowed here",
         note="an endpoint that is no registrar: 405, as the RFC says"),
    Case("multi01", "3.3.8", 400, "header fields given more than once: Call-ID, CSeq, From, Max-Forwards, To"),
    Case("mcl01", "3.3.9", 400, "conflicting Content-Length values 13, 5"),
    Case("bcast", "3.3.10", VALID, check=bcast, ua=None,
         note="well formed; a UAC's transaction layer drops it (no transaction of ours has that Via)"),
    Case("zeromf", "3.3.11", VALID, check=zeromf, note="an endpoint processes Max-Forwards 0 normally"),
    Case("cparam01", "3.3.12", VALID, check=cparam01, ua=405, ua_error="method REGISTER is not allowed here"),
    Case("cparam02", "3.3.13", VALID, check=cparam02, ua=405, ua_error="method REGISTER is not allowed here"),
    Case("regescrt", "3.3.14", VALID, check=regescrt, ua=405, ua_error="method REGISTER is not allowed here"),
    Case("sdp01", "3.3.15", VALID, check=sdp01, ua=406,
         ua_error="none of application/sdp is acceptable to the caller (Accept: text/nobodyknowsthis)",
         note="406 rather than 400 (both allowed): the request is well formed"),
    # §3.4 backward compatibility
    Case("inv2543", "3.4.1", VALID, check=inv2543,
         note="no branch, no From tag, no Content-Length, no Max-Forwards: all accepted"),
    # in the archive, not described in §3
    Case("test", "-", 400, "malformed Request-Line 'INVITE sip:alan@jasomi.com'",
         note="in the archive only: a Request-Line without SIP-Version"),
]


# -- RFC 5118 ---------------------------------------------------------------------------------------------------
def ipv6_good(m: Request) -> None:
    assert (ruri(m).host, ruri(m).port) == ("2001:db8::10", None)
    assert m.top_via.host == "2001:db8::9:1" and contacts(m)[0].uri.host == "2001:db8::1"
    assert str(ruri(m)) == "sip:[2001:db8::10]"


def port_ambiguous(m: Request) -> None:
    assert (ruri(m).host, ruri(m).port) == ("2001:db8::10:5070", None)


def port_unambiguous(m: Request) -> None:
    assert (ruri(m).host, ruri(m).port, ruri(m).host_port) == ("2001:db8::10", 5070, "[2001:db8::10]:5070")


def via_with_delim(m: Request) -> None:
    via = m.top_via
    assert (via.host, via.received, via.params["received"]) == ("2001:db8::9:1", "2001:db8::9:255",
                                                                "[2001:db8::9:255]")


def via_no_delim(m: Request) -> None:
    via = m.top_via
    assert (via.received, via.branch) == ("2001:db8::9:255", "z9hG4bKas3")


def ipv6_in_sdp(m: Request) -> None:
    assert b"c=IN IP6 2001:db8::20\r\n" in m.body and contacts(m)[0].uri.host == "2001:db8::20"


def mult_ip_in_header(m: Request) -> None:
    assert [(v.transport, v.host, v.port, v.received) for v in m.vias] == [
        ("UDP", "2001:db8::9:1", 6050, None),
        ("UDP", "192.0.2.1", None, None),
        ("TCP", "2001:db8::9:255", None, "192.0.2.200"),
    ]


def mult_ip_in_sdp(m: Request) -> None:
    assert b"c=IN IP4 192.0.2.1\r\n" in m.body and b"c=IN IP6 2001:db8::1\r\n" in m.body


def ipv4_mapped(m: Request) -> None:
    assert [(v.host, v.port) for v in m.vias] == [("::ffff:192.0.2.10", 19823), ("::ffff:192.0.2.2", None)]
    assert contacts(m)[0].uri.host == "::ffff:192.0.2.2"


def three_colons(m: Request) -> None:
    assert ruri(m).host == m.to.uri.host == "2001:db8::192.0.2.1"
    assert (ruri(m).user, str(ruri(m))) == ("user", "sip:user@[2001:db8::192.0.2.1]")


def two_colons(m: Request) -> None:
    assert ruri(m).host == m.to.uri.host == "2001:db8::192.0.2.1"


REGISTER_405 = {"ua": 405, "ua_error": "method REGISTER is not allowed here"}
RFC5118 = [
    Case("ipv6-good", "4.1", VALID, check=ipv6_good, **REGISTER_405),
    Case("ipv6-bad", "4.2", 400, "bad Request-URI: an IPv6 address must be in brackets: 'sip:2001:db8::10'"),
    Case("port-ambiguous", "4.3", VALID, check=port_ambiguous, **REGISTER_405,
         note="[2001:db8::10:5070] is one address, no port"),
    Case("port-unambiguous", "4.4", VALID, check=port_unambiguous, **REGISTER_405),
    Case("via-received-param-with-delim", "4.5", VALID, check=via_with_delim),
    Case("via-received-param-no-delim", "4.5", VALID, check=via_no_delim),
    Case("ipv6-in-sdp", "4.6", VALID, check=ipv6_in_sdp),
    Case("mult-ip-in-header", "4.7", VALID, check=mult_ip_in_header),
    Case("mult-ip-in-sdp", "4.8", VALID, check=mult_ip_in_sdp),
    Case("ipv4-mapped-ipv6", "4.9", VALID, check=ipv4_mapped),
    Case("ipv6-bug-abnf-3-colons", "4.10", VALID, check=three_colons,
         note="tolerated (robustness principle) and read as the two-colon address it means"),
    Case("ipv6-correct-abnf-2-colons", "4.10", VALID, check=two_colons),
]


def wire(archived: bytes) -> bytes:
    """An RFC 5118 archive file as the message would travel: CRLF line ends, the header section closed by
    an empty line, Content-Length counted from the body; nothing else changed."""
    head, _, body = archived.partition(b"\n\n")
    lines = [line for line in head.split(b"\n") if line]
    body_lines = body.split(b"\n")
    if body_lines and body_lines[-1] == b"":
        body_lines.pop()
    wire_body = b"".join(line + b"\r\n" for line in body_lines)
    out = []
    for line in lines:
        if line.lower().startswith(b"content-length:"):
            line = b"Content-Length: %d" % len(wire_body)
        out.append(line + b"\r\n")
    return b"".join(out) + b"\r\n" + wire_body


def load(directory: str, name: str) -> bytes:
    data = (FIXTURES / directory / f"{name}.dat").read_bytes()
    return wire(data) if directory == "rfc5118" else data


def judge(data: bytes, profile: dict[str, Any]) -> Message | SipParseError:
    """parse_message and the checks; the message, or the SipParseError (nothing else may come out)."""
    try:
        message = parse_message(data)
        if isinstance(message, Request):
            check_request(message, **profile)
        else:
            check_response(message)
    except SipParseError as exc:
        return exc
    return message


def parsed(data: bytes) -> Message | None:
    try:
        return parse_message(data)
    except SipParseError:
        return None


TABLE = [("rfc4475", case) for case in RFC4475] + [("rfc5118", case) for case in RFC5118]


@pytest.mark.parametrize(("directory", "case"), TABLE, ids=[f"{d}-{c.name}" for d, c in TABLE])
def test_expected_outcome(directory: str, case: Case) -> None:
    data = load(directory, case.name)
    outcome = judge(data, {})
    if case.status is None:
        assert not isinstance(outcome, SipParseError), f"refused: {outcome}"
    else:
        assert isinstance(outcome, SipParseError), "accepted"
        assert (outcome.status, str(outcome)) == (case.status, case.error)
    message = parsed(data)
    if case.check is not None:
        assert message is not None
        case.check(message)
    if not isinstance(message, Request):
        assert case.ua in (SAME, None), "responses are not answered"
        return
    ua_outcome = judge(data, UA)
    if case.ua == SAME:
        expected = (case.status, case.error) if case.status is not None else None
    else:
        expected = (case.ua, case.ua_error) if case.ua is not None else None
    if expected is None:
        assert not isinstance(ua_outcome, SipParseError), f"refused: {ua_outcome}"
    else:
        assert isinstance(ua_outcome, SipParseError), "accepted"
        assert (ua_outcome.status, str(ua_outcome)) == expected


@pytest.mark.parametrize("directory", ["rfc4475", "rfc5118"])
def test_every_archived_message_has_a_row_and_is_unchanged(directory: str) -> None:
    rows = {case.name for d, case in TABLE if d == directory}
    files = {path.stem for path in (FIXTURES / directory).glob("*.dat")}
    assert rows == files
    sums = (FIXTURES / directory / "SHA256SUMS").read_text().split("\n")
    expected = dict(reversed(line.split("  ")) for line in sums if line)
    actual = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
              for path in (FIXTURES / directory).glob("*.dat")}
    assert actual == expected


def test_the_table_has_the_sizes_of_the_rfcs() -> None:
    sections = [case.section for case in RFC4475 if case.section != "-"]
    assert len(sections) == len(set(sections)) == 49
    assert sum(1 for s in sections if s.startswith("3.1.1.")) == 13
    assert sum(1 for s in sections if s.startswith("3.1.2.")) == 19
    assert sum(1 for s in sections if s.startswith("3.3.")) == 15
    assert [case.name for case in RFC5118 if case.status is not None] == ["ipv6-bad"]


def test_rfc5118_archive_quirks_and_raw_parsing() -> None:
    """The archive's own bytes: LF line ends; two files without the closing empty line; two with a wrong
    Content-Length. With bare-LF tolerance the ten with a right Content-Length parse as archived, to the
    same message as their wire form."""
    raw = {case.name: (FIXTURES / "rfc5118" / f"{case.name}.dat").read_bytes() for case in RFC5118}
    assert all(b"\r" not in data for data in raw.values())
    assert [n for n, data in raw.items() if b"\n\n" not in data] == ["ipv6-bug-abnf-3-colons",
                                                                      "ipv6-correct-abnf-2-colons"]
    for name, data in raw.items():
        if name in ("ipv6-in-sdp", "mult-ip-in-sdp"):
            with pytest.raises(SipParseError, match="is larger than the"):
                parse_message(data)
            continue
        as_archived, as_sent = parse_message(data), parse_message(wire(data))
        for message in (as_archived, as_sent):
            message.headers.remove("Content-Length")      # the body's length differs by its line ends
        assert as_archived.headers == as_sent.headers
        assert as_archived.body.replace(b"\n", b"\r\n") == as_sent.body


def test_baddn_is_refused_for_its_display_names_not_its_framing() -> None:
    data = load("rfc4475", "baddn")
    assert not data.endswith(b"\r\n\r\n")
    closed = judge(data + b"\r\n", {})
    assert isinstance(closed, SipParseError) and str(closed) == "bad To header field: bad display name 'Watson, Thomas'"
    with pytest.raises(SipParseError, match=re.escape("bad display name 'Bell, Alexander'")):
        NameAddr.parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43")


def test_bad_extension_answer_lists_the_unsupported_tags() -> None:
    request = parse_message(load("rfc4475", "bext01"))
    assert isinstance(request, Request)
    with pytest.raises(BadExtension) as caught:
        check_request(request)
    assert caught.value.unsupported == ("nothingSupportsThis", "nothingSupportsThisEither")
    response = response_for_error(request, caught.value, to_tag="x1")
    assert (response.status, response.reason) == (420, "Bad Extension")
    assert response.headers.get_all("Unsupported") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert response.to.tag == "x1" and response.cseq == CSeq(8, "OPTIONS")
    check_response(parse_message(response.serialize()))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", [c for c in RFC4475 if c.status is not None], ids=lambda c: c.name)
def test_every_refused_request_can_be_answered(case: Case) -> None:
    """What check_request refuses, response_to still answers with whatever the request has (a request that
    failed parse_message is answered by the transport from the raw octets)."""
    message = parsed(load("rfc4475", case.name))
    if not isinstance(message, Request):
        return
    outcome = judge(load("rfc4475", case.name), {})
    assert isinstance(outcome, SipParseError)
    response = response_for_error(message, outcome)
    again = parse_message(response.serialize())
    assert isinstance(again, Response) and again.status == case.status
    assert again.headers.get_all("Via") == message.headers.get_all("Via")


def test_valid_requests_get_a_response_that_checks() -> None:
    for directory, case in TABLE:
        message = parsed(load(directory, case.name))
        if case.status is None and isinstance(message, Request):
            response = parse_message(response_to(message, 200, "OK", to_tag="t1").serialize())
            assert isinstance(response, Response)
            check_response(response)
            assert response.call_id == message.call_id and response.to.tag in ("t1", message.to.tag)
