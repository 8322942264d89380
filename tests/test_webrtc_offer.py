"""Offers from a real WebRTC stack (aiortc's RTCPeerConnection), read and answered; bad offers refused."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from pbx.sip import sdp as sdpmod
from pbx.sip.offer import AudioCapabilities, NegotiationError
from pbx.webrtc.dtls import Certificate
from pbx.webrtc.ice import IceCredentials
from pbx.webrtc.offer import Candidate, WebRtcOfferError, answer, read_offer

OPUS_FIRST = AudioCapabilities(codecs=("opus", "pcmu", "pcma"))
PCMU_ONLY = AudioCapabilities(codecs=("pcmu",))


def aiortc_offer(*kinds: str) -> str:
    """The offer aiortc makes for these transceivers (host candidates gathered, non-trickle)."""
    async def make() -> str:
        pc = RTCPeerConnection()
        try:
            for kind in kinds:
                pc.addTransceiver(kind, direction="sendrecv")
            await pc.setLocalDescription(await pc.createOffer())
            return str(pc.localDescription.sdp)
        finally:
            await pc.close()
    return asyncio.run(make())


def test_an_aiortc_audio_offer_is_read_and_answered_with_opus_ice_lite_and_our_fingerprint() -> None:
    offer = read_offer(aiortc_offer("audio"))
    assert offer.setup == "actpass" and offer.fingerprint.startswith("sha-256 ") and offer.mid == "0"
    ours, cert = IceCredentials.generate(), Certificate()
    description, negotiated, server = answer(offer, OPUS_FIRST, ours, cert.fingerprint,
                                             [Candidate("127.0.0.1", 40000)], 7)
    text = description.serialize().decode()
    assert server and negotiated.codec == "opus" and negotiated.clock_rate == 48000 and not negotiated.on_hold
    for line in ("a=ice-lite", f"a=ice-ufrag:{ours.ufrag}", f"a=ice-pwd:{ours.pwd}",
                 f"a=fingerprint:{cert.fingerprint}", "a=setup:passive", "a=rtcp-mux", "a=mid:0",
                 "a=group:BUNDLE 0", "a=end-of-candidates", "m=audio 40000 UDP/TLS/RTP/SAVPF ",
                 "c=IN IP4 127.0.0.1"):
        assert line in text, (line, text)
    assert "typ host" in text and "127.0.0.1 40000" in text
    # and aiortc takes it as a valid answer
    again = sdpmod.SessionDescription.parse(text)
    assert again.media[0].attribute("ice-ufrag") == ours.ufrag


def test_pcmu_when_the_call_asks_for_it_and_other_sections_are_refused_keeping_their_mid() -> None:
    offer = read_offer(aiortc_offer("audio", "video"))
    description, negotiated, _ = answer(offer, PCMU_ONLY, IceCredentials.generate(), Certificate().fingerprint,
                                        [Candidate("::1", 40002)], 7)
    text = description.serialize().decode()
    assert negotiated.codec == "pcmu" and "c=IN IP6 ::1" in text
    video = description.media[1]
    assert video.port == 0 and video.attribute("mid") == "1"
    assert "a=group:BUNDLE 0\r\n" in text


def test_a_passive_offerer_makes_us_the_dtls_client() -> None:
    text = aiortc_offer("audio").replace("a=setup:actpass", "a=setup:passive")
    _, _, server = answer(read_offer(text), OPUS_FIRST, IceCredentials.generate(), Certificate().fingerprint,
                          [Candidate("127.0.0.1", 40000)], 7)
    assert server is False


@pytest.mark.parametrize(("mutate", "why"), [
    (lambda s: "", "needs the browser's SDP offer"),
    (lambda s: "not sdp at all", "is not valid SDP"),
    (lambda s: s.replace("m=audio", "m=video"), "has no audio section"),
    (lambda s: s.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), "a WebRTC offer's is UDP/TLS/RTP/SAVPF"),
    (lambda s: "\r\n".join(x for x in s.split("\r\n") if not x.startswith("a=ice-pwd")), "no a=ice-ufrag"),
    (lambda s: "\r\n".join(x for x in s.split("\r\n") if not x.startswith("a=fingerprint")), "no a=fingerprint"),
    (lambda s: s.replace("a=setup:actpass", "a=setup:holdconn"), "is not actpass"),
])
def test_bad_offers_say_what_is_wrong(mutate: object, why: str) -> None:
    text = mutate(aiortc_offer("audio"))  # type: ignore[operator]
    with pytest.raises(WebRtcOfferError, match=why):
        read_offer(text)


def test_an_offer_without_a_codec_we_take_is_a_negotiation_error() -> None:
    text = aiortc_offer("audio")
    opus = re.search(r"a=rtpmap:(\d+) opus/48000/2", text)
    assert opus is not None
    only_opus = re.sub(r"(m=audio \S+ UDP/TLS/RTP/SAVPF)[ 0-9]*", rf"\1 {opus.group(1)}", text)
    with pytest.raises(NegotiationError):
        answer(read_offer(only_opus), PCMU_ONLY, IceCredentials.generate(), Certificate().fingerprint,
               [Candidate("127.0.0.1", 40000)], 7)


def test_aiortc_accepts_our_answer() -> None:
    async def run() -> str:
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio", direction="sendrecv")
            await pc.setLocalDescription(await pc.createOffer())
            offer = read_offer(pc.localDescription.sdp)
            description, _, _ = answer(offer, OPUS_FIRST, IceCredentials.generate(), Certificate().fingerprint,
                                       [Candidate("127.0.0.1", 40000)], 7)
            await pc.setRemoteDescription(RTCSessionDescription(description.serialize().decode(), "answer"))
            return str(pc.signalingState)
        finally:
            await pc.close()

    assert asyncio.run(run()) == "stable"
