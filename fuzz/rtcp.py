"""Fuzz target: an RTCP datagram (a compound packet) from a peer, through :func:`pbx.core.rtp.parse_rtcp`.

The engine reads RTCP in C (``rtcp_parse_header`` and the report readers, no GIL); ``parse_rtcp`` walks the
compound with the same functions and builds SenderReport, ReceiverReport, Bye or RtcpUnknown objects, so
fuzzing it fuzzes the engine's reader. :func:`~pbx.core.rtp.is_rtcp` (RFC 5761 demultiplexing) too.

Documented errors (core/rtp.pyx, core/errors.py): "MalformedPacket on bad input, including an empty
datagram" (a ValueError); ``is_rtcp`` raises nothing. This target catches exactly MalformedPacket.

As for fuzz/rtp.py, the Cython kernel gives atheris no coverage, so the target's own functions are
instrumented and half of the inputs are built with the structure of a compound packet: one to four packets
of type SR, RR, SDES, BYE, APP or another, each with a report count, a body of the length the count asks
for (or not), a length field that matches it (or not) and sometimes padding.

Invariant checked besides "no other exception": the packets parsed serialise (``build_rtcp``) and parse
back equal.

Run: ``.venv/bin/python fuzz/rtcp.py -max_total_time=60 <work dir> fuzz/corpus/rtcp``
"""

from __future__ import annotations

import atheris

from harness import main, use_core_build

use_core_build()        # PYPBX_FUZZ_CORE: an AddressSanitizer build of the kernels (docs/fuzzing.md)

with atheris.instrument_imports(include=["pbx"]):
    from pbx.core.errors import MalformedPacket
    from pbx.core.rtp import build_rtcp, is_rtcp, parse_rtcp


TYPES = (200, 201, 202, 203, 204, 205, 206, 0, 255)


@atheris.instrument_func
def _packet(fdp: atheris.FuzzedDataProvider) -> bytes:
    kind = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]
    count = fdp.ConsumeIntInRange(0, 31) if fdp.ConsumeIntInRange(0, 3) == 0 else fdp.ConsumeIntInRange(0, 3)
    need = {200: 24 + 24 * count, 201: 4 + 24 * count, 203: 4 * count}.get(kind, 4 * count)
    size = need + 4 * fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeIntInRange(0, 3) else fdp.ConsumeIntInRange(0, 400)
    body = bytearray(fdp.ConsumeBytes(size).ljust(size, b"\0"))
    padding = fdp.ConsumeIntInRange(0, 7) == 0
    if padding and body:
        body[-1] = fdp.ConsumeIntInRange(0, 255) if fdp.ConsumeBool() else min(len(body), 4)
    words = (len(body) + 3) // 4 if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 0xFFFF)
    body = body.ljust(4 * words, b"\0") if fdp.ConsumeBool() else body
    version = 2 if fdp.ConsumeIntInRange(0, 15) else fdp.ConsumeIntInRange(0, 3)
    head = bytes([(version << 6) | (padding << 5) | count, kind]) + words.to_bytes(2, "big")
    return head + bytes(body)


@atheris.instrument_func
def _check(data: bytes) -> None:
    is_rtcp(data)
    try:
        packets = parse_rtcp(data)
    except MalformedPacket:
        return
    assert packets
    assert parse_rtcp(build_rtcp(packets)) == packets


@atheris.instrument_func
def test_one_input(data: bytes) -> None:
    if data[:1] == b"\x00":
        fdp = atheris.FuzzedDataProvider(data[1:])
        _check(b"".join(_packet(fdp) for _ in range(fdp.ConsumeIntInRange(1, 4))))
    else:
        _check(data)


if __name__ == "__main__":
    main(test_one_input)
