"""SIP timer values (RFC 3261 §17 and Table 4, with the L and M of RFC 6026).

One frozen :class:`TimerConfig` holds T1, T2, T4, D and the 100 (Trying) delay; the rest derive from them:

=========  ==============================  ===============================================
Timer      Value                           Meaning
=========  ==============================  ===============================================
T1         0.5 s                           RTT estimate
T2         4 s                             longest retransmit interval (non-INVITE, G)
T4         5 s                             longest time a message lingers in the network
A          T1, doubling (no cap)           INVITE retransmit, unreliable transports only
B          64*T1                           INVITE transaction timeout
D          32 s unreliable, 0 reliable     wait time for response retransmits
E          T1, doubling up to T2           non-INVITE retransmit, unreliable only
F          64*T1                           non-INVITE transaction timeout
G          T1, doubling up to T2           INVITE final response retransmit, unreliable only
H          64*T1                           wait time for ACK receipt
I          T4 unreliable, 0 reliable       wait time for ACK retransmits
J          64*T1 unreliable, 0 reliable    wait time for non-INVITE request retransmits
K          T4 unreliable, 0 reliable       wait time for response retransmits
L          64*T1                           wait time for accepted INVITE retransmits (6026)
M          64*T1                           wait time for 2xx retransmits (6026)
trying     0.2 s                           100 (Trying) if the TU has not answered (§17.2.1)
=========  ==============================  ===============================================

Times are seconds as floats, the unit of the ``now`` every sans-I/O method takes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """The base timer values; raises ``ValueError`` for values the RFC's rules cannot use."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0          # Timer D on unreliable transports: "at least 32 seconds" (§17.1.1.2)
    trying: float = 0.2      # §17.2.1: a 100 (Trying) unless the TU answers within 200 ms

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4", "d", "trying"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"timer {name} must be positive, not {value!r}")
        if self.t2 < self.t1:
            raise ValueError(f"timer t2 ({self.t2!r}) must not be shorter than t1 ({self.t1!r})")

    @property
    def b(self) -> float:
        return 64 * self.t1

    @property
    def f(self) -> float:
        return 64 * self.t1

    @property
    def h(self) -> float:
        return 64 * self.t1

    @property
    def j(self) -> float:
        """Timer J on unreliable transports (0 on reliable ones)."""
        return 64 * self.t1

    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name
        return 64 * self.t1

    @property
    def m(self) -> float:
        return 64 * self.t1
