"""SDP offer/answer (RFC 3264) for one audio stream, with the engine's codecs.

=============  ======================  ============  ===========  ==========================================
engine codec   rtpmap                  payload type  audio rate   notes
=============  ======================  ============  ===========  ==========================================
``pcmu``       ``PCMU/8000``           0 (static)    8 kHz
``pcma``       ``PCMA/8000``           8 (static)    8 kHz
``g722``       ``G722/8000``           9 (static)    16 kHz       the RTP clock is 8000 (RFC 3551 §4.5.2)
``opus``       ``opus/48000/2``        111 (ours)    48 kHz       always ``/2`` on the wire (RFC 7587 §7)
DTMF           ``telephone-event``     101 / 110     -            RFC 4733, at 8000, and at 48000 with opus
=============  ======================  ============  ===========  ==========================================

:func:`build_offer` makes our offer (every codec of :class:`AudioCapabilities` in order, the DTMF payload
types, ``a=ptime`` and the direction); :func:`answer_offer` answers a peer's offer and :func:`accept_answer`
reads the answer to ours. Each gives a :class:`Negotiated`, the stream as the engine needs it. Re-offers (hold
with ``sendonly`` or ``inactive``, resume, a codec change) go through the same functions with the ``o=``
version incremented by the caller.

Rules kept (RFC 3264 §6): the answer has one media description per offered one, in the same order; the first
usable audio stream (``RTP/AVP``, port not 0, a codec in common) is accepted with one codec and, when both
sides have it at the codec's clock rate, telephone-event; every other stream is refused with port 0 and the
offer's media type, profile and first format. Payload types are the offerer's (the answer keeps a dynamic
codec's number); a static payload type needs no ``a=rtpmap``; encoding names match without regard to case.
The answer's direction is the offer's reversed (``sendonly`` -> ``recvonly``, ``recvonly`` -> ``sendonly``)
and limited by ours. We pick the codec by our order of preference unless
:attr:`AudioCapabilities.prefer_offer_order` says to take the offerer's first one we support.

Errors::

    SipError
    ├── SipParseError
    │   └── NegotiationError (so also ValueError)   the peer's offer or answer names nothing we can use:
    │                                                answer an offer with 488 Not Acceptable Here (the
    │                                                error carries the Warning header, RFC 3261 §21.4.26)
    └── OfferUsageError (also ValueError)           we were asked for something invalid (an unknown codec,
                                                     a port out of range, an unsupported ptime)

A session description that is not well formed is :class:`pbx.sip.sdp.SdpError` (400), raised by
:func:`pbx.sip.sdp.parse` before these functions run.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

from pbx.sip.errors import SipError, SipParseError
from pbx.sip.sdp import DIRECTIONS, Connection, MediaDescription, Origin, RtpMap, SessionDescription, Timing

__all__ = [
    "CODECS",
    "PTIMES",
    "AudioCapabilities",
    "Codec",
    "Negotiated",
    "NegotiationError",
    "OfferUsageError",
    "accept_answer",
    "answer_offer",
    "build_offer",
]

PROFILE = "RTP/AVP"
#: the packet times the engine sends (ms)
PTIMES = (10, 20, 30, 40, 60)
DTMF_EVENTS = "0-16"
WARN_AGENT = "pypbx"


class NegotiationError(SipParseError):
    """The peer's offer or answer has nothing we can use: 488 Not Acceptable Here, with a Warning."""

    def __init__(self, message: str, warning: int = 305) -> None:
        text = {302: "Incompatible transport protocol", 304: "Media type not available",
                305: "Incompatible media format"}.get(warning, "Incompatible media format")
        super().__init__(message, 488, "Not Acceptable Here", [("Warning", f'{warning} {WARN_AGENT} "{text}"')])
        self.warning = warning


class OfferUsageError(SipError, ValueError):
    """We were asked to build an offer or answer from invalid values."""


