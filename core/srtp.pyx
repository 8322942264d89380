# cython: language_level=3
"""SRTP (RFC 3711) and SRTP-GCM (RFC 7714) for a WebRTC leg, through libsrtp2.

One :class:`SrtpSession` protects one direction: ``outbound`` sessions protect what the engine sends,
inbound ones authenticate, decrypt and replay-check what it receives. The keys come from the DTLS
handshake (pbx.webrtc.dtls: master key + salt of each side). The engine calls the ``cdef`` methods on its
packet buffers in place, no Python per packet; the ``def`` ones serve tests.

Profiles: ``SRTP_AEAD_AES_128_GCM`` (key 16 + salt 12) and ``SRTP_AES128_CM_SHA1_80`` (key 16 + salt 14).
"""

from libc.stdint cimport uint8_t
from libc.string cimport memcpy, memset
from pbx.core.includes.srtp cimport (
    srtp_create, srtp_crypto_policy_set_aes_gcm_128_16_auth, srtp_crypto_policy_set_rtcp_default,
    srtp_crypto_policy_set_rtp_default, srtp_dealloc, srtp_err_status_ok, srtp_init, srtp_policy_t,
    srtp_protect, srtp_protect_rtcp, srtp_unprotect, srtp_unprotect_rtcp, ssrc_any_inbound, ssrc_any_outbound,
    SRTP_MAX_TRAILER_LEN,
)

KEY_LENGTHS = {"SRTP_AEAD_AES_128_GCM": 28, "SRTP_AES128_CM_SHA1_80": 30}
REPLAY_WINDOW = 1024                 # packets: reordering deeper than 20 s of audio is not expected

cdef bint _initialised = False

assert SRTP_MAX_TRAILER_LEN <= SRTP_TRAILER_MAX


class SrtpError(ValueError):
    """A key or profile libsrtp refuses, or a packet that does not pass (in the def wrappers)."""


cdef class SrtpSession:
    def __cinit__(self, str profile, bytes key, bint outbound):
        global _initialised
        cdef srtp_policy_t policy
        cdef unsigned char material[64]
        self.session = NULL
        if profile not in KEY_LENGTHS:
            raise SrtpError(f"unknown SRTP profile {profile!r}; expected one of {', '.join(KEY_LENGTHS)}")
        if len(key) != KEY_LENGTHS[profile]:
            raise SrtpError(f"{profile} needs {KEY_LENGTHS[profile]} bytes of key and salt, got {len(key)}")
        if not _initialised:
            if srtp_init() != srtp_err_status_ok:
                raise SrtpError("libsrtp2 failed to initialise")
            _initialised = True
        memset(&policy, 0, sizeof(policy))
        if profile == "SRTP_AEAD_AES_128_GCM":
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp)
        else:
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        policy.ssrc.type = ssrc_any_outbound if outbound else ssrc_any_inbound
        memcpy(material, <const unsigned char*>key, len(key))
        policy.key = material
        policy.window_size = REPLAY_WINDOW
        policy.allow_repeat_tx = 0
        policy.next = NULL
        status = srtp_create(&self.session, &policy)
        if status != srtp_err_status_ok:
            self.session = NULL
            raise SrtpError(f"libsrtp2 refused the {profile} session (error {status})")
        self.profile = profile
        self.outbound = outbound
        self.failures = 0

    def __dealloc__(self):
        if self.session != NULL:
            srtp_dealloc(self.session)
            self.session = NULL

    cdef int protect(self, uint8_t* buf, int* length, bint rtcp) noexcept nogil:
        """Protect ``length`` bytes in place; ``buf`` must have SRTP_TRAILER_MAX more bytes of room.
        0, or -1 (counted in failures: the packet must not be sent)."""
        cdef int status = srtp_protect_rtcp(self.session, buf, length) if rtcp \
            else srtp_protect(self.session, buf, length)
        if status != srtp_err_status_ok:
            self.failures += 1
            return -1
        return 0

    cdef int unprotect(self, uint8_t* buf, int* length, bint rtcp) noexcept nogil:
        """Authenticate, replay-check and decrypt in place: 0 and the plain length, or -1 (drop it)."""
        cdef int status = srtp_unprotect_rtcp(self.session, buf, length) if rtcp \
            else srtp_unprotect(self.session, buf, length)
        if status != srtp_err_status_ok:
            self.failures += 1
            return -1
        return 0

    # -- for Python callers and tests ----------------------------------------------------------------------
    def protect_packet(self, bytes packet, bint rtcp=False):
        return self._apply(packet, rtcp, True)

    def unprotect_packet(self, bytes packet, bint rtcp=False):
        return self._apply(packet, rtcp, False)

    cdef bytes _apply(self, bytes packet, bint rtcp, bint protect):
        cdef int n = len(packet)
        if n > 1500:
            raise SrtpError(f"{n} bytes: larger than a datagram")
        cdef uint8_t buf[1500 + SRTP_TRAILER_MAX]
        memcpy(buf, <const uint8_t*>packet, n)
        cdef int rc = self.protect(buf, &n, rtcp) if protect else self.unprotect(buf, &n, rtcp)
        if rc != 0:
            raise SrtpError("the packet was refused (authentication, replay or a malformed header)")
        return buf[:n]
