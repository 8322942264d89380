"""pbx.sip.offer: SDP offer/answer (RFC 3264) for one audio stream: our offers, answers to RFC 4317's and captured
offers, reading answers, directions and hold, re-offers, IPv6, and exact errors."""

from __future__ import annotations

import itertools
import random
import re
from typing import Any

import pytest

from pbx.sip import sdp
from pbx.sip.errors import SipParseError
from pbx.sip.offer import (
    AudioCapabilities,
    Negotiated,
    NegotiationError,
    OfferUsageError,
    accept_answer,
    answer_offer,
    build_offer,
)

US = "192.0.2.10"
CAPS = AudioCapabilities()


def raises(kind: type[BaseException], message: str) -> Any:
    """pytest.raises for exactly ``message``."""
    return pytest.raises(kind, match="^" + re.escape(message) + "$")


def wire(text: str) -> bytes:
    """An SDP body from readable text: CRLF line ends, and an empty s= as RFC 4317's single space."""
    return (text.strip("\n").replace("\ns=\n", "\ns= \n").replace("\n", "\r\n") + "\r\n").encode()


def peer(media: str, *, address: str = "198.51.100.7", version: int = 1, addrtype: str = "IP4") -> bytes:
    """A peer's session description with ``media`` (its m= sections) under a usual session header."""
    return wire(f"v=0\no=peer 5550001 {version} IN {addrtype} {address}\ns=\nc=IN {addrtype} {address}\nt=0 0\n"
                + media.strip("\n"))


def answer(offer: bytes, caps: AudioCapabilities = CAPS, direction: str = "sendrecv",
           version: int = 1) -> tuple[bytes, Negotiated]:
    sd, negotiated = answer_offer(sdp.parse(offer), caps, US, 30000, 7, version, direction)
    return sd.serialize(), negotiated


# RFC 4317 §2.1, §2.4, §2.6 offers: https://www.rfc-editor.org/rfc/rfc4317
RFC4317_2_1 = wire("""
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
""")
RFC4317_2_4 = wire("""
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
""")
RFC4317_2_6 = wire("""
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
""")
# RFC 4317 §5.2: an offer "black holed" with c=0.0.0.0
RFC4317_5_2 = wire("""
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 0.0.0.0
t=0 0
m=audio 23442 RTP/AVP 97 0
a=rtpmap:97 iLBC/8000
""")
# captured: Asterisk 13 chan_sip
ASTERISK = wire("""
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
""")
# a browser's audio offer (shortened): a profile we do not take
WEBRTC = wire("""
v=0
o=- 1237562358473204055 2 IN IP4 127.0.0.1
s=-
t=0 0
m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
""")


# -- our offers ------------------------------------------------------------------------------------------------
def test_build_offer_default() -> None:
    offer = build_offer(CAPS, US, 40000, 123456, 1)
    assert offer.serialize() == wire("""
v=0
o=- 123456 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 40000 RTP/AVP 0 8 9 111 101 110
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:111 opus/48000/2
a=fmtp:111 useinbandfec=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:110 telephone-event/48000
a=fmtp:110 0-16
a=ptime:20
a=sendrecv
""")
    assert sdp.parse(offer.serialize()) == offer


@pytest.mark.parametrize(("caps", "m_line", "events"), [
    (AudioCapabilities(codecs=("g722", "pcma")), "m=audio 40000 RTP/AVP 9 8 101", ["101 telephone-event/8000"]),
    (AudioCapabilities(codecs=("opus",)), "m=audio 40000 RTP/AVP 111 110", ["110 telephone-event/48000"]),
    (AudioCapabilities(codecs=("pcmu",), dtmf=False), "m=audio 40000 RTP/AVP 0", []),
])
def test_build_offer_codecs_and_dtmf(caps: AudioCapabilities, m_line: str, events: list[str]) -> None:
    offer = build_offer(caps, US, 40000, 1, 1)
    assert offer.lines()[5] == m_line
    assert [v for v in offer.media[0].values("rtpmap") if "telephone-event" in v] == events


