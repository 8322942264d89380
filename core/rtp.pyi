"""RTP (RFC 3550/3551), RTCP SR/RR/BYE and RFC 4733 telephone events (typed stub)."""

from collections.abc import Iterable
from typing import Final, TypeAlias

from typing_extensions import Buffer, disjoint_base

__all__ = [
    "RTCP_APP", "RTCP_BYE", "RTCP_RR", "RTCP_SDES", "RTCP_SR",
    "Bye", "ReceiverReport", "ReportBlock", "RtcpPacket", "RtcpUnknown", "RtpHeaderView", "RtpPacket",
    "SenderReport", "TelephoneEvent",
    "build_header_extensions", "build_rtcp", "build_rtp", "build_rtp_into",
    "build_telephone_event", "digit_event", "event_digit", "is_rtcp",
    "parse_header_extensions", "parse_rtcp", "parse_rtp", "parse_rtp_into",
    "parse_telephone_event", "parse_telephone_events",
]

RTCP_SR: Final[int]
RTCP_RR: Final[int]
RTCP_SDES: Final[int]
RTCP_BYE: Final[int]
RTCP_APP: Final[int]

# --- RTP -------------------------------------------------------------------

@disjoint_base
class RtpPacket:
    """One RTP packet; ``extension_profile`` is None when the X bit is clear."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...]
    extension_profile: int | None
    extension: bytes
    padding_length: int
    payload: bytes
    def __init__(
        self,
        payload_type: int = 0,
        sequence: int = 0,
        timestamp: int = 0,
        ssrc: int = 0,
        payload: Buffer = b"",
        *,
        marker: bool = False,
        csrc: Iterable[int] = (),
        extension_profile: int | None = None,
        extension: Buffer = b"",
        padding_length: int = 0,
    ) -> None: ...
    @property
    def version(self) -> int: ...
    @classmethod
    def parse(cls, data: Buffer) -> RtpPacket: ...
    def serialize(self) -> bytes: ...
    def serialize_into(self, out: Buffer) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...

@disjoint_base
class RtpHeaderView:
    """Header fields of the last packet given to :func:`parse_rtp_into` (read-only)."""

    @property
    def marker(self) -> bool: ...
    @property
    def payload_type(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def ssrc(self) -> int: ...
    @property
    def csrc(self) -> tuple[int, ...]: ...
    @property
    def extension_profile(self) -> int | None: ...
    @property
    def extension_offset(self) -> int: ...
    @property
    def extension_length(self) -> int: ...
    @property
    def padding_length(self) -> int: ...
    @property
    def payload_offset(self) -> int: ...
    @property
    def payload_length(self) -> int: ...

def parse_rtp(data: Buffer) -> RtpPacket: ...
def parse_rtp_into(data: Buffer, header: RtpHeaderView) -> int: ...
def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: Buffer,
    *,
    marker: bool = False,
    csrc: Iterable[int] = (),
    extension_profile: int | None = None,
    extension: Buffer = b"",
    padding_length: int = 0,
) -> bytes: ...
def build_rtp_into(
    out: Buffer,
    payload: Buffer,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    marker: bool = False,
) -> int: ...
def is_rtcp(data: Buffer) -> bool: ...
def parse_header_extensions(profile: int, data: Buffer) -> list[tuple[int, bytes]]: ...
def build_header_extensions(
    elements: Iterable[tuple[int, Buffer]], *, two_byte: bool = False
) -> tuple[int, bytes]: ...

# --- RTCP ------------------------------------------------------------------

@disjoint_base
class ReportBlock:
    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int
    def __init__(
        self,
        ssrc: int = 0,
        fraction_lost: int = 0,
        cumulative_lost: int = 0,
        highest_sequence: int = 0,
        jitter: int = 0,
        lsr: int = 0,
        dlsr: int = 0,
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...

@disjoint_base
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock]
    extension: bytes
    def __init__(
        self,
        ssrc: int = 0,
        ntp_timestamp: int = 0,
        rtp_timestamp: int = 0,
        packet_count: int = 0,
        octet_count: int = 0,
        reports: Iterable[ReportBlock] | None = None,
        extension: Buffer = b"",
    ) -> None: ...
    @property
    def packet_type(self) -> int: ...
    def serialize(self) -> bytes: ...
    def __eq__(self, other: object, /) -> bool: ...

@disjoint_base
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock]
    extension: bytes
    def __init__(
        self, ssrc: int = 0, reports: Iterable[ReportBlock] | None = None, extension: Buffer = b""
    ) -> None: ...
    @property
    def packet_type(self) -> int: ...
    def serialize(self) -> bytes: ...
    def __eq__(self, other: object, /) -> bool: ...

@disjoint_base
class Bye:
    sources: list[int]
    reason: bytes | None
    def __init__(self, sources: Iterable[int] = (), reason: Buffer | None = None) -> None: ...
    @property
    def packet_type(self) -> int: ...
    def serialize(self) -> bytes: ...
    def __eq__(self, other: object, /) -> bool: ...

@disjoint_base
class RtcpUnknown:
    packet_type: int
    count: int
    body: bytes
    def __init__(self, packet_type: int, count: int = 0, body: Buffer = b"") -> None: ...
    def serialize(self) -> bytes: ...
    def __eq__(self, other: object, /) -> bool: ...

RtcpPacket: TypeAlias = SenderReport | ReceiverReport | Bye | RtcpUnknown

def parse_rtcp(data: Buffer) -> list[RtcpPacket]: ...
def build_rtcp(packets: Iterable[RtcpPacket]) -> bytes: ...

# --- RFC 4733 --------------------------------------------------------------

@disjoint_base
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int
    def __init__(self, event: int = 0, end: bool = False, volume: int = 0, duration: int = 0) -> None: ...
    @property
    def digit(self) -> str | None: ...
    def serialize(self) -> bytes: ...
    def __eq__(self, other: object, /) -> bool: ...

def parse_telephone_event(payload: Buffer) -> TelephoneEvent: ...
def parse_telephone_events(payload: Buffer) -> list[TelephoneEvent]: ...
def build_telephone_event(event: int, end: bool = False, volume: int = 0, duration: int = 0) -> bytes: ...
def event_digit(event: int) -> str | None: ...
def digit_event(digit: str) -> int: ...
