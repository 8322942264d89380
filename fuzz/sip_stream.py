"""Fuzz target: SIP over a byte stream (TCP), framed by :class:`pbx.sip.stream.StreamParser`.

The input is split into reads at points the fuzzer chooses (a first byte saying how many cuts, then the
cuts), and fed to one parser read by read and to another all at once.

Documented errors (pbx/sip/stream.py): :meth:`~pbx.sip.stream.StreamParser.feed` raises only
:class:`~pbx.sip.errors.SipParseError` (MessageTooLarge for a stream past ``Limits.max_size``), and after
one it raises that same error on every later call. This target catches exactly that.

Invariants checked besides "no other exception":
- "a message split across any number of reads comes out the same as when it arrived whole": both parsers
  return the same messages, and either both end in an error of the same type or neither does;
- after an error (raised, or kept in ``error`` when messages came before it), the next ``feed`` raises it;
- ``buffered`` never exceeds what was fed.

Small limits (chosen by the fuzzer) reach the size checks with short inputs.

Run: ``.venv/bin/python fuzz/sip_stream.py -max_total_time=60 <work dir> fuzz/corpus/sip_stream``
"""

from __future__ import annotations

import itertools

import atheris

with atheris.instrument_imports(include=["pbx"]):
    from pbx.sip.errors import SipParseError
    from pbx.sip.message import DEFAULT_LIMITS, Limits, Message
    from pbx.sip.stream import StreamParser

from harness import main

SMALL = Limits(max_size=600, max_headers=8, max_uri=64)


def _feed_all(parser: StreamParser, reads: list[bytes]) -> tuple[list[Message], type[SipParseError] | None]:
    messages: list[Message] = []
    fed = 0
    for data in reads:
        fed += len(data)
        try:
            messages += parser.feed(data)
        except SipParseError as exc:
            assert parser.error is exc
        if parser.error is not None:
            try:
                parser.feed(b"\r\n")
            except SipParseError as again:
                assert again is parser.error, (again, parser.error)
            else:
                raise AssertionError("a failed stream parsed again")
            return messages, type(parser.error)
        assert parser.buffered <= fed
    return messages, None


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    limits = SMALL if data[0] & 1 else DEFAULT_LIMITS
    cuts = sorted({b % (len(data) - 1) for b in data[1:1 + (data[0] >> 1) % 8]})
    stream = data[1 + (data[0] >> 1) % 8:]
    bounds = [0, *(c for c in cuts if c < len(stream)), len(stream)]
    reads = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    whole = _feed_all(StreamParser(limits), [stream])
    split = _feed_all(StreamParser(limits), reads)
    assert whole == split, (whole, split)


if __name__ == "__main__":
    main(test_one_input)
