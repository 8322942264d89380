"""The ICE-lite agent with explicit time: the browser's checks as it sends them, answered or refused."""

from __future__ import annotations

import asyncio
import os
import struct
import time

import aioice
import aioice.ice
import pytest

from pbx.webrtc import stun
from pbx.webrtc.ice import CONSENT_TIMEOUT_S, IceCredentials, IceLite

OURS = IceCredentials("srvUfrag", "serverpasswordserverpass")
THEIRS = IceCredentials("brwU", "browserpasswordbrowserpw")
PEER = ("127.0.0.1", 50000)


def check(*, username: str = f"{OURS.ufrag}:{THEIRS.ufrag}", pwd: str = OURS.pwd, nominate: bool = False,
          controlled: bool = False, integrity: bool = True, method: int = stun.BINDING) -> bytes:
    """A connectivity check as a controlling browser sends it (RFC 8445 §7.2.2)."""
    attributes = [(stun.USERNAME, username.encode()), (stun.PRIORITY, struct.pack("!I", 0x6E0001FF)),
                  (stun.ICE_CONTROLLED if controlled else stun.ICE_CONTROLLING, os.urandom(8))]
    if nominate:
        attributes.append((stun.USE_CANDIDATE, b""))
    message = stun.StunMessage(method, stun.REQUEST, os.urandom(12), attributes)
    return stun.serialize(message, integrity_key=pwd.encode() if integrity else None)


def answer(agent: IceLite, data: bytes, now: float = 0.0, addr: tuple[str, int] = PEER) -> stun.StunMessage:
    response = agent.receive(data, addr, now)
    assert response is not None
    assert stun.check_fingerprint(response)
    message = stun.parse(response)
    assert message.transaction_id == stun.parse(data).transaction_id
    return message


def test_a_valid_check_is_answered_with_the_peer_s_address_under_our_password() -> None:
    agent = IceLite(OURS, THEIRS)
    request = check()
    response = agent.receive(request, PEER, 0.0)
    assert response is not None and stun.check_integrity(response, OURS.pwd.encode())
    message = stun.parse(response)
    assert message.klass == stun.SUCCESS
    value = message.get(stun.XOR_MAPPED_ADDRESS)
    assert value is not None and stun.read_xor_address(value, message.transaction_id) == PEER
    assert agent.validated == [PEER] and agent.selected is None and agent.destination == PEER


def test_use_candidate_selects_the_pair_and_consent_keeps_it() -> None:
    agent = IceLite(OURS, THEIRS)
    answer(agent, check(nominate=True), 1.0)
    assert agent.selected == PEER and agent.get_timer() == 1.0 + CONSENT_TIMEOUT_S
    answer(agent, check(), 20.0)                         # a consent check (no USE-CANDIDATE) refreshes it
    assert agent.get_timer() == 20.0 + CONSENT_TIMEOUT_S
    answer(agent, check(), 40.0, addr=("127.0.0.1", 50002))   # another address: not the selected pair's consent
    agent.handle_timer(49.9)
    assert not agent.lost
    agent.handle_timer(50.0)
    assert agent.lost and agent.get_timer() is None


@pytest.mark.parametrize(("request_bytes", "code"), [
    (check(username=f"other:{THEIRS.ufrag}"), 401),          # not our ufrag
    (check(username=f"{OURS.ufrag}:other"), 401),            # not the peer the offer named
    (check(username=OURS.ufrag), 401),                       # no colon
    (check(pwd="a wrong password, 22+ chars"), 401),
    (check(integrity=False), 400),
    (check(controlled=True), 487),                           # both controlled: the peer must switch
    (check(method=0x003), 400),                              # not a Binding request
])
def test_bad_checks_get_the_error_rfc_8445_names(request_bytes: bytes, code: int) -> None:
    agent = IceLite(OURS, THEIRS)
    message = answer(agent, request_bytes)
    assert message.klass == stun.ERROR
    value = message.get(stun.ERROR_CODE)
    assert value is not None and stun.read_error_code(value)[0] == code
    assert agent.validated == [] and agent.refused == 1


def test_responses_indications_bad_fingerprints_and_garbage_are_dropped() -> None:
    agent = IceLite(OURS, THEIRS)
    good = check()
    response = agent.receive(good, PEER, 0.0)
    assert response is not None
    indication = bytearray(good)
    indication[1] = 0x11                                      # Binding indication (a keepalive)
    broken = bytearray(good)
    broken[-1] ^= 0xFF                                        # FINGERPRINT no longer matches
    for data in (response, bytes(indication), bytes(broken), b"\x16\xfe\xfd garbage", b""):
        assert agent.receive(data, PEER, 0.0) is None


def test_without_the_remote_ufrag_any_sender_part_is_taken() -> None:
    agent = IceLite(OURS)
    assert answer(agent, check(username=f"{OURS.ufrag}:whoever")).klass == stun.SUCCESS


def test_generated_credentials_are_long_enough_and_differ() -> None:
    a, b = IceCredentials.generate(), IceCredentials.generate()
    assert len(a.ufrag) >= 4 and len(a.pwd) >= 22 and a != b


# -- against a real full agent ----------------------------------------------------------------------------
class LiteEndpoint(asyncio.DatagramProtocol):
    """Our agent on a loopback UDP socket: STUN to the agent, anything else echoed to the selected pair."""

    def __init__(self, agent: IceLite) -> None:
        self.agent = agent
        self.transport: asyncio.DatagramTransport | None = None
        self.media: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if stun.is_stun(data):
            response = self.agent.receive(data, addr, time.monotonic())
            if response is not None:
                self.transport.sendto(response, addr)
        elif self.agent.destination is not None:
            self.media.append(data)
            self.transport.sendto(data, self.agent.destination)


def test_aioice_as_the_controlling_full_agent_connects_and_nominates(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice (aiortc's ICE) checks our candidate, nominates it, and data flows both ways. The peer's own
    host candidates are limited to loopback (its library would gather every interface's)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])

    async def run() -> tuple[IceLite, bytes, LiteEndpoint]:
        agent = IceLite(OURS)
        transport, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: LiteEndpoint(agent), local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        peer = aioice.Connection(ice_controlling=True)
        peer.remote_is_lite = True
        try:
            await peer.gather_candidates()
            agent.remote = IceCredentials(peer.local_username, peer.local_password)
            peer.remote_username, peer.remote_password = OURS.ufrag, OURS.pwd
            await peer.add_remote_candidate(aioice.Candidate(
                foundation="1", component=1, transport="udp", priority=2130706431, host="127.0.0.1", port=port,
                type="host"))
            await peer.add_remote_candidate(None)
            await asyncio.wait_for(peer.connect(), 10)
            await peer.send(b"hello over the nominated pair")
            echoed = await asyncio.wait_for(peer.recv(), 5)
            return agent, echoed, endpoint
        finally:
            await peer.close()
            transport.close()

    agent, echoed, endpoint = asyncio.run(run())
    assert echoed == b"hello over the nominated pair" and endpoint.media == [echoed]
    assert agent.selected is not None and agent.selected[0] == "127.0.0.1" and agent.checks >= 1
