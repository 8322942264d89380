"""Fuzz target: an SDP body from a SIP peer, parsed and negotiated as the SIP side does it.

The path (pbx/server/siptransport.py): :func:`pbx.sip.sdp.parse` on the body of an INVITE, re-INVITE or
answer; :func:`~pbx.sip.offer.offer_is_ipv6` and :func:`~pbx.sip.offer.answer_offer` for an offer,
:func:`~pbx.sip.offer.accept_answer` against our own offer for an answer.

Documented errors: ``parse`` raises only :class:`~pbx.sip.sdp.SdpError` (a SipParseError, so a ValueError:
400); ``answer_offer`` and ``accept_answer`` raise :class:`~pbx.sip.offer.NegotiationError` (488) for an
offer or answer they cannot take, and ``offer_is_ipv6`` raises nothing. "A parsed description never makes a
helper fail" (pbx/sip/sdp.py): the media helpers (``rtpmap``, ``fmtp``, ``ptime``, ``direction()``,
``rtcp_port`` ...) are called and may raise nothing. This target catches exactly those errors.

Invariants checked besides "no other exception":
- a parsed description serialises (no InvalidMessage) and parses back equal (the docstring's exact round
  trip, non-UTF-8 bytes included);
- our answer to an offer we accept serialises and parses back.

Run: ``.venv/bin/python fuzz/sdp.py -max_total_time=60 <work dir> fuzz/corpus/sdp``
"""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["pbx"]):
    from pbx.sip import sdp
    from pbx.sip.offer import (
        AudioCapabilities,
        NegotiationError,
        accept_answer,
        answer_offer,
        build_offer,
        offer_is_ipv6,
    )

from harness import main

CAPS = AudioCapabilities()
OUR_OFFER = build_offer(CAPS, "127.0.0.1", 40000, 1, 1)


def _helpers(description: sdp.SessionDescription) -> None:
    assert description.direction in (None, *sdp.DIRECTIONS)
    for media in description.media:
        _ = (media.payload_types, media.rtpmap, media.fmtp, media.ptime, media.maxptime, media.rtcp_port,
             media.rtcp_address, media.rtcp_mux, media.attribute("mid"), media.values("candidate"))
        assert media.direction() in sdp.DIRECTIONS
        assert description.direction_of(media) in sdp.DIRECTIONS
        description.connection_of(media)


def test_one_input(data: bytes) -> None:
    try:
        description = sdp.parse(data)
    except sdp.SdpError:
        return
    _helpers(description)
    again = sdp.parse(description.serialize())
    assert again == description, (description, again)
    offer_is_ipv6(description)
    try:
        answer, _ = answer_offer(description, CAPS, "127.0.0.1", 40000, 2, 1)
    except NegotiationError:
        pass
    else:
        assert sdp.parse(answer.serialize()) == answer
    with contextlib.suppress(NegotiationError):
        accept_answer(OUR_OFFER, description)


if __name__ == "__main__":
    main(test_one_input)
