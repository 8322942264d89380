"""pbx.sip.sdp: parsing and building session descriptions (RFC 4566) on published and captured samples, exact
round trips, exact errors, bounds, and a mutation fuzz that accepts only SdpError."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from pbx.sip import sdp
from pbx.sip.errors import InvalidMessage, SipParseError
from pbx.sip.sdp import Connection, MediaDescription, Origin, RtpMap, SdpError, SessionDescription, Timing


def raises(kind: type[BaseException], message: str) -> Any:
    """pytest.raises for exactly ``message``."""
    return pytest.raises(kind, match="^" + re.escape(message) + "$")


def crlf(text: str) -> str:
    """``text`` with CRLF line ends, and an empty ``s=`` as the single space RFC 4566 §5.3 (and RFC 4317 §1)
    has there."""
    return text.strip("\n").replace("\ns=\n", "\ns= \n").replace("\n", "\r\n") + "\r\n"


# RFC 4317 "SDP Offer/Answer Examples", https://www.rfc-editor.org/rfc/rfc4317
RFC4317 = {
    "2.1 offer": """
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 51372 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
""",
    "2.1 answer": """
v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49174 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 49170 RTP/AVP 32
a=rtpmap:32 MPV/90000
""",
    "2.2 answer": """
v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49172 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
m=video 0 RTP/AVP 31
a=rtpmap:31 H261/90000
""",
    "2.4 offer": """
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 97
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
m=audio 49172 RTP/AVP 98
a=rtpmap:98 telephone-event/8000
a=sendonly
""",
    "2.6 offer": """
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=audio 51372 RTP/AVP 97 101
a=rtpmap:97 iLBC/8000
a=rtpmap:101 telephone-event/8000
""",
    "2.8 answer": """
v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49174 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 49172 RTP/AVP 32
c=IN IP4 otherhost.biloxi.example.com
a=rtpmap:32 MPV/90000
""",
    "3.1 answer": """
v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s=
c=IN IP4 placeholder.biloxi.example.com
t=0 0
m=audio 49172 RTP/AVP 97
a=rtpmap:97 iLBC/8000
a=sendonly
""",
    "4.1 second offer": """