@dataclass(frozen=True, slots=True)
class Codec:
    """An engine codec as SDP names it. ``payload_type`` is the static one, or the dynamic one we offer."""

    name: str
    encoding: str
    payload_type: int
    clock_rate: int
    sample_rate: int
    channels: int = 1
    fmtp: str | None = None

    @property
    def rtpmap(self) -> RtpMap:
        return RtpMap(self.encoding, self.clock_rate, self.channels)


CODECS: types.MappingProxyType[str, Codec] = types.MappingProxyType({
    "pcmu": Codec("pcmu", "PCMU", 0, 8000, 8000),
    "pcma": Codec("pcma", "PCMA", 8, 8000, 8000),
    "g722": Codec("g722", "G722", 9, 8000, 16000),
    "opus": Codec("opus", "opus", 111, 48000, 48000, 2, "useinbandfec=1"),
})
# the payload types we offer telephone-event with, by clock rate
_DTMF_PAYLOAD_TYPES = types.MappingProxyType({8000: 101, 48000: 110})
# RFC 3551 §6: the static audio payload types, to read offers that leave out a=rtpmap
_STATIC = types.MappingProxyType({
    0: RtpMap("PCMU", 8000), 3: RtpMap("GSM", 8000), 4: RtpMap("G723", 8000), 5: RtpMap("DVI4", 8000),
    6: RtpMap("DVI4", 16000), 7: RtpMap("LPC", 8000), 8: RtpMap("PCMA", 8000), 9: RtpMap("G722", 8000),
    10: RtpMap("L16", 44100, 2), 11: RtpMap("L16", 44100), 12: RtpMap("QCELP", 8000), 13: RtpMap("CN", 8000),
    14: RtpMap("MPA", 90000), 15: RtpMap("G728", 8000), 16: RtpMap("DVI4", 11025), 17: RtpMap("DVI4", 22050),
    18: RtpMap("G729", 8000),
})
_INVERT = types.MappingProxyType(
    {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"})


@dataclass(frozen=True, slots=True)
class AudioCapabilities:
    """What we take: engine codecs in order of preference, telephone-event or not, the packet time we want
    to receive (``a=ptime``)."""

    codecs: tuple[str, ...] = ("pcmu", "pcma", "g722", "opus")
    dtmf: bool = True
    ptime: int = 20
    prefer_offer_order: bool = False

    def __post_init__(self) -> None:
        if not self.codecs:
            raise OfferUsageError("no codecs")
        for i, name in enumerate(self.codecs):
            if name not in CODECS:
                raise OfferUsageError(f"unknown codec {name!r} (pcmu, pcma, g722 or opus)")
            if name in self.codecs[:i]:
                raise OfferUsageError(f"codec {name!r} is listed twice")
        if self.ptime not in PTIMES:
            raise OfferUsageError(f"ptime must be 10, 20, 30, 40 or 60 ms, got {self.ptime}")


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The audio stream both sides agreed on, as seen by us.

    ``payload_type`` and ``dtmf_payload_type`` (-1: no telephone-event) are the numbers to send with;
    ``clock_rate`` is the RTP clock, ``sample_rate`` the audio's (16000 for g722 on an 8000 clock);
    ``channels`` is the rtpmap's (2 for opus). ``ptime`` is the packet time to send with. ``address``,
    ``port`` and ``rtcp_port`` are the peer's (RTCP on the RTP port with rtcp-mux, ``a=rtcp`` when given, else
    the RTP port + 1). ``direction`` is ours: ``sendrecv``, ``sendonly`` (we send, the peer does not),
    ``recvonly`` or ``inactive``. ``on_hold`` is the peer's hold: it said ``sendonly`` or ``inactive``, or gave
    ``c=0.0.0.0`` (RFC 3264 §8.4), so no RTP (or only music) is to be expected from it.
    """

    codec: str
    payload_type: int
    clock_rate: int
    sample_rate: int
    channels: int
    dtmf_payload_type: int
    ptime: int
    address: str
    port: int
    rtcp_port: int
    direction: str
    on_hold: bool
    ipv6: bool

    @property
    def sending(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receiving(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


# -- helpers ----------------------------------------------------------------------------------------------------
def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise OfferUsageError(f"direction must be sendrecv, sendonly, recvonly or inactive, got {direction!r}")


def _combine(a: str, b: str) -> str:
    """The direction both ``a`` and ``b`` allow."""
    send = a in ("sendrecv", "sendonly") and b in ("sendrecv", "sendonly")
    recv = a in ("sendrecv", "recvonly") and b in ("sendrecv", "recvonly")
    return "sendrecv" if send and recv else "sendonly" if send else "recvonly" if recv else "inactive"


def _connection(address: str) -> Connection:
    if not address or any(c.isspace() for c in address):
        raise OfferUsageError(f"bad address {address!r}")
    return Connection("IP6" if ":" in address else "IP4", address)


def _session(address: str, session_id: int, version: int) -> SessionDescription:
    if session_id < 0 or version < 0:
        raise OfferUsageError(f"session id and version must not be negative, got {session_id} and {version}")
    connection = _connection(address)
    origin = Origin("-", session_id, version, "IN", connection.addrtype, address)
    return SessionDescription(origin, "-", connection, [Timing()])


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise OfferUsageError(f"port must be 1 to 65535, got {port}")


def _formats(media: MediaDescription) -> list[tuple[int, RtpMap | None]]:
    """The payload types of ``media`` with what they carry (None: a dynamic one without a=rtpmap)."""
    rtpmap = media.rtpmap
    return [(pt, rtpmap.get(pt) or _STATIC.get(pt)) for pt in media.payload_types]


def _codec(rtpmap: RtpMap | None) -> Codec | None:
    if rtpmap is None:
        return None
    for codec in CODECS.values():
        if rtpmap.encoding.lower() == codec.encoding.lower() and rtpmap.clock_rate == codec.clock_rate:
            return codec
    return None


def _is_dtmf(rtpmap: RtpMap | None, clock_rate: int) -> bool:
    return rtpmap is not None and rtpmap.encoding.lower() == "telephone-event" and rtpmap.clock_rate == clock_rate


def _names(formats: list[tuple[int, RtpMap | None]]) -> str:
    return ", ".join(str(rtpmap) if rtpmap is not None else str(pt) for pt, rtpmap in formats) or "nothing"


def _send_ptime(ptime: int | None, maxptime: int | None, default: int) -> int:
    """The largest packet time the engine has that is at most the peer's ptime (ours if it gave none) and its
    maxptime."""
    target = ptime if ptime is not None else default
    if maxptime is not None:
        target = min(target, maxptime)
    fitting = [p for p in PTIMES if p <= target]
    return fitting[-1] if fitting else PTIMES[0]


def _usable(media: MediaDescription) -> bool:
    return media.media == "audio" and media.port != 0 and media.proto.upper() == PROFILE


def _audio_lines(codecs: list[tuple[Codec, int]], dtmf: list[tuple[int, int]], port: int, ptime: int,
                 direction: str, profile: str = PROFILE) -> MediaDescription:
    formats: list[int | str] = [*(pt for _, pt in codecs), *(pt for pt, _ in dtmf)]
    attributes: list[tuple[str, str | None]] = []
    for codec, pt in codecs:
        attributes.append(("rtpmap", f"{pt} {codec.rtpmap}"))
        if codec.fmtp is not None:
            attributes.append(("fmtp", f"{pt} {codec.fmtp}"))
    for pt, clock in dtmf:
        attributes.append(("rtpmap", f"{pt} telephone-event/{clock}"))
        attributes.append(("fmtp", f"{pt} {DTMF_EVENTS}"))
    attributes.append(("ptime", str(ptime)))
    attributes.append((direction, None))
    return MediaDescription("audio", port, profile, formats, attributes=attributes)


def _negotiated(codec: Codec, pt: int, dtmf_pt: int, session: SessionDescription, media: MediaDescription,
                our_direction: str, default_ptime: int) -> Negotiated:
    connection = session.connection_of(media)
    if connection is None:
        raise NegotiationError("the audio stream has no connection address", 304)
    remote = session.direction_of(media)
    if media.rtcp_mux:
        rtcp = media.port
    else:
        rtcp = media.rtcp_port if media.rtcp_port is not None else min(media.port + 1, 65535)
    return Negotiated(
        codec=codec.name, payload_type=pt, clock_rate=codec.clock_rate, sample_rate=codec.sample_rate,
        channels=codec.channels, dtmf_payload_type=dtmf_pt,
        ptime=_send_ptime(media.ptime, media.maxptime, default_ptime),
        address=connection.address, port=media.port, rtcp_port=rtcp,
        direction=_combine(_INVERT[remote], our_direction),
        on_hold=remote in ("sendonly", "inactive") or connection.unspecified, ipv6=connection.ipv6)


# -- offer, answer ----------------------------------------------------------------------------------------------
def build_offer(caps: AudioCapabilities, address: str, port: int, session_id: int, version: int,
                direction: str = "sendrecv") -> SessionDescription:
    """Our offer: one audio stream at ``address``:``port`` (``IN IP6`` when the address has a colon) with
    every codec of ``caps`` in order, telephone-event at 8000 (and 48000 with opus) when ``caps.dtmf``.
    A re-offer is built the same way with ``version`` incremented; ``direction`` ``sendonly`` or
    ``inactive`` puts the peer on hold, ``sendrecv`` takes it off."""
    _check_port(port)
    _check_direction(direction)
    session = _session(address, session_id, version)
    codecs = [CODECS[name] for name in caps.codecs]
    dtmf = []
    if caps.dtmf:
        clocks = {c.clock_rate for c in codecs}
        dtmf = [(pt, clock) for clock, pt in _DTMF_PAYLOAD_TYPES.items() if clock in clocks]
    session.media.append(_audio_lines([(c, c.payload_type) for c in codecs], dtmf, port, caps.ptime, direction))
    return session


def _pick(media: MediaDescription, caps: AudioCapabilities) -> tuple[Codec, int, int] | None:
    """The codec to answer ``media`` with, its payload type and telephone-event's (-1 if none)."""
    formats = _formats(media)
    candidates: list[tuple[Codec, int]] = []
    for pt, rtpmap in formats:
        codec = _codec(rtpmap)
        if codec is not None and codec.name in caps.codecs and all(c is not codec for c, _ in candidates):
            candidates.append((codec, pt))
    if not candidates:
        return None
    if not caps.prefer_offer_order:
        candidates.sort(key=lambda c: caps.codecs.index(c[0].name))
    codec, pt = candidates[0]
    dtmf = -1
    if caps.dtmf:
        dtmf = next((p for p, rtpmap in formats if _is_dtmf(rtpmap, codec.clock_rate)), -1)
    return codec, pt, dtmf


def answer_offer(offer: SessionDescription, caps: AudioCapabilities, address: str, port: int, session_id: int,
                 version: int, direction: str = "sendrecv", *,
                 profile: str = PROFILE) -> tuple[SessionDescription, Negotiated]:
    """Our answer to ``offer`` and the stream it sets up. ``direction`` limits ours (``sendonly`` or
    ``inactive`` while we hold the call); ``profile`` is the transport we take (``UDP/TLS/RTP/SAVPF`` for
    WebRTC). Raises :class:`NegotiationError` (488) when no audio stream has a codec we take."""
    _check_port(port)
    _check_direction(direction)
    answer = _session(address, session_id, version)
    chosen: tuple[int, Codec, int, int] | None = None
    problem: NegotiationError | None = None
    for index, media in enumerate(offer.media):
        if chosen is None and media.media == "audio" and media.port != 0:
            if media.proto.upper() != profile:
                problem = problem or NegotiationError(
                    f"the audio stream's profile is {media.proto}, we take {profile}", 302)
            else:
                pick = _pick(media, caps)
                if pick is not None:
                    chosen = (index, *pick)
                    continue
                problem = problem or NegotiationError(
                    f"the audio stream offers {_names(_formats(media))}; we take "
                    + ", ".join(str(CODECS[c].rtpmap) for c in caps.codecs))
        answer.media.append(MediaDescription(media.media, 0, media.proto, media.formats[:1] or [0]))
    if chosen is None:
        raise problem or NegotiationError("the offer has no audio stream", 304)
    index, codec, pt, dtmf_pt = chosen
    media = offer.media[index]
    negotiated = _negotiated(codec, pt, dtmf_pt, offer, media, direction, caps.ptime)
    dtmf = [(dtmf_pt, codec.clock_rate)] if dtmf_pt >= 0 else []
    answer.media.insert(index, _audio_lines([(codec, pt)], dtmf, port, caps.ptime, negotiated.direction, profile))
    return answer, negotiated


def offer_is_ipv6(offer: SessionDescription) -> bool:
    """Whether the offer's audio stream is reached over IPv6 (``c=IN IP6``): our answer and RTP must be too."""
    media = next((m for m in offer.media if _usable(m)), None)
    connection = offer.connection_of(media) if media is not None else offer.connection
    return connection is not None and connection.ipv6


def accept_answer(offer_we_sent: SessionDescription, answer: SessionDescription) -> Negotiated:
    """The stream set up by ``answer`` to our offer ``offer_we_sent``. The answer's payload types are the ones
    to send with (RFC 4317 §2.3: it may renumber a dynamic codec). Raises :class:`NegotiationError` when the
    answer does not fit the offer or refuses the audio stream."""
    index = next((i for i, m in enumerate(offer_we_sent.media) if _usable(m)), None)
    if index is None:
        raise OfferUsageError("our offer has no audio stream")
    if len(answer.media) != len(offer_we_sent.media):
        raise NegotiationError(f"the answer has {len(answer.media)} media descriptions, the offer had "
                               f"{len(offer_we_sent.media)}")
    ours, theirs = offer_we_sent.media[index], answer.media[index]
    if theirs.media != ours.media:
        raise NegotiationError(f"the answer's media description {index + 1} is {theirs.media}, the offer's is "
                               f"{ours.media}", 304)
    if theirs.port == 0:
        raise NegotiationError("the answer refused the audio stream (port 0)", 304)
    if theirs.proto.upper() != ours.proto.upper():
        raise NegotiationError(f"the answer's audio profile is {theirs.proto}, the offer's is {ours.proto}", 302)
    offered = [_codec(rtpmap) for _, rtpmap in _formats(ours)]
    offered_dtmf = {r.clock_rate for _, r in _formats(ours) if r is not None and _is_dtmf(r, r.clock_rate)}
    formats = _formats(theirs)
    pick = next(((codec, pt) for pt, codec in ((pt, _codec(r)) for pt, r in formats)
                 if codec is not None and codec in offered), None)
    if pick is None:
        raise NegotiationError(f"the answer has no codec we offered (it has {_names(formats)})")
    codec, pt = pick
    dtmf_pt = -1
    if codec.clock_rate in offered_dtmf:
        dtmf_pt = next((p for p, rtpmap in formats if _is_dtmf(rtpmap, codec.clock_rate)), -1)
    default_ptime = ours.ptime if ours.ptime is not None else 20
    return _negotiated(codec, pt, dtmf_pt, answer, theirs, offer_we_sent.direction_of(ours), default_ptime)