def test_build_offer_ipv6_ptime_and_hold() -> None:
    offer = build_offer(AudioCapabilities(codecs=("pcmu",), ptime=40), "2001:db8::10", 40000, 9, 3, "sendonly")
    assert offer.serialize() == wire("""
v=0
o=- 9 3 IN IP6 2001:db8::10
s=-
c=IN IP6 2001:db8::10
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:40
a=sendonly
""")


# -- answering -------------------------------------------------------------------------------------------------
def test_answer_rfc4317_audio_and_video() -> None:
    body, negotiated = answer(RFC4317_2_1)
    assert body == wire("""
v=0
o=- 7 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 30000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
a=sendrecv
m=video 0 RTP/AVP 31
""")
    assert negotiated == Negotiated(
        codec="pcmu", payload_type=0, clock_rate=8000, sample_rate=8000, channels=1, dtmf_payload_type=-1,
        ptime=20, address="host.atlanta.example.com", port=49170, rtcp_port=49171, direction="sendrecv",
        on_hold=False, ipv6=False)
    assert negotiated.sending and negotiated.receiving


def test_answer_rfc4317_two_audio_streams() -> None:
    # §2.4: the second audio stream carries only telephone-event; we take the first and refuse the second
    body, negotiated = answer(RFC4317_2_4)
    lines = body.decode().split("\r\n")
    assert lines[5:] == ["m=audio 30000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=sendrecv",
                         "m=audio 0 RTP/AVP 98", ""]
    assert (negotiated.codec, negotiated.dtmf_payload_type, negotiated.port) == ("pcmu", -1, 49170)


def test_answer_rfc4317_audio_only_1() -> None:
    # §2.6: Bob refused the first stream and took the second (iLBC); we take PCMU from the first
    body, negotiated = answer(RFC4317_2_6)
    assert body.decode().split("\r\n")[5:] == ["m=audio 30000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=ptime:20",
                                               "a=sendrecv", "m=audio 0 RTP/AVP 97", ""]
    assert negotiated.port == 49170
    with raises(NegotiationError, "the audio stream offers PCMU/8000; we take PCMA/8000"):
        answer(RFC4317_2_6, AudioCapabilities(codecs=("pcma",)))


def test_answer_skips_a_refused_stream_and_takes_the_next() -> None:
    offer = peer("m=audio 0 RTP/AVP 0\nm=video 5000 RTP/AVP 31\nm=audio 6000 RTP/AVP 8\n")
    body, negotiated = answer(offer)
    assert [line for line in body.decode().split("\r\n") if line.startswith("m=")] == [
        "m=audio 0 RTP/AVP 0", "m=video 0 RTP/AVP 31", "m=audio 30000 RTP/AVP 8"]
    assert (negotiated.codec, negotiated.port) == ("pcma", 6000)


def test_answer_captured_asterisk_offer() -> None:
    body, negotiated = answer(ASTERISK)
    assert body.decode().split("\r\n")[5:] == [
        "m=audio 30000 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv", ""]
    assert (negotiated.codec, negotiated.dtmf_payload_type, negotiated.ptime) == ("pcmu", 101, 20)
    assert (negotiated.address, negotiated.port, negotiated.rtcp_port) == ("172.17.0.2", 14028, 14029)


def test_answer_refuses_a_browser_profile() -> None:
    with raises(NegotiationError, "the audio stream's profile is UDP/TLS/RTP/SAVPF, we take RTP/AVP") as caught:
        answer(WEBRTC)
    error = caught.value
    assert (error.status, error.reason) == (488, "Not Acceptable Here")
    assert error.headers == (("Warning", '302 pypbx "Incompatible transport protocol"'),)
    assert isinstance(error, SipParseError) and isinstance(error, ValueError)


