"""DTLS-SRTP handshakes between two of our endpoints in memory: keys agree, fingerprints are enforced."""

from __future__ import annotations

import pytest

from pbx.webrtc.dtls import SRTP_PROFILES, Certificate, DtlsEndpoint, DtlsError, fingerprint_of


def shuttle(a: DtlsEndpoint, b: DtlsEndpoint, now: float = 0.0, rounds: int = 20) -> None:
    """Carry datagrams both ways until neither side has anything to say."""
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data in src.datagrams_to_send():
                moved = True
                dst.receive(data, now)
        if not moved:
            return


def pair() -> tuple[DtlsEndpoint, DtlsEndpoint, Certificate, Certificate]:
    ours, theirs = Certificate(), Certificate()
    server = DtlsEndpoint(ours, theirs.fingerprint, server=True)
    client = DtlsEndpoint(theirs, ours.fingerprint, server=False)
    return server, client, ours, theirs


def test_a_handshake_gives_both_sides_matching_srtp_keys() -> None:
    server, client, _, _ = pair()
    server.start(0.0)
    client.start(0.0)
    shuttle(server, client)
    assert server.connected and client.connected and not server.failed
    assert server.keys is not None and client.keys is not None
    assert server.keys.profile == client.keys.profile == SRTP_PROFILES[0]       # GCM, our first choice
    assert server.keys.local == client.keys.remote and server.keys.remote == client.keys.local
    assert len(server.keys.local) == 16 + 12 and server.keys.local != server.keys.remote
    assert server.get_timer() is None


def test_a_certificate_that_does_not_match_the_sdp_fingerprint_fails_the_handshake() -> None:
    ours, theirs, stranger = Certificate(), Certificate(), Certificate()
    server = DtlsEndpoint(ours, stranger.fingerprint, server=True)     # the SDP named someone else
    client = DtlsEndpoint(theirs, ours.fingerprint, server=False)
    server.start(0.0)
    client.start(0.0)
    shuttle(server, client)
    assert server.failed and not server.connected
    assert "does not match the fingerprint" in (server.error or "")


def test_close_notify_reaches_the_peer() -> None:
    server, client, _, _ = pair()
    server.start(0.0)
    client.start(0.0)
    shuttle(server, client)
    client.close()
    shuttle(server, client)
    assert server.closed


def test_garbage_before_and_after_the_handshake_does_not_raise() -> None:
    lonely = DtlsEndpoint(Certificate(), Certificate().fingerprint, server=True)
    lonely.start(0.0)
    lonely.receive(b"\x16\xfe\xfd" + b"\x00" * 50, 0.0)       # a broken record before any hello
    assert not lonely.connected
    server, client, _, _ = pair()
    server.start(0.0)
    client.start(0.0)
    shuttle(server, client)
    server.receive(b"\x17\xfe\xfd" + b"\xff" * 40, 1.0)       # a bogus record once connected: ignored
    assert server.connected and not server.closed


def test_an_unanswered_client_retransmits_and_then_gives_up() -> None:
    client = DtlsEndpoint(Certificate(), Certificate().fingerprint, server=False)
    client.start(0.0)
    first = client.datagrams_to_send()
    assert first and client.get_timer() is not None
    client.handle_timer(31.0)
    assert client.failed and "no DTLS handshake within 30 s" in (client.error or "")


def test_fingerprints_are_checked_for_their_algorithm() -> None:
    assert fingerprint_of(b"x", "SHA-256").count(":") == 31
    with pytest.raises(DtlsError):
        fingerprint_of(b"x", "md5")
    with pytest.raises(DtlsError):
        DtlsEndpoint(Certificate(), "nospace", server=True)
    assert Certificate().fingerprint.startswith("sha-256 ")
