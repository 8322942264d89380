"""Pure-Python ITU-T G.722 at 64 kbit/s (mode 1): the test oracle for ``pbx.core.g722``.

A straight, slow transcription of the Recommendation's block diagram, one
function per block (QUANTL, INVQAL, LOGSCL, SCALEL, UPPOL2, ...), on 16-bit words
with the basic operators of the ITU-T reference code (``add``/``sub`` saturate to
16 bits, ``mult`` is a saturating Q15 product, ``limit`` clamps to 15 bits).  It
is written independently of the Cython kernel: the quantizer is a linear search,
the scale factor is computed by shifts of the ILB table, the inverse quantizer
tables are derived from the level tables and the delay lines shift every sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# QMF coefficients h(0)..h(23) (scaled by 2**13), shared by the analysis and synthesis filters.
QMF = (3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876,
       3876, 951, -805, -210, 362, 32, -156, 12, 53, -11, -11, 3)

# QUANTL: decision levels Q6(mil), mil = 1..29 (index 0 unused), and the 6-bit codes
# for a negative (ILN) or positive (ILP) difference falling in interval mil = 1..30.
Q6 = (0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714,
      786, 858, 940, 1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919)
ILN = (0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15,
       14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4)
ILP = (0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43,
       42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32)

# Output levels of the 4-bit (INVQAL) and 6-bit (INVQBL, mode 1) inverse quantizers,
# as magnitudes before the x8 scaling; RIL4 maps a 4-bit code to its level index.
OQ4 = (0, 150, 323, 530, 786, 1121, 1612, 2557)
OQ6 = (0, 17, 54, 91, 130, 170, 211, 254, 300, 347, 396, 447, 501, 558, 618, 682, 750,
       822, 899, 982, 1072, 1170, 1279, 1399, 1535, 1689, 1873, 2088, 2376, 2738, 3101)
RIL4 = (0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0)

# LOGSCL / LOGSCH log scale factor multipliers; SCALEL / SCALEH antilog table.
WL = (-60, -30, 58, 172, 334, 538, 1198, 3042)
WH = (0, -214, 798)
IH2 = (2, 1, 2, 1)                          # 2-bit code -> WH index
OQ2 = (0, 202, 926)                         # INVQAH magnitudes before x8
ILB = (2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656,
       2714, 2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520,
       3597, 3676, 3756, 3838, 3922, 4008)


# --- 16-bit basic operators ---------------------------------------------------------

def sat16(x: int) -> int:
    return max(-32768, min(32767, x))


def add(a: int, b: int) -> int:
    return sat16(a + b)


def sub(a: int, b: int) -> int:
    return sat16(a - b)


def mult(a: int, b: int) -> int:
    """Q15 product (a*b) >> 15, saturating (only -32768 * -32768 overflows)."""
    return sat16((a * b) >> 15)


def limit(x: int) -> int:
    """Block 6L/6H LIMIT: clamp to the 15-bit range of the sub-band signals."""
    return max(-16384, min(16383, x))


def sign_bit(x: int) -> int:
    """The sign bit of a 16-bit word (-1 negative, 0 otherwise), as ``x >> 15``."""
    return -1 if x < 0 else 0


# --- inverse quantizer tables, derived from the level tables ------------------------

def _qm4(code4: int) -> int:
    level = 8 * OQ4[RIL4[code4]]
    return -level if code4 < 8 else level


def _qm6(code6: int) -> int:
    if code6 < 4:                           # unused codes decode as the smallest negative level
        return -8 * OQ6[1]
    if code6 in ILN:
        return -8 * OQ6[ILN.index(code6)]
    return 8 * OQ6[ILP.index(code6)]


def _qm2(code2: int) -> int:
    level = 8 * OQ2[IH2[code2]]
    return -level if code2 < 2 else level


QM4 = tuple(_qm4(c) for c in range(16))
QM6 = tuple(_qm6(c) for c in range(64))
QM2 = tuple(_qm2(c) for c in range(4))


# --- the sub-band ADPCM blocks ------------------------------------------------------

@dataclass
class Band:
    """State of one sub-band ADPCM coder (names follow the Recommendation)."""

    det: int                                 # DETL / DETH quantizer scale factor
    nb: int = 0                              # NBL / NBH log scale factor
    s: int = 0                               # SL / SH predicted signal
    sz: int = 0                              # SZL / SZH zero-section prediction
    a: list[int] = field(default_factory=lambda: [0, 0, 0])      # AL1, AL2 at [1], [2]
    b: list[int] = field(default_factory=lambda: [0] * 7)        # BL1..BL6 at [1..6]
    d: list[int] = field(default_factory=lambda: [0] * 7)        # DLT delayed 1..6
    p: list[int] = field(default_factory=lambda: [0] * 3)        # PLT delayed 1, 2
    r: list[int] = field(default_factory=lambda: [0] * 3)        # RLT delayed 1, 2


def quantl(el: int, detl: int) -> int:
    """Block 1L QUANTL: 6-bit code of the lower-band difference signal."""
    wd = el if el >= 0 else -(el + 1)
    mil = 1
    while mil < 30 and wd >= mult(Q6[mil] * 8, detl):
        mil += 1
    return ILN[mil] if el < 0 else ILP[mil]


def quanth(eh: int, deth: int) -> int:
    """Block 1H QUANTH: 2-bit code of the higher-band difference signal."""
    wd = eh if eh >= 0 else -(eh + 1)
    mih = 2 if wd >= mult(564 * 8, deth) else 1
    if eh < 0:
        return (0, 1, 0)[mih]
    return (0, 3, 2)[mih]


def logscl(il: int, nbl: int) -> int:
    """Block 3L LOGSCL: update of the lower-band log scale factor."""
    nbpl = add(mult(nbl, 32512), WL[RIL4[il >> 2]])
    return max(0, min(18432, nbpl))


def logsch(ih: int, nbh: int) -> int:
    """Block 3H LOGSCH."""
    nbph = add(mult(nbh, 32512), WH[IH2[ih]])
    return max(0, min(22528, nbph))


def _antilog(nbp: int, bias: int) -> int:
    wd1 = (nbp >> 6) & 31
    shift = bias - (nbp >> 11)
    wd3 = ILB[wd1] >> shift if shift >= 0 else ILB[wd1] << -shift
    return wd3 << 2


def scalel(nbpl: int) -> int:
    """Block 3L SCALEL: DETL from NBPL."""
    return _antilog(nbpl, 8)


def scaleh(nbph: int) -> int:
    """Block 3H SCALEH: DETH from NBPH."""
    return _antilog(nbph, 10)


def adapt(band: Band, dlt: int) -> None:
    """Block 4: RECONS, PARREC, UPPOL2, UPPOL1, UPZERO, DELAYA, FILTEP, FILTEZ, PREDIC."""
    rlt = add(band.s, dlt)                             # RECONS
    plt = add(dlt, band.sz)                            # PARREC

    # UPPOL2
    sg0, sg1, sg2 = sign_bit(plt), sign_bit(band.p[1]), sign_bit(band.p[2])
    wd1 = sat16(band.a[1] * 4)
    wd2 = sub(0, wd1) if sg0 == sg1 else wd1
    wd2 >>= 7
    wd3 = 128 if sg0 == sg2 else -128
    apl2 = add(add(wd2, wd3), mult(band.a[2], 32512))
    apl2 = max(-12288, min(12288, apl2))

    # UPPOL1 (with the new APL2)
    wd1 = 192 if sg0 == sg1 else -192
    apl1 = add(wd1, mult(band.a[1], 32640))
    wd3 = sub(15360, apl2)
    if apl1 > wd3:
        apl1 = wd3
    elif apl1 < -wd3:
        apl1 = -wd3

    # UPZERO
    wd1 = 0 if dlt == 0 else 128
    sg0 = sign_bit(dlt)
    bp = [0] * 7
    for i in range(1, 7):
        wd2 = wd1 if sign_bit(band.d[i]) == sg0 else -wd1
        bp[i] = add(wd2, mult(band.b[i], 32640))

    # DELAYA
    band.d = [dlt, dlt, *band.d[1:6]]
    band.b = bp
    band.p = [plt, plt, band.p[1]]
    band.r = [rlt, rlt, band.r[1]]
    band.a = [0, apl1, apl2]

    # FILTEP
    spl = add(mult(band.a[1], add(band.r[1], band.r[1])),
              mult(band.a[2], add(band.r[2], band.r[2])))
    # FILTEZ: summed from the oldest tap, saturating at every step as the reference does
    szl = 0
    for i in range(6, 0, -1):
        szl = add(szl, mult(band.b[i], add(band.d[i], band.d[i])))
    band.sz = szl
    band.s = add(spl, szl)                             # PREDIC


# --- encoder and decoder ------------------------------------------------------------

class Encoder:
    """64 kbit/s G.722 encoder: two int16 samples in, one byte out."""

    def __init__(self) -> None:
        self.x = [0] * 24                    # analysis QMF delay line, x[0] newest
        self.low = Band(det=32)
        self.high = Band(det=8)

    def encode(self, pcm: Sequence[int] | np.ndarray) -> bytes:
        samples = [int(v) for v in pcm]
        if len(samples) % 2:
            raise ValueError("odd number of samples")
        out = bytearray()
        for j in range(0, len(samples), 2):
            self.x = [samples[j + 1], samples[j], *self.x[:22]]
            xa = sum(QMF[2 * i] * self.x[2 * i] for i in range(12))
            xb = sum(QMF[2 * i + 1] * self.x[2 * i + 1] for i in range(12))
            xl = limit((xa + xb) >> 14)
            xh = limit((xa - xb) >> 14)

            low = self.low
            el = sub(xl, low.s)                             # SUBTRA
            il = quantl(el, low.det)                        # QUANTL
            dlt = mult(low.det, QM4[il >> 2])               # INVQAL
            low.nb = logscl(il, low.nb)                     # LOGSCL
            low.det = scalel(low.nb)                        # SCALEL
            adapt(low, dlt)

            high = self.high
            eh = sub(xh, high.s)
            ih = quanth(eh, high.det)
            dh = mult(high.det, QM2[ih])                    # INVQAH
            high.nb = logsch(ih, high.nb)
            high.det = scaleh(high.nb)
            adapt(high, dh)

            out.append((ih << 6) | il)
        return bytes(out)


class Decoder:
    """64 kbit/s G.722 decoder: one byte in, two int16 samples out."""

    def __init__(self) -> None:
        self.xd = [0] * 12                   # synthesis QMF delay lines, [0] newest
        self.xs = [0] * 12
        self.low = Band(det=32)
        self.high = Band(det=8)

    def decode(self, data: bytes) -> np.ndarray:
        out: list[int] = []
        for code in data:
            il, ih = code & 0x3F, code >> 6

            low = self.low
            rl = limit(add(low.s, mult(low.det, QM6[il])))  # INVQBL, RECONS, LIMIT
            dlt = mult(low.det, QM4[il >> 2])
            low.nb = logscl(il, low.nb)
            low.det = scalel(low.nb)
            adapt(low, dlt)

            high = self.high
            dh = mult(high.det, QM2[ih])
            rh = limit(add(high.s, dh))
            high.nb = logsch(ih, high.nb)
            high.det = scaleh(high.nb)
            adapt(high, dh)

            self.xd = [sub(rl, rh), *self.xd[:11]]
            self.xs = [add(rl, rh), *self.xs[:11]]
            xout1 = sum(QMF[2 * i] * self.xd[i] for i in range(12))
            xout2 = sum(QMF[2 * i + 1] * self.xs[i] for i in range(12))
            out.append(sat16(xout1 >> 11))
            out.append(sat16(xout2 >> 11))
        return np.array(out, dtype=np.int16)


def encode(pcm: Sequence[int] | np.ndarray) -> bytes:
    return Encoder().encode(pcm)


def decode(data: bytes) -> np.ndarray:
    return Decoder().decode(data)
