"""A browser's SDP offer and our answer, for an audio-only WebRTC call (RFC 8829 JSEP, RFC 8839 ICE SDP,
RFC 8842 DTLS SDP, RFC 8843 BUNDLE).

:func:`read_offer` takes what ``invite.option.offer`` carries and finds the audio section and its
transport parameters: ICE credentials (``a=ice-ufrag``/``a=ice-pwd``, session or media level), the DTLS
fingerprint and role (``a=fingerprint``, ``a=setup``), the ``mid``. A missing or malformed piece is a
:class:`WebRtcOfferError` saying which (the call gets an ``error`` event and stays usable).

:func:`answer` builds our answer: the audio section with one codec (Opus first, then PCMU and PCMA,
as the call's codec option orders them) and telephone-event when offered, ``a=rtcp-mux``, our ICE
credentials with ``a=ice-lite`` (we only answer checks: :mod:`pbx.webrtc.ice`), our host candidates
(non-trickle: all of them, then ``a=end-of-candidates``), our fingerprint and ``a=setup:passive`` (we
are the DTLS server) unless the offer insists on being passive. Other sections (video, data channels)
are refused with port 0, keeping their ``mid``; BUNDLE groups only the audio section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pbx.sip import sdp as sdpmod
from pbx.sip.offer import AudioCapabilities, Negotiated, NegotiationError, answer_offer
from pbx.webrtc.ice import IceCredentials

PROFILE = "UDP/TLS/RTP/SAVPF"
WEBRTC_CODECS = ("opus", "pcmu", "pcma")
MAX_OFFER = 64 * 1024                # browsers' offers are a few kB; a video-laden one stays well under


class WebRtcOfferError(ValueError):
    """An offer we cannot answer: the message says what is missing or wrong."""


@dataclass(frozen=True, slots=True)
class WebRtcOffer:
    description: sdpmod.SessionDescription
    audio_index: int                 # the audio section we answer
    ice: IceCredentials              # the browser's
    fingerprint: str                 # "<algorithm> <hex>"
    setup: str                       # actpass, active or passive
    mid: str | None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One of our host candidates (RFC 8839 §5.1)."""

    host: str
    port: int

    def line(self, foundation: int) -> str:
        priority = (126 << 24) | ((65535 - foundation) << 8) | 255        # type host, component 1
        return f"{foundation} 1 udp {priority} {self.host} {self.port} typ host"


def read_offer(text: str | None) -> WebRtcOffer:
    if not text or not text.strip():
        raise WebRtcOfferError("invite.option.offer: a WebRTC call needs the browser's SDP offer")
    if len(text) > MAX_OFFER:
        raise WebRtcOfferError(f"invite.option.offer: {len(text)} characters; at most {MAX_OFFER}")
    try:
        description = sdpmod.SessionDescription.parse(text)
    except sdpmod.SdpError as exc:
        raise WebRtcOfferError(f"invite.option.offer is not valid SDP: {exc}") from None
    index = next((i for i, m in enumerate(description.media) if m.media == "audio" and m.port != 0), None)
    if index is None:
        raise WebRtcOfferError("invite.option.offer has no audio section")
    media = description.media[index]
    if media.proto.upper() != PROFILE:
        raise WebRtcOfferError(f"invite.option.offer: the audio section's transport is {media.proto}, "
                               f"a WebRTC offer's is {PROFILE}")
    ufrag = media.attribute("ice-ufrag") or description.attribute("ice-ufrag")
    pwd = media.attribute("ice-pwd") or description.attribute("ice-pwd")
    fingerprint = media.attribute("fingerprint") or description.attribute("fingerprint")
    setup = (media.attribute("setup") or description.attribute("setup") or "actpass").strip().lower()
    if not ufrag or not pwd:
        raise WebRtcOfferError("invite.option.offer has no a=ice-ufrag / a=ice-pwd")
    if not fingerprint or " " not in fingerprint.strip():
        raise WebRtcOfferError("invite.option.offer has no a=fingerprint (DTLS-SRTP is required)")
    if setup not in ("actpass", "active", "passive"):
        raise WebRtcOfferError(f"invite.option.offer: a=setup:{setup} is not actpass, active or passive")
    return WebRtcOffer(description, index, IceCredentials(ufrag.strip(), pwd.strip()), fingerprint.strip(), setup,
                       media.attribute("mid"))


def answer(offer: WebRtcOffer, caps: AudioCapabilities, ice: IceCredentials, fingerprint: str,
           candidates: list[Candidate], session_id: int) -> tuple[sdpmod.SessionDescription, Negotiated, bool]:
    """Our answer, the stream it sets up, and whether we are the DTLS server. NegotiationError when the
    audio section offers no codec we take."""
    if not candidates:
        raise WebRtcOfferError("no host candidate to offer (the server has no WebRTC address configured)")
    first = candidates[0]
    description, negotiated = answer_offer(offer.description, caps, first.host, first.port, session_id, 1,
                                           profile=PROFILE)
    # ICE decides where media goes: the offer's c= (often 0.0.0.0) puts nothing on hold, its direction may
    offered = offer.description.media[offer.audio_index]
    negotiated = dataclasses.replace(
        negotiated, on_hold=offer.description.direction_of(offered) in ("sendonly", "inactive"))
    server = offer.setup != "passive"
    audio = description.media[offer.audio_index]
    if offer.mid is not None:
        audio.attributes.insert(0, ("mid", offer.mid))
    audio.attributes += [("ice-ufrag", ice.ufrag), ("ice-pwd", ice.pwd), ("fingerprint", fingerprint),
                         ("setup", "passive" if server else "active"), ("rtcp-mux", None)]
    audio.attributes += [("candidate", c.line(i + 1)) for i, c in enumerate(candidates)]
    audio.attributes.append(("end-of-candidates", None))
    for i, media in enumerate(description.media):
        mid = offer.description.media[i].attribute("mid")
        if i != offer.audio_index and mid is not None:
            media.attributes.insert(0, ("mid", mid))
    description.attributes.append(("ice-lite", None))
    groups = [value or "" for name, value in offer.description.attributes if name == "group"]
    if offer.mid is not None and any(v.split()[:1] == ["BUNDLE"] for v in groups):
        description.attributes.append(("group", f"BUNDLE {offer.mid}"))
    return description, negotiated, server


__all__ = ["PROFILE", "WEBRTC_CODECS", "Candidate", "NegotiationError", "WebRtcOffer", "WebRtcOfferError",
           "answer", "read_offer"]
