"""Fuzz target: a browser's SDP offer (``invite.option.offer`` of a WebRTC call), read and answered.

The path (pbx/server/webrtctransport.py ``_connect``): :func:`pbx.webrtc.offer.read_offer` on the text the
client sent, then :func:`~pbx.webrtc.offer.answer` with our ICE credentials, fingerprint and one host
candidate, then a :class:`~pbx.webrtc.dtls.DtlsEndpoint` for the offer's ``a=fingerprint``.

Documented errors: ``read_offer`` raises only :class:`~pbx.webrtc.offer.WebRtcOfferError` (a ValueError,
"a missing or malformed piece ... saying which"); ``answer`` raises
:class:`~pbx.sip.offer.NegotiationError` when the audio section offers no codec we take (and
WebRtcOfferError); ``DtlsEndpoint`` raises :class:`~pbx.webrtc.dtls.DtlsError` for a fingerprint it
cannot check. This target catches exactly those.

The offer arrives in a JSON string, so it is text: the input is decoded as UTF-8 with replacement (the
command decoder refuses unpaired surrogates before an offer gets here).

Invariant checked besides "no other exception": our answer serialises and parses back equal.

Run: ``.venv/bin/python fuzz/webrtc_offer.py -max_total_time=60 <work dir> fuzz/corpus/webrtc_offer``
"""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["pbx"]):
    from pbx.sip import sdp
    from pbx.sip.offer import AudioCapabilities, NegotiationError
    from pbx.webrtc.dtls import Certificate, DtlsEndpoint, DtlsError
    from pbx.webrtc.ice import IceCredentials
    from pbx.webrtc.offer import WEBRTC_CODECS, Candidate, WebRtcOfferError, answer, read_offer

from harness import main

CAPS = AudioCapabilities(codecs=WEBRTC_CODECS)
OURS = IceCredentials("fuzzfuzz", "fuzzfuzzfuzzfuzzfuzzfuzz")
CERTIFICATE = Certificate()
CANDIDATES = [Candidate("127.0.0.1", 40000)]


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        offer = read_offer(text)
    except WebRtcOfferError:
        return
    try:
        description, _, server = answer(offer, CAPS, OURS, CERTIFICATE.fingerprint, CANDIDATES, 1)
    except (NegotiationError, WebRtcOfferError):
        return
    assert sdp.parse(description.serialize()) == description
    with contextlib.suppress(DtlsError):
        DtlsEndpoint(CERTIFICATE, offer.fingerprint, server=server)


if __name__ == "__main__":
    main(test_one_input)
