"""``/call/webrtc``: a browser's call. ICE-lite, DTLS-SRTP and the SDP answer in Python, for the call's setup
and its consent checks only; the media on an engine UDP leg with SRTP in compiled code (no Python per packet).

=======================================  =================================================================
what happens                             the call hears
=======================================  =================================================================
``invite`` with ``option.offer``         ``answer`` with our SDP at once (ice-lite, our host candidate, our
                                         fingerprint); the leg's prompts wait until DTLS gives keys
the browser's checks, then DTLS          answered on the call's port; the keys go to the engine leg
no DTLS within ``handshakeTimeout``      ``hangup`` with reason ``handshake_timeout``
(default 30 s)
a bad or empty offer, no common codec    an ``error`` event; the call is NEW again (another ``invite`` may
                                         follow)
the browser closes (DTLS close_notify)   ``hangup`` ``remote_hangup``
no consent check for 30 s (RFC 7675)     ``hangup`` ``rtp_timeout``
``hangup``                               close_notify to the browser; the port is closed
=======================================  =================================================================

Why not aiortc for the media: measured here, an aiortc peer connection costs about 5 % of a core per
call with Opus both ways (its RTP, jitter buffer, codecs and SRTP all run Python per packet); a SIP
call on the engine costs 0.14 % (bench/RESULTS.md). aiortc stays the test peer.
"""

from __future__ import annotations

import logging
import time

from pbx.call.actions import Answer, Connect, Disconnect, Refer, Reject, Ring
from pbx.call.transport import TransportProfile
from pbx.core.srtp import SrtpSession
from pbx.errors import ProtocolError
from pbx.media.rtp_ports import PortsExhausted, RtpPortPool, RtpSockets
from pbx.protocol import CallOption, HangupReason, Initiator
from pbx.server.deadline import Deadline
from pbx.server.hostaddr import default_route_address
from pbx.server.media import CapacityError, EngineLeg, LegSink, MediaRunner
from pbx.server.siptransport import no_out
from pbx.server.transports import MEDIA_COMMANDS, CallHost, SignallingAction
from pbx.sip.offer import AudioCapabilities, NegotiationError
from pbx.webrtc import stun
from pbx.webrtc.config import WebRtcConfig
from pbx.webrtc.dtls import HANDSHAKE_GIVE_UP_S, Certificate, DtlsEndpoint, DtlsError
from pbx.webrtc.ice import IceCredentials, IceLite
from pbx.webrtc.offer import WEBRTC_CODECS, Candidate, WebRtcOfferError, answer, read_offer

log = logging.getLogger(__name__)

RTCP_INTERVAL_MS = 5_000.0


def _check_webrtc_option(command: str, option: CallOption) -> None:
    if "codec" in option.fields_set and option.codec.lower() not in WEBRTC_CODECS:
        raise ProtocolError(f"{command}.option.codec: {option.codec!r} is not a WebRTC codec; use opus, pcmu or pcma")


WEBRTC_PROFILE = TransportProfile(
    call_type="webrtc",
    carries=MEDIA_COMMANDS | {"invite", "refer", "dtmf", "addIceCandidate"},
    not_carried="{command} is not supported on /call/webrtc calls",
    check_option=_check_webrtc_option,
)


def webrtc_capabilities(option: CallOption) -> AudioCapabilities:
    """Opus first, unless the call named its codec."""
    chosen = option.codec.lower() if "codec" in option.fields_set else "opus"
    order = (chosen, *(c for c in WEBRTC_CODECS if c != chosen))
    return AudioCapabilities(codecs=order, dtmf=True)


