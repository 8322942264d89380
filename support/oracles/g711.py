"""ITU-T G.711 as written in the G.191 reference code (g711.c), in plain Python.

A literal transcription of the reference algorithm, sample by sample, with its
segment searches: mu-law keeps the 14 most significant bits of the 16-bit input
(``x >> 2``), A-law the 13 most significant (the sign and ``x >> 4`` of the
magnitude); negative inputs are folded with the one's complement (``~x``), as
the reference does.  Slow and obviously correct; the Cython kernel must match it
bit for bit on every input.
"""

from __future__ import annotations


def ulaw_compress(x: int) -> int:
    """One 16-bit linear sample -> mu-law code (G.191 ulaw_compress)."""
    absno = ((~x if x < 0 else x) >> 2) + 33   # 33: offset between the A-law and mu-law thresholds
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:                                # segment search
        segno += 1
        i >>= 1
    high_nibble = 0x8 - segno
    low_nibble = 0xF - ((absno >> segno) & 0xF)
    code = (high_nibble << 4) | low_nibble
    if x >= 0:
        code |= 0x80
    return code


def ulaw_expand(code: int) -> int:
    """One mu-law code -> 16-bit linear sample (G.191 ulaw_expand)."""
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x7
    segment = exponent + 1
    mantissa &= 0xF
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def alaw_compress(x: int) -> int:
    """One 16-bit linear sample -> A-law code (G.191 alaw_compress)."""
    ix = (~x if x < 0 else x) >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:                      # segment search
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def alaw_expand(code: int) -> int:
    """One A-law code -> 16-bit linear sample (G.191 alaw_expand)."""
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0xF
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x8
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def ulaw_encode(pcm: list[int]) -> bytes:
    return bytes(ulaw_compress(x) for x in pcm)


def ulaw_decode(data: bytes) -> list[int]:
    return [ulaw_expand(c) for c in data]


def alaw_encode(pcm: list[int]) -> bytes:
    return bytes(alaw_compress(x) for x in pcm)


def alaw_decode(data: bytes) -> list[int]:
    return [alaw_expand(c) for c in data]