v=0
o=bob 2808844564 2808844565 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49170 RTP/AVP 97
a=rtpmap:97 iLBC/8000
m=audio 48282 RTP/AVP 98
c=IN IP4 mediaserver.biloxi.example.com
a=rtpmap:98 telephone-event/8000
a=recvonly
""",
    "5.1 offer": """
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
""",
    "5.2 offer": """
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 0.0.0.0
t=0 0
m=audio 23442 RTP/AVP 97
a=rtpmap:97 iLBC/8000
""",
}

# RFC 4566 §5, the example session description: https://www.rfc-editor.org/rfc/rfc4566#section-5
RFC4566 = """
v=0
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
c=IN IP4 224.2.17.12/127
t=2873397496 2873404696
a=recvonly
m=audio 49170 RTP/AVP 0
m=video 51372 RTP/AVP 99
a=rtpmap:99 h263-1998/90000
"""

# an offer as Asterisk 13's chan_sip sends it (captured)
ASTERISK = """
v=0
o=root 1962650862 1962650862 IN IP4 172.17.0.2
s=Asterisk PBX 13.38.3
c=IN IP4 172.17.0.2
t=0 0
m=audio 14028 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=maxptime:150
a=sendrecv
"""

# a browser's offer (WebRTC, audio and a data channel; ICE and DTLS attributes shortened)
WEBRTC = """
v=0
o=- 1237562358473204055 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS 6e6fd708-1738-406a-bf65-1189b2f13f5c
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:W77c
a=ice-pwd:9VEM3zWAsygAj4umZwbAYA+U
a=ice-options:trickle
a=fingerprint:sha-256 BD:3A:7D:2E:3F:B4:D0:4E:5B:5F:31:BF:61:2D:07:02:98:8E:9E:A5:1E:74:32:18:98:93:1C:25:C4:98:4D:A1
a=setup:actpass
a=mid:0
a=sendrecv
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:3500145611 cname:0Ga3uBjNRGVdFgq0
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=mid:1
a=sctp-port:5000
"""

SAMPLES = {**RFC4317, "rfc4566": RFC4566, "asterisk": ASTERISK, "webrtc": WEBRTC}


# -- round trips and fields ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SAMPLES)
def test_samples_round_trip_exactly(name: str) -> None:
    wire = crlf(SAMPLES[name])
    parsed = sdp.parse(wire)
    assert parsed.serialize() == wire.encode()
    assert sdp.parse(wire.encode()) == parsed
    assert sdp.parse(wire.replace("\r\n", "\n")) == parsed          # LF line ends too
    assert sdp.parse(wire + "\r\n\r\n") == parsed                     # blank lines at the end


def test_rfc4317_offer_fields() -> None:
    offer = sdp.parse(crlf(RFC4317["2.1 offer"]))
    assert offer.version == 0
    assert offer.origin == Origin("alice", 2890844526, 2890844526, "IN", "IP4", "host.atlanta.example.com")
    assert offer.session_name == ""
    assert offer.connection == Connection("IP4", "host.atlanta.example.com")
    assert offer.timing == [Timing(0, 0)]
    audio, video = offer.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == ("audio", 49170, "RTP/AVP", [0, 8, 97])
    assert audio.rtpmap == {0: RtpMap("PCMU", 8000), 8: RtpMap("PCMA", 8000), 97: RtpMap("iLBC", 8000)}
    assert audio.attributes == [("rtpmap", "0 PCMU/8000"), ("rtpmap", "8 PCMA/8000"), ("rtpmap", "97 iLBC/8000")]
    assert (audio.direction(), audio.ptime, audio.rtcp_port, audio.rtcp_mux) == ("sendrecv", None, None, False)
    assert (video.media, video.port, video.formats) == ("video", 51372, [31, 32])
    assert offer.connection_of(video) == offer.connection


def test_media_level_connection_and_direction() -> None:
    answer = sdp.parse(crlf(RFC4317["2.8 answer"]))
    audio, video = answer.media
    assert answer.connection_of(audio) == Connection("IP4", "host.biloxi.example.com")
    assert answer.connection_of(video) == Connection("IP4", "otherhost.biloxi.example.com")
    second = sdp.parse(crlf(RFC4317["4.1 second offer"]))
    assert [second.direction_of(m) for m in second.media] == ["sendrecv", "recvonly"]
    assert second.origin.sess_version == 2808844565
    assert sdp.parse(crlf(RFC4317["3.1 answer"])).media[0].direction() == "sendonly"


def test_no_media_and_hold_address() -> None:
    assert sdp.parse(crlf(RFC4317["5.1 offer"])).media == []
    held = sdp.parse(crlf(RFC4317["5.2 offer"]))
    assert held.connection is not None and held.connection.unspecified and not held.connection.ipv6


def test_rfc4566_example_fields() -> None:
    session = sdp.parse(crlf(RFC4566))
    assert session.session_name == "SDP Seminar"
    assert session.information == "A Seminar on the session description protocol"
    assert session.uri == "http://www.example.com/seminars/sdp.pdf"
    assert session.emails == ["j.doe@example.com (Jane Doe)"]
    assert session.connection == Connection("IP4", "224.2.17.12/127")
    assert session.timing == [Timing(2873397496, 2873404696)]
    assert session.direction == "recvonly" and session.attribute("recvonly") == ""
    audio, video = session.media
    assert session.direction_of(audio) == "recvonly" and audio.direction() == "sendrecv"
    assert video.rtpmap == {99: RtpMap("h263-1998", 90000)}


def test_asterisk_offer_fields() -> None:
    offer = sdp.parse(crlf(ASTERISK))
    audio = offer.media[0]
    assert audio.payload_types == [0, 8, 101]
    assert audio.rtpmap[101] == RtpMap("telephone-event", 8000)
    assert audio.fmtp == {101: "0-16"}
    assert (audio.maxptime, audio.ptime, audio.direction()) == (150, None, "sendrecv")


def test_webrtc_offer_fields() -> None:
    offer = sdp.parse(crlf(WEBRTC))
    assert offer.connection is None
    assert offer.attribute("group") == "BUNDLE 0 1"
    assert offer.attribute("msid-semantic") == " WMS 6e6fd708-1738-406a-bf65-1189b2f13f5c"
    audio, data = offer.media
    assert audio.proto == "UDP/TLS/RTP/SAVPF" and audio.formats == [111, 63, 9, 0, 8, 13, 110, 126]
    assert audio.rtpmap[111] == RtpMap("opus", 48000, 2)
    assert audio.fmtp[111] == "minptime=10;useinbandfec=1" and audio.fmtp[63] == "111/111"
    assert (audio.rtcp_port, audio.rtcp_address, audio.rtcp_mux) == (9, "0.0.0.0", True)
    assert audio.values("rtcp-fb") == ["111 transport-cc"]
    assert data.formats == ["webrtc-datachannel"] and data.payload_types == []
    assert data.attribute("sctp-port") == "5000"


def test_tolerated_forms() -> None:
    text = ("v=0\n"
            "o=- 1 2 IN IP6 2001:db8::1 \n"                       # white space at the end of lines
            "s=\n"
            "t=0 0\n"
            "c=IN  IP6   2001:db8::1\n"                             # session lines out of order, extra spaces
            "m=audio  5004   RTP/AVP  0  101\n"
            "a=rtpmap:101 telephone-event/8000 \n"
            "a=ptime:20.0\n"
            "a=sendrecv   \n"
            "\n\n")
    session = sdp.parse(text)
    assert session.connection == Connection("IP6", "2001:db8::1") and session.connection.ipv6
    audio = session.media[0]
    assert (audio.port, audio.formats, audio.ptime, audio.direction()) == (5004, [0, 101], 20, "sendrecv")
    assert session.serialize() == (b"v=0\r\no=- 1 2 IN IP6 2001:db8::1\r\ns= \r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n"
                                   b"m=audio 5004 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
                                   b"a=ptime:20.0\r\na=sendrecv\r\n")


def test_a_ptime_with_a_control_character_str_strip_takes() -> None:
    """str.strip() drops \x1c-\x1f, float() does not: the number read is the stripped one (this raised a
    plain ValueError out of parse; found by fuzz/sdp.py, fuzz/corpus/sdp/crash-maxptime-x1d)."""
    session = sdp.parse(GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=maxptime:150\x1d\na=ptime:20\x1f\n")
    audio = session.media[0]
    assert (audio.maxptime, audio.ptime) == (150, 20)
    assert sdp.parse(session.serialize()) == session


def test_bytes_that_are_not_utf8_survive_the_round_trip() -> None:
    wire = crlf(ASTERISK).encode().replace(b"s=Asterisk PBX", b"s=Caf\xe9 PBX")
    session = sdp.parse(wire)
    assert session.session_name.startswith("Caf\udce9")
    assert session.serialize() == wire


def test_other_lines_round_trip() -> None:
    text = crlf("""