class WebRtcNetwork:
    """The server's WebRTC side: its DTLS certificate, its host candidates and their ports."""

    def __init__(self, config: WebRtcConfig) -> None:
        self.config = config
        self.certificate = Certificate()
        low, high = config.rtp_ports
        self.pool4 = RtpPortPool(low, high, config.addr or "0.0.0.0")
        self.pool6 = RtpPortPool(low, high, config.addr6, ipv6=True) if config.addr6 else None
        self.candidate4 = config.external_ip if config.external_ip and ":" not in config.external_ip \
            else (config.addr or default_route_address(False))
        self.candidate6 = config.addr6

    def side(self, enable_ipv6: bool) -> tuple[str, RtpPortPool]:
        """Our host candidate's address and its ports, for a call that asked for IPv6 or not."""
        if enable_ipv6 and self.pool6 is not None:
            return self.candidate6, self.pool6
        return self.candidate4, self.pool4


class WebRtcTransport:
    profile = WEBRTC_PROFILE

    def __init__(self, host: CallHost, network: WebRtcNetwork, runner: MediaRunner) -> None:
        self.host = host
        self.network = network
        self.runner = runner
        self.sockets: RtpSockets | None = None
        self.pool: RtpPortPool | None = None
        self.ice: IceLite | None = None
        self.dtls: DtlsEndpoint | None = None
        self.leg: EngineLeg | None = None
        self._destination: tuple[str, int] | None = None
        self._handshake_by: float | None = None
        self._timer = Deadline(self._on_timer)
        self._ended = False

    def start(self) -> None:
        """Nothing to announce: the browser calls us with its offer."""

    def refers_itself(self) -> bool:
        return False

    def on_audio(self, data: bytes) -> None:
        self.host.call.refuse_audio("binary audio is only accepted on /call, not on webrtc calls", self.host.now_ms())
        self.host.flush()

    def carry_out(self, action: SignallingAction) -> None:
        if isinstance(action, Connect):
            self._connect(action.option)
        elif isinstance(action, Disconnect):
            self._close()
        elif isinstance(action, Answer | Ring | Reject | Refer):   # the profile refuses them: never asked
            log.error("the WebRTC transport was asked to %s", type(action).__name__)

    # -- the offer and our answer ----------------------------------------------------------------------------
    def _connect(self, option: CallOption) -> None:
        call, now = self.host.call, self.host.now_ms()
        try:
            offer = read_offer(option.offer)
        except WebRtcOfferError as exc:
            call.connect_failed("webrtc", str(exc), now)
            return
        address, pool = self.network.side(option.enable_ipv6)
        try:
            sockets = pool.allocate()
        except PortsExhausted as exc:
            call.connect_failed("media", f"cannot start the call's media: {exc}", now)
            return
        self.sockets, self.pool = sockets, pool
        ice = IceLite(IceCredentials.generate(), offer.ice)
        certificate = self.network.certificate
        try:
            description, negotiated, server = answer(offer, webrtc_capabilities(option), ice.local,
                                                     certificate.fingerprint, [Candidate(address, sockets.port)],
                                                     sockets.port * 65536 + 1)
            dtls = DtlsEndpoint(certificate, offer.fingerprint, server=server)
            sink = LegSink(self.host.media_event, no_out, self.host.asr_audio, control=self._control)
            self.leg = self.runner.add_leg(sink, "udp", negotiated.codec, now, payload_type=negotiated.payload_type,
                                           dtmf_payload_type=negotiated.dtmf_payload_type, ptime_ms=negotiated.ptime,
                                           fd=sockets.rtp.fileno(), control=True, rtcp_interval_ms=RTCP_INTERVAL_MS)
        except (NegotiationError, WebRtcOfferError, DtlsError) as exc:
            self._release_ports()
            call.connect_failed("webrtc", f"cannot answer the offer: {exc}", now)
            return
        except (CapacityError, ValueError) as exc:
            self._release_ports()
            call.connect_failed("media", f"cannot start the call's media: {exc}", now)
            return
        self.ice, self.dtls = ice, dtls
        clock = self._clock()
        dtls.start(clock)
        self._handshake_by = clock + (option.handshake_timeout or HANDSHAKE_GIVE_UP_S)
        call.answered(self.leg, description.serialize().decode(), now)
        self._arm()

    # -- STUN and DTLS from the engine leg (between media ticks) ---------------------------------------------
    def _control(self, addr: tuple[str, int], data: bytes) -> None:
        ice, dtls = self.ice, self.dtls
        if ice is None or dtls is None or self._ended:
            return
        now = self._clock()
        if stun.is_stun(data):
            response = ice.receive(data, addr, now)
            if response is not None:
                self._send(response, addr)
            self._follow_ice()
        else:
            dtls.receive(data, now)
            self._after_dtls()
        self._arm()
        self.host.flush()

    def _follow_ice(self) -> None:
        """The browser validated (or nominated) a pair: media and DTLS go there."""
        ice, dtls = self.ice, self.dtls
        destination = ice.destination if ice is not None else None
        if destination is None or destination == self._destination:
            return
        self._destination = destination
        if self.leg is not None:
            self.runner.engine.set_remote(self.leg.leg, destination)
        if dtls is not None:
            self._flush_dtls()

    def _after_dtls(self) -> None:
        dtls = self.dtls
        if dtls is None:
            return
        self._flush_dtls()
        if dtls.failed:
            self._end_with_error(f"the browser's DTLS handshake failed: {dtls.error}")
        elif dtls.closed:
            self._end(HangupReason.REMOTE_HANGUP, Initiator.CALLER)
        elif dtls.keys is not None and self.leg is not None and self._handshake_by is not None:
            self._handshake_by = None
            keys = dtls.keys
            self.runner.engine.set_srtp(self.leg.leg, SrtpSession(keys.profile.name, keys.local, True),
                                        SrtpSession(keys.profile.name, keys.remote, False))

    def _flush_dtls(self) -> None:
        dtls = self.dtls
        if dtls is None:
            return
        destination = self._destination
        for datagram in dtls.datagrams_to_send():
            if destination is not None:
                self._send(datagram, destination)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.sockets is None:
            return
        try:
            self.sockets.rtp.sendto(data, addr)
        except (BlockingIOError, OSError) as exc:        # a full buffer or an unreachable peer: checks retry
            log.debug("webrtc call %s: sending to %s failed: %s", self.host.call.id, addr, exc)

    # -- timers: consent, DTLS retransmission, the handshake deadline ------------------------------------------
    def _arm(self) -> None:
        if self._ended:
            self._timer.arm(None)
            return
        due = [t for t in (self.ice.get_timer() if self.ice else None, self.dtls.get_timer() if self.dtls else None,
                           self._handshake_by) if t is not None]
        self._timer.arm(min(due) if due else None)

    def _on_timer(self) -> None:
        now = self._clock()
        ice, dtls = self.ice, self.dtls
        if self._handshake_by is not None and now >= self._handshake_by:
            self._end(HangupReason.HANDSHAKE_TIMEOUT, Initiator.SYSTEM)
        elif ice is not None and dtls is not None:
            ice.handle_timer(now)
            dtls.handle_timer(now)
            self._flush_dtls()
            if ice.lost:
                self._end(HangupReason.RTP_TIMEOUT, Initiator.SYSTEM)
        self._arm()
        self.host.flush()

    # -- ending ----------------------------------------------------------------------------------------------
    def _end_with_error(self, message: str) -> None:
        self.host.call.report_error("webrtc", message)
        self._end(HangupReason.ERROR, Initiator.SYSTEM)

    def _end(self, reason: HangupReason, initiator: Initiator) -> None:
        if self._ended:
            return
        self._ended = True
        self.host.call.end(reason.value, initiator.value, self.host.now_ms())

    def _close(self) -> None:
        """The call ended: close_notify to the browser; the ports go once the core released the leg."""
        self._ended = True
        self._timer.arm(None)
        if self.dtls is not None:
            self.dtls.close()
            self._flush_dtls()
        self.leg = None
        self._release_ports()

    def _release_ports(self) -> None:
        sockets, pool = self.sockets, self.pool
        self.sockets = self.pool = None
        if sockets is not None and pool is not None:
            pool.release(sockets)

    @staticmethod
    def _clock() -> float:
        """ICE and DTLS time: the loop's clock, in seconds."""
        return time.monotonic()
