"""Fuzz target: a STUN datagram on a WebRTC call's media port, answered by the ICE-lite agent.

The path (pbx/server/webrtctransport.py): a datagram that :func:`pbx.webrtc.stun.is_stun` picks out goes to
:meth:`pbx.webrtc.ice.IceLite.receive`, which parses it (:func:`pbx.webrtc.stun.parse`), checks FINGERPRINT
and MESSAGE-INTEGRITY and answers.

Documented errors: "``parse`` never raises anything but :class:`~pbx.webrtc.stun.StunError` for what a
peer sent" (pbx/webrtc/stun.py), and so do ``read_xor_address`` and ``read_error_code``; ``receive`` returns
the response or None and raises nothing. This target catches exactly StunError.

Half of the inputs (those starting with a zero byte) are, when they parse, signed again with our password
(MESSAGE-INTEGRITY) and a FINGERPRINT, and given a USERNAME that is ours or not: the fuzzer cannot compute
an HMAC, so without this it would never reach the agent past the 401.

Invariants checked besides "no other exception": a message that parses serialises and parses back with
the same method, class, transaction and attributes; what ``receive`` answers parses, carries our
transaction id and a correct FINGERPRINT.

Run: ``.venv/bin/python fuzz/stun.py -max_total_time=60 <work dir> fuzz/corpus/stun``
"""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["pbx"]):
    from pbx.webrtc import stun
    from pbx.webrtc.ice import IceCredentials, IceLite

from harness import main

OURS = IceCredentials("fuzzfuzz", "fuzzfuzzfuzzfuzzfuzzfuzz")
THEIRS = IceCredentials("peer", "peerpeerpeerpeerpeerpeer")
SOURCE = ("127.0.0.1", 50000)


def _signed(message: stun.StunMessage, ours: bool) -> bytes:
    """``message`` as the peer would send it: USERNAME (ours or a stranger's), integrity under our password."""
    kept = [(k, v) for k, v in message.attributes
            if k not in (stun.USERNAME, stun.MESSAGE_INTEGRITY, stun.FINGERPRINT)]
    username = f"{OURS.ufrag}:{THEIRS.ufrag}" if ours else "someone:else"
    signed = stun.StunMessage(message.method, message.klass, message.transaction_id,
                              [(stun.USERNAME, username.encode()), *kept])
    return stun.serialize(signed, integrity_key=OURS.pwd.encode())


def test_one_input(data: bytes) -> None:
    structured = data[:1] == b"\x00"
    if structured:
        data = data[2:]
    try:
        message = stun.parse(data)
    except stun.StunError:
        message = None
    if message is not None:
        again = stun.parse(stun.serialize(message, fingerprint=False))
        assert (again.method, again.klass, again.transaction_id, again.attributes) == (
            message.method, message.klass, message.transaction_id, message.attributes), (message, again)
        for kind, value in message.attributes:
            with contextlib.suppress(stun.StunError):
                if kind == stun.XOR_MAPPED_ADDRESS:
                    stun.read_xor_address(value, message.transaction_id)
                elif kind == stun.ERROR_CODE:
                    stun.read_error_code(value)
        if structured:
            data = _signed(message, ours=len(data) % 4 != 1)
    if not stun.is_stun(data) and not structured:
        return
    agent = IceLite(OURS, THEIRS)
    answer = agent.receive(data, SOURCE, 0.0)
    if answer is not None:
        response = stun.parse(answer)
        assert message is not None and response.transaction_id == message.transaction_id
        assert stun.check_fingerprint(answer)


if __name__ == "__main__":
    main(test_one_input)