@pytest.mark.parametrize(("media", "message"), [
    ("", "the offer has no audio stream"),
    ("m=video 5000 RTP/AVP 31\n", "the offer has no audio stream"),
    ("m=audio 0 RTP/AVP 0\n", "the offer has no audio stream"),
    ("m=audio 5000 RTP/AVP 96 3\n", "the audio stream offers 96, GSM/8000; we take PCMU/8000, PCMA/8000, "
                                    "G722/8000, opus/48000/2"),
    ("m=audio 5000 RTP/AVP 97\na=rtpmap:97 PCMU/16000\n", "the audio stream offers PCMU/16000; we take "
                                                          "PCMU/8000, PCMA/8000, G722/8000, opus/48000/2"),
    ("m=audio 5000 RTP/SAVP 0\n", "the audio stream's profile is RTP/SAVP, we take RTP/AVP"),
])
def test_answer_errors(media: str, message: str) -> None:
    with raises(NegotiationError, message):
        answer(peer(media))


def test_answer_codec_choice() -> None:
    offer = peer("m=audio 5000 RTP/AVP 8 0 9\n")
    assert answer(offer)[1].codec == "pcmu"                                       # our order
    assert answer(offer, AudioCapabilities(prefer_offer_order=True))[1].codec == "pcma"   # theirs
    assert answer(offer, AudioCapabilities(codecs=("g722", "pcmu")))[1].codec == "g722"


def test_answer_static_and_dynamic_payload_types() -> None:
    # G722 as a static payload type without a=rtpmap: an 8000 clock, 16 kHz audio
    _, g722 = answer(peer("m=audio 5000 RTP/AVP 9\n"), AudioCapabilities(codecs=("g722",)))
    assert (g722.codec, g722.payload_type, g722.clock_rate, g722.sample_rate) == ("g722", 9, 8000, 16000)
    # a dynamic opus keeps the offerer's number; telephone-event at opus's clock; names in any case
    offer = peer("m=audio 5000 RTP/AVP 109 101 102\na=rtpmap:109 OPUS/48000/2\na=fmtp:109 stereo=0\n"
                 "a=rtpmap:101 telephone-event/8000\na=rtpmap:102 Telephone-Event/48000\n")
    body, opus = answer(offer, AudioCapabilities(codecs=("opus",)))
    assert body.decode().split("\r\n")[5:] == [
        "m=audio 30000 RTP/AVP 109 102", "a=rtpmap:109 opus/48000/2", "a=fmtp:109 useinbandfec=1",
        "a=rtpmap:102 telephone-event/48000", "a=fmtp:102 0-16", "a=ptime:20", "a=sendrecv", ""]
    assert (opus.payload_type, opus.dtmf_payload_type, opus.clock_rate, opus.channels) == (109, 102, 48000, 2)
    # a static number given a=rtpmap for another codec is read as that codec
    _, remapped = answer(peer("m=audio 5000 RTP/AVP 0\na=rtpmap:0 PCMA/8000\n"), AudioCapabilities(codecs=("pcma",)))
    assert (remapped.codec, remapped.payload_type) == ("pcma", 0)
    # dtmf off: no telephone-event even when offered
    assert answer(ASTERISK, AudioCapabilities(dtmf=False))[1].dtmf_payload_type == -1
    # telephone-event at another clock than the codec's is not used
    _, mismatch = answer(peer("m=audio 5000 RTP/AVP 111 101\na=rtpmap:111 opus/48000/2\n"
                              "a=rtpmap:101 telephone-event/8000\n"))
    assert (mismatch.codec, mismatch.dtmf_payload_type) == ("opus", -1)


@pytest.mark.parametrize(("attributes", "ptime"), [
    ("", 20), ("a=ptime:30\n", 30), ("a=ptime:25\n", 20), ("a=ptime:80\n", 60), ("a=ptime:5\n", 10),
    ("a=maxptime:15\n", 10), ("a=ptime:60\na=maxptime:40\n", 40), ("a=maxptime:150\n", 20),
])
def test_packet_time_to_send_with(attributes: str, ptime: int) -> None:
    assert answer(peer("m=audio 5000 RTP/AVP 0\n" + attributes))[1].ptime == ptime


