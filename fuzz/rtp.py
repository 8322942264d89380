"""Fuzz target: an RTP datagram from a peer, through the Python-visible parsers of :mod:`pbx.core.rtp`.

The engine parses RTP in C (``rtp_parse``, no GIL); :func:`~pbx.core.rtp.parse_rtp` and
:func:`~pbx.core.rtp.parse_rtp_into` are thin wrappers over that same function, so fuzzing them fuzzes the
engine's parser. Also: RFC 8285 header extensions (:func:`~pbx.core.rtp.parse_header_extensions`), RFC 4733
telephone events (:func:`~pbx.core.rtp.parse_telephone_events`) in the payload, and the RFC 5761
demultiplexer (:func:`~pbx.core.rtp.is_rtcp`).

Documented errors (core/rtp.pyx, core/errors.py): "every parse error on peer bytes raises
:class:`pbx.core.errors.MalformedPacket`" (a ValueError); ``is_rtcp`` raises nothing. This target catches
exactly MalformedPacket.

The kernel is compiled Cython: atheris gets no coverage from it (that would need a clang build with
``-fsanitize=fuzzer-no-link``). The target's own functions are instrumented instead, so inputs that take a
different path through the checks below (an error, an extension, padding, events) are kept. And half of the
inputs are built with the structure of an RTP packet (version
2, CSRC count, X bit with an extension of some profile and length, P bit with a padding count), each field
taken from the fuzzer's bytes and the lengths sometimes made inconsistent, so every error branch and the
valid paths are reached without coverage guidance. The other half are the raw bytes.

Invariants checked besides "no other exception":
- ``parse_rtp`` and ``parse_rtp_into`` agree on every field, and the offsets and lengths they give add up to
  the datagram (header + extension + payload + padding);
- a parsed packet serialises and parses back equal;
- a telephone event round-trips through ``serialize``.

Run: ``.venv/bin/python fuzz/rtp.py -max_total_time=60 <work dir> fuzz/corpus/rtp``
"""

from __future__ import annotations

import atheris

from harness import main, use_core_build

use_core_build()        # PYPBX_FUZZ_CORE: an AddressSanitizer build of the kernels (docs/fuzzing.md)

with atheris.instrument_imports(include=["pbx"]):
    from pbx.core.errors import MalformedPacket
    from pbx.core.rtp import (
        RtpHeaderView,
        is_rtcp,
        parse_header_extensions,
        parse_rtp,
        parse_rtp_into,
        parse_telephone_events,
    )


PROFILES = (0xBEDE, 0x1000, 0x100F, 0x0000, 0xFFFF)


@atheris.instrument_func
def _structured(fdp: atheris.FuzzedDataProvider) -> bytes:
    """An RTP packet whose fields, lengths and flags come from the fuzzer, mostly consistent."""
    version = 2 if fdp.ConsumeIntInRange(0, 15) else fdp.ConsumeIntInRange(0, 3)
    padding = fdp.ConsumeBool()
    extension = fdp.ConsumeBool()
    cc = fdp.ConsumeIntInRange(0, 15)
    b0 = (version << 6) | (padding << 5) | (extension << 4) | cc
    out = bytearray([b0]) + fdp.ConsumeBytes(11).ljust(11, b"\0")
    out += fdp.ConsumeBytes(4 * cc) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60))
    if extension:
        profile = PROFILES[fdp.ConsumeIntInRange(0, len(PROFILES) - 1)]
        data = fdp.ConsumeBytes(4 * fdp.ConsumeIntInRange(0, 8))
        words = len(data) // 4 if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 0xFFFF)
        out += profile.to_bytes(2, "big") + words.to_bytes(2, "big") + data
    out += fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    if padding:
        count = fdp.ConsumeIntInRange(0, 8) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 255)
        out += bytes(max(count - 1, 0)) + bytes([count & 0xFF])
    return bytes(out)


@atheris.instrument_func
def _check(data: bytes) -> None:
    is_rtcp(data)
    try:
        packet = parse_rtp(data)
    except MalformedPacket as exc:
        try:
            parse_rtp_into(data, RtpHeaderView())
        except MalformedPacket as again:
            assert str(again) == str(exc), (again, exc)
        else:
            raise AssertionError("parse_rtp_into took what parse_rtp refused") from exc
        return
    view = RtpHeaderView()
    length = parse_rtp_into(data, view)
    assert (view.marker, view.payload_type, view.sequence, view.timestamp, view.ssrc, view.csrc,
            view.extension_profile, view.padding_length) == (
        packet.marker, packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc, packet.csrc,
        packet.extension_profile, packet.padding_length)
    assert length == view.payload_length == len(packet.payload)
    assert data[view.payload_offset:view.payload_offset + length] == packet.payload
    assert view.payload_offset + length + view.padding_length == len(data)
    if packet.extension_profile is not None:
        assert data[view.extension_offset:view.extension_offset + view.extension_length] == packet.extension
        assert view.extension_offset + view.extension_length == view.payload_offset
    assert parse_rtp(packet.serialize()) == packet
    if packet.extension_profile is not None:
        try:
            elements = parse_header_extensions(packet.extension_profile, packet.extension)
        except MalformedPacket:
            elements = []
        assert all(isinstance(i, int) and isinstance(v, bytes) for i, v in elements)
    try:
        events = parse_telephone_events(packet.payload)
    except MalformedPacket:
        events = []
    unreserved = bytes(b & 0xBF if i % 4 == 1 else b for i, b in enumerate(packet.payload))  # R bit ignored
    assert b"".join(e.serialize() for e in events) == (unreserved if events else b"")


@atheris.instrument_func
def test_one_input(data: bytes) -> None:
    if data[:1] == b"\x00":
        _check(_structured(atheris.FuzzedDataProvider(data[1:])))
    else:
        _check(data)


if __name__ == "__main__":
    main(test_one_input)