v=0
o=- 7 7 IN IP4 192.0.2.1
s=all the lines
i=info
u=http://example.com/
e=a@example.com
e=b@example.com
p=+1 617 555-6011
c=IN IP4 192.0.2.1
b=CT:384
t=2873397496 2873404696
r=7d 1h 0 25h
t=0 0
z=2882844526 -1h 2898848070 0
k=prompt
a=tool:x
m=audio 49170/2 RTP/AVP 0
i=media info
c=IN IP4 192.0.2.2
b=AS:64
k=clear:secret
a=rtcp:53020 IN IP4 126.16.64.4
a=inactive
m=image 0 udptl t38
""")
    session = sdp.parse(text)
    assert session.serialize() == text.encode()
    assert session.timing == [Timing(2873397496, 2873404696, ["7d 1h 0 25h"]), Timing(0, 0)]
    assert session.bandwidths == [("CT", 384)] and session.phones == ["+1 617 555-6011"]
    audio, image = session.media
    assert (audio.port, audio.port_count, audio.bandwidths, audio.key) == (49170, 2, [("AS", 64)], "clear:secret")
    assert (audio.rtcp_port, audio.rtcp_address, audio.direction()) == (53020, "126.16.64.4", "inactive")
    assert image.formats == ["t38"]


# -- errors -------------------------------------------------------------------------------------------------------
GOOD_HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"


@pytest.mark.parametrize(("text", "message"), [
    ("", "SDP is empty"),
    ("\r\n\r\n", "SDP is empty"),
    ("o=- 1 1 IN IP4 h\n", "SDP must start with v=0"),
    ("v=1\n", "line 1: unsupported SDP version '1'"),
    ("v=0\ns=-\nt=0 0\n", "SDP has no o= line"),
    ("v=0\no=- 1 1 IN IP4 h\nt=0 0\n", "SDP has no s= line"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\n", "SDP has no t= line"),
    ("v=0\nhello\n", "line 2: expected <type>=<value>, got 'hello'"),
    ("v=0\nV=0\n", "line 2: expected <type>=<value>, got 'V=0'"),
    ("v=0\no = - 1 1 IN IP4 h\n", "line 2: expected <type>=<value>, got 'o = - 1 1 IN IP4 h'"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\n\na=x\n", "line 5: expected <type>=<value>, got ''"),
    ("v=0\nx=1\n", "line 2: unknown line type 'x='"),
    ("v=0\nv=0\n", "line 2: duplicate v= line"),
    (GOOD_HEAD + "s=again\n", "line 6: duplicate s= line"),
    (GOOD_HEAD + "c=IN IP4 h\n", "line 6: duplicate c= line"),
    ("v=0\no=- 1 1 IN IP4\n", "line 2: bad o= line '- 1 1 IN IP4'"),
    ("v=0\no=- x 1 IN IP4 h\n", "line 2: bad session id 'x'"),
    ("v=0\no=- 1 -1 IN IP4 h\n", "line 2: bad session version '-1'"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4\n", "line 4: bad c= line 'IN IP4'"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\nc=ATM NSAP h\n", "line 4: unsupported network type 'ATM' (IN)"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP5 h\n", "line 4: unsupported address type 'IP5' (IP4 or IP6)"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0\n", "line 4: bad t= line '0'"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\nr=7d 1h 0 25h\n", "line 4: r= without a t= line before it"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\nb=CT\n", "line 4: bad b= line 'CT'"),
    (GOOD_HEAD + "m=audio 49170 RTP/AVP\n", "line 6: bad m= line 'audio 49170 RTP/AVP'"),
    (GOOD_HEAD + "m=audio port RTP/AVP 0\n", "line 6: bad port 'port'"),
    (GOOD_HEAD + "m=audio 65536 RTP/AVP 0\n", "line 6: bad port '65536'"),
    (GOOD_HEAD + "m=audio -1 RTP/AVP 0\n", "line 6: bad port '-1'"),
    (GOOD_HEAD + "m=audio 5004/0 RTP/AVP 0\n", "line 6: bad port '5004/0'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0 128\n", "line 6: bad payload type '128'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP PCMU\n", "line 6: bad payload type 'PCMU'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\nt=0 0\n", "line 7: t= is not allowed in a media description"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\ny=1\n", "line 7: unknown line type 'y='"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\nc=IN IP4 a\nc=IN IP4 b\n",
     "line 8: duplicate c= line in media description 1"),
    (GOOD_HEAD + "a=bad name\n", "line 6: bad attribute name 'bad name'"),
    (GOOD_HEAD + "a=:x\n", "line 6: bad attribute name ''"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=rtpmap:0 PCMU\n", "line 7: bad a=rtpmap value '0 PCMU'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=rtpmap:200 X/8000\n", "line 7: bad a=rtpmap value '200 X/8000'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=rtpmap:0 PCMU/0\n", "line 7: bad a=rtpmap value '0 PCMU/0'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=rtpmap\n", "line 7: bad a=rtpmap value ''"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=fmtp:101\n", "line 7: bad a=fmtp value '101'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=ptime:twenty\n", "line 7: bad a=ptime value 'twenty'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=ptime:0\n", "line 7: bad a=ptime value '0'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=maxptime:\n", "line 7: bad a=maxptime value ''"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=rtcp:70000\n", "line 7: bad a=rtcp value '70000'"),
    (GOOD_HEAD + "m=audio 5004 RTP/AVP 0\na=sendonly\na=recvonly\n",
     "line 8: a second direction attribute a=recvonly"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 0\n",
     "media description 1 has no c= line and there is none at session level"),
    ("v=0\no=- 1 1 IN IP4 h\ns=-\r\r\nt=0 0\n", "line 3: stray CR or NUL in 's=-\\r'"),
    ("v=0\no=- 1 1 IN IP4 h\ns=a\x00b\nt=0 0\n", "line 3: stray CR or NUL in 's=a\\x00b'"),
])
def test_parse_errors(text: str, message: str) -> None:
    with raises(SdpError, message) as caught:
        sdp.parse(text)
    assert caught.value.status == 400


def test_rejected_stream_needs_no_connection() -> None:
    session = sdp.parse("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=video 0 RTP/AVP 31\n")
    assert session.media[0].port == 0


def test_bounds() -> None:
    big = GOOD_HEAD + "a=x:" + "y" * sdp.MAX_SIZE + "\n"
    with raises(SdpError, f"SDP is {len(big)} bytes, over the limit of 32768"):
        sdp.parse(big)
    with raises(SdpError, "SDP is 10 bytes, over the limit of 9"):
        sdp.parse(b"v=0\r\ns=-\r\n", max_size=9)
    media = GOOD_HEAD + "m=audio 5004 RTP/AVP 0\n" * (sdp.MAX_MEDIA + 1)
    with raises(SdpError, "SDP has more than 16 media descriptions"):
        sdp.parse(media)
    assert len(sdp.parse(GOOD_HEAD + "m=audio 5004 RTP/AVP 0\n" * sdp.MAX_MEDIA).media) == sdp.MAX_MEDIA
    lines = GOOD_HEAD + "a=x\n" * sdp.MAX_LINES
    with raises(SdpError, f"SDP has {sdp.MAX_LINES + 5} lines, over the limit of {sdp.MAX_LINES}"):
        sdp.parse(lines)


def test_error_hierarchy() -> None:
    assert issubclass(SdpError, SipParseError) and issubclass(SdpError, ValueError)


def test_every_truncation_parses_or_raises_sdp_error() -> None:
    for text in SAMPLES.values():
        wire = crlf(text).encode()
        for end in range(len(wire) + 1):
            try:
                session = sdp.parse(wire[:end])
            except SdpError:
                continue
            assert sdp.parse(session.serialize()) == session


def test_mutations_raise_only_sdp_error() -> None:
    rng = random.Random(4566)
    samples = [crlf(text).encode() for text in SAMPLES.values()]
    alphabet = b"=:/ \r\n\t0123456789amvcotIP4RTP\xff\x00-"
    for _ in range(4000):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 5)):
            i = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                del data[i]
            elif action == 1:
                data.insert(i, rng.choice(alphabet))
            else:
                data[i] = rng.choice(alphabet)
        try:
            session = sdp.parse(bytes(data))
        except SdpError:
            continue
        wire = session.serialize()
        assert sdp.parse(wire) == session
        audio = [m for m in session.media if m.media == "audio"]
        for m in audio:        # the helpers never fail on what parse accepted
            (m.rtpmap, m.fmtp, m.ptime, m.maxptime, m.rtcp_port, m.direction(), session.direction_of(m))


# -- building ------------------------------------------------------------------------------------------------------
def test_build_and_serialize() -> None:
    audio = MediaDescription("audio", 40000, "RTP/AVP", [0, 101], attributes=[
        ("rtpmap", "0 PCMU/8000"), ("rtpmap", "101 telephone-event/8000"), ("fmtp", "101 0-16"),
        ("ptime", "20"), ("sendrecv", None)])
    session = SessionDescription(Origin("-", 42, 1, "IN", "IP4", "192.0.2.10"), "pypbx",
                                 Connection("IP4", "192.0.2.10"), media=[audio])
    assert session.serialize() == (b"v=0\r\no=- 42 1 IN IP4 192.0.2.10\r\ns=pypbx\r\nc=IN IP4 192.0.2.10\r\n"
                                   b"t=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                                   b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
                                   b"a=sendrecv\r\n")
    assert bytes(session) == session.serialize()
    assert sdp.parse(session.serialize()) == session


def _session(**media: Any) -> SessionDescription:
    fields: dict[str, Any] = {"media": "audio", "port": 5004, "proto": "RTP/AVP", "formats": [0]}
    fields.update(media)
    return SessionDescription(Origin("-", 1, 1), media=[MediaDescription(**fields)])


@pytest.mark.parametrize(("session", "message"), [
    (SessionDescription(Origin("-", 1, 1), "a\r\nb"), "SDP session name has a CR, LF or NUL: 'a\\r\\nb'"),
    (SessionDescription(Origin("a b", 1, 1)), "SDP origin username must be one non-empty word, got 'a b'"),
    (SessionDescription(Origin("-", -1, 1)), "SDP session id and version must not be negative: -1 1"),
    (SessionDescription(Origin("-", 1, 1), timing=[]), "an SDP session description needs at least one t= line"),
    (_session(port=70000), "SDP port must be 0 to 65535, got 70000"),
    (_session(port_count=0), "SDP port count must be 1 to 65535, got 0"),
    (_session(formats=[]), "an SDP media description needs at least one format"),
    (_session(formats=[128]), "SDP payload type must be 0 to 127, got 128"),
    (_session(attributes=[("bad name", None)]), "SDP attribute name must be a token, got 'bad name'"),
    (_session(attributes=[("x", "a\nb")]), "SDP attribute value has a CR, LF or NUL: 'a\\nb'"),
    (_session(connection=Connection("IP4", "")), "SDP connection address must be one non-empty word, got ''"),
])
def test_build_errors(session: SessionDescription, message: str) -> None:
    with raises(InvalidMessage, message):
        session.serialize()