def test_rtcp_port() -> None:
    assert answer(peer("m=audio 5000 RTP/AVP 0\na=rtcp:6001\n"))[1].rtcp_port == 6001
    assert answer(peer("m=audio 5000 RTP/AVP 0\na=rtcp-mux\n"))[1].rtcp_port == 5000


# -- directions and hold ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("theirs", "ours", "answered", "on_hold"), [
    ("sendrecv", "sendrecv", "sendrecv", False),
    ("sendonly", "sendrecv", "recvonly", True),
    ("recvonly", "sendrecv", "sendonly", False),
    ("inactive", "sendrecv", "inactive", True),
    ("sendrecv", "sendonly", "sendonly", False),
    ("sendrecv", "inactive", "inactive", False),
    ("sendonly", "sendonly", "inactive", True),
    ("recvonly", "recvonly", "inactive", False),
    ("recvonly", "sendonly", "sendonly", False),
])
def test_answer_direction(theirs: str, ours: str, answered: str, on_hold: bool) -> None:
    body, negotiated = answer(peer(f"m=audio 5000 RTP/AVP 0\na={theirs}\n"), direction=ours)
    assert body.decode().split("\r\n")[-2] == f"a={answered}"
    assert (negotiated.direction, negotiated.on_hold) == (answered, on_hold)


def test_session_level_direction_counts() -> None:
    offer = peer("a=sendonly\nm=audio 5000 RTP/AVP 0\n")
    assert answer(offer)[1].direction == "recvonly"


def test_held_with_zero_address() -> None:
    # RFC 4317 §5.2 (and RFC 3264 §8.4): c=0.0.0.0 puts the stream on hold
    body, negotiated = answer(RFC4317_5_2)
    assert (negotiated.address, negotiated.on_hold, negotiated.direction) == ("0.0.0.0", True, "sendrecv")
    assert b"m=audio 30000 RTP/AVP 0\r\n" in body


def test_reoffers_hold_unhold_and_codec_change() -> None:
    # the peer calls, puts us on hold (sendonly), takes us off hold, then moves to PCMA; o= version increments
    first = peer("m=audio 5000 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\n", version=1)
    body, n1 = answer(first, version=1)
    hold = peer("m=audio 5000 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\na=sendonly\n", version=2)
    body2, n2 = answer(hold, version=2)
    resume = peer("m=audio 5002 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n", version=3)
    body3, n3 = answer(resume, version=3)
    change = peer("m=audio 5002 RTP/AVP 8\n", version=4)
    body4, n4 = answer(change, version=4)
    assert [sdp.parse(b).origin.sess_version for b in (body, body2, body3, body4)] == [1, 2, 3, 4]
    assert [sdp.parse(b).origin.sess_id for b in (body, body2, body3, body4)] == [7, 7, 7, 7]
    assert [(n.codec, n.direction, n.on_hold, n.port) for n in (n1, n2, n3, n4)] == [
        ("pcmu", "sendrecv", False, 5000), ("pcmu", "recvonly", True, 5000), ("pcmu", "sendrecv", False, 5002),
        ("pcma", "sendrecv", False, 5002)]
    assert (n3.dtmf_payload_type, n4.dtmf_payload_type) == (101, -1)


def test_we_hold_and_resume() -> None:
    caps = AudioCapabilities(codecs=("pcmu",))
    hold = build_offer(caps, US, 40000, 5, 2, "sendonly")
    reply = peer("m=audio 5000 RTP/AVP 0\na=recvonly\n", version=2)
    held = accept_answer(hold, sdp.parse(reply))
    assert (held.direction, held.on_hold, held.sending, held.receiving) == ("sendonly", False, True, False)
    inactive = accept_answer(build_offer(caps, US, 40000, 5, 3, "inactive"),
                             sdp.parse(peer("m=audio 5000 RTP/AVP 0\na=inactive\n", version=3)))
    assert (inactive.direction, inactive.on_hold) == ("inactive", True)
    resumed = accept_answer(build_offer(caps, US, 40000, 5, 4), sdp.parse(peer("m=audio 5000 RTP/AVP 0\n")))
    assert (resumed.direction, resumed.on_hold) == ("sendrecv", False)


# -- reading answers to our offers -------------------------------------------------------------------------------
OUR_OFFER = build_offer(CAPS, US, 40000, 99, 1)


def test_accept_answer_renumbered_dynamic_codec() -> None:
    # RFC 4317 §2.3: the answer may use another number for the same codec; we send with the answer's
    reply = peer("m=audio 5004 RTP/AVP 96 97\na=rtpmap:96 OPUS/48000/2\na=rtpmap:97 telephone-event/48000\n"
                 "a=ptime:40\n")
    negotiated = accept_answer(OUR_OFFER, sdp.parse(reply))
    assert negotiated == Negotiated(
        codec="opus", payload_type=96, clock_rate=48000, sample_rate=48000, channels=2, dtmf_payload_type=97,
        ptime=40, address="198.51.100.7", port=5004, rtcp_port=5005, direction="sendrecv", on_hold=False,
        ipv6=False)


def test_accept_answer_static_and_hold_forms() -> None:
    negotiated = accept_answer(OUR_OFFER, sdp.parse(peer("m=audio 5004 RTP/AVP 8 101\n"
                                                         "a=rtpmap:101 telephone-event/8000\n")))
    assert (negotiated.codec, negotiated.payload_type, negotiated.dtmf_payload_type) == ("pcma", 8, 101)
    assert negotiated.ptime == 20                                               # ours, as the answer gave none
    # RFC 4317 §3.1: Bob answers sendonly from a placeholder address
    sendonly = accept_answer(OUR_OFFER, sdp.parse(peer("m=audio 49172 RTP/AVP 0\na=sendonly\n",
                                                       address="placeholder.biloxi.example.com")))
    assert (sendonly.direction, sendonly.on_hold, sendonly.address) == (
        "recvonly", True, "placeholder.biloxi.example.com")
    # RFC 4317 §5.3: the answer black-holes the stream with c=0.0.0.0
    zero = accept_answer(OUR_OFFER, sdp.parse(peer("m=audio 9322 RTP/AVP 0\n", address="0.0.0.0")))
    assert zero.on_hold
    # telephone-event the answer has at another clock than the codec's is not used
    mixed = accept_answer(OUR_OFFER, sdp.parse(peer("m=audio 5004 RTP/AVP 111 101\na=rtpmap:111 opus/48000/2\n"
                                                    "a=rtpmap:101 telephone-event/8000\n")))
    assert (mixed.codec, mixed.dtmf_payload_type) == ("opus", -1)


def test_accept_answer_ipv6() -> None:
    offer = build_offer(CAPS, "2001:db8::10", 40000, 1, 1)
    reply = peer("m=audio 5004 RTP/AVP 9\n", address="2001:db8::20", addrtype="IP6")
    negotiated = accept_answer(offer, sdp.parse(reply))
    assert (negotiated.codec, negotiated.address, negotiated.ipv6) == ("g722", "2001:db8::20", True)


def test_accept_answer_only_takes_what_we_offered() -> None:
    offer = build_offer(AudioCapabilities(codecs=("pcma",), dtmf=False), US, 40000, 1, 1)
    with raises(NegotiationError, "the answer has no codec we offered (it has PCMU/8000, iLBC/8000)"):
        accept_answer(offer, sdp.parse(peer("m=audio 5004 RTP/AVP 0 97\na=rtpmap:97 iLBC/8000\n")))
    # telephone-event we did not offer is not used
    negotiated = accept_answer(offer, sdp.parse(peer("m=audio 5004 RTP/AVP 8 101\n"
                                                     "a=rtpmap:101 telephone-event/8000\n")))
    assert negotiated.dtmf_payload_type == -1


@pytest.mark.parametrize(("media", "message"), [
    ("m=audio 0 RTP/AVP 0\n", "the answer refused the audio stream (port 0)"),
    ("m=video 5004 RTP/AVP 31\n", "the answer's media description 1 is video, the offer's is audio"),
    ("m=audio 5004 RTP/SAVP 0\n", "the answer's audio profile is RTP/SAVP, the offer's is RTP/AVP"),
    ("m=audio 5004 RTP/AVP 0\nm=video 0 RTP/AVP 31\n", "the answer has 2 media descriptions, the offer had 1"),
    ("", "the answer has 0 media descriptions, the offer had 1"),
])
def test_accept_answer_errors(media: str, message: str) -> None:
    with raises(NegotiationError, message):
        accept_answer(OUR_OFFER, sdp.parse(peer(media)))


# -- usage errors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "message"), [
    (lambda: AudioCapabilities(codecs=()), "no codecs"),
    (lambda: AudioCapabilities(codecs=("pcmu", "gsm")), "unknown codec 'gsm' (pcmu, pcma, g722 or opus)"),
    (lambda: AudioCapabilities(codecs=("pcmu", "pcmu")), "codec 'pcmu' is listed twice"),
    (lambda: AudioCapabilities(ptime=25), "ptime must be 10, 20, 30, 40 or 60 ms, got 25"),
    (lambda: build_offer(CAPS, US, 0, 1, 1), "port must be 1 to 65535, got 0"),
    (lambda: build_offer(CAPS, US, 65536, 1, 1), "port must be 1 to 65535, got 65536"),
    (lambda: build_offer(CAPS, US, 4000, 1, 1, "hold"),
     "direction must be sendrecv, sendonly, recvonly or inactive, got 'hold'"),
    (lambda: build_offer(CAPS, "", 4000, 1, 1), "bad address ''"),
    (lambda: build_offer(CAPS, US, 4000, -1, 1), "session id and version must not be negative, got -1 and 1"),
    (lambda: answer_offer(sdp.parse(ASTERISK), CAPS, US, 0, 1, 1), "port must be 1 to 65535, got 0"),
    (lambda: accept_answer(sdp.parse(peer("")), sdp.parse(peer(""))), "our offer has no audio stream"),
])
def test_usage_errors(make: Any, message: str) -> None:
    with raises(OfferUsageError, message):
        make()
    assert issubclass(OfferUsageError, ValueError) and not issubclass(OfferUsageError, SipParseError)


# -- both sides -----------------------------------------------------------------------------------------------------
def test_both_sides_agree() -> None:
    """Every ordering of codecs on each side, with and without DTMF: the answerer's and the offerer's views of
    the stream name the same codec, payload types and each other's addresses."""
    rng = random.Random(3264)
    names = ("pcmu", "pcma", "g722", "opus")
    orders = [p for n in range(1, 5) for p in itertools.permutations(names, n)]
    for _ in range(400):
        a = AudioCapabilities(codecs=rng.choice(orders), dtmf=rng.random() < 0.5, ptime=rng.choice((10, 20, 30)))
        b = AudioCapabilities(codecs=rng.choice(orders), dtmf=rng.random() < 0.5,
                              prefer_offer_order=rng.random() < 0.5)
        offer = build_offer(a, "192.0.2.1", 4000, 1, 1)
        try:
            their_answer, theirs = answer_offer(sdp.parse(offer.serialize()), b, "192.0.2.2", 5000, 2, 1)
        except NegotiationError:
            assert not set(a.codecs) & set(b.codecs)
            continue
        ours = accept_answer(offer, sdp.parse(their_answer.serialize()))
        assert ours.codec == theirs.codec and ours.codec in a.codecs and ours.codec in b.codecs
        assert ours.payload_type == theirs.payload_type
        assert ours.dtmf_payload_type == theirs.dtmf_payload_type
        assert (ours.dtmf_payload_type >= 0) == (a.dtmf and b.dtmf)
        assert (ours.address, ours.port, theirs.address, theirs.port) == ("192.0.2.2", 5000, "192.0.2.1", 4000)
        assert theirs.ptime == a.ptime and ours.ptime == b.ptime
        if not b.prefer_offer_order:
            assert theirs.codec == next(c for c in b.codecs if c in a.codecs)
