# libsrtp2 (srtp2/srtp.h): the subset pbx.core.srtp uses.

cdef extern from "srtp2/srtp.h" nogil:
    ctypedef enum srtp_err_status_t:
        srtp_err_status_ok
        srtp_err_status_replay_fail
        srtp_err_status_replay_old
        srtp_err_status_auth_fail

    ctypedef enum srtp_ssrc_type_t:
        ssrc_undefined
        ssrc_specific
        ssrc_any_inbound
        ssrc_any_outbound

    ctypedef struct srtp_ssrc_t:
        srtp_ssrc_type_t type
        unsigned int value

    ctypedef struct srtp_crypto_policy_t:
        pass

    ctypedef struct srtp_policy_t:
        srtp_ssrc_t ssrc
        srtp_crypto_policy_t rtp
        srtp_crypto_policy_t rtcp
        unsigned char* key
        unsigned long window_size
        int allow_repeat_tx
        srtp_policy_t* next

    ctypedef struct srtp_ctx_t:
        pass
    ctypedef srtp_ctx_t* srtp_t

    enum:
        SRTP_MAX_TRAILER_LEN

    srtp_err_status_t srtp_init()
    srtp_err_status_t srtp_create(srtp_t* session, const srtp_policy_t* policy)
    srtp_err_status_t srtp_dealloc(srtp_t session)
    srtp_err_status_t srtp_protect(srtp_t ctx, void* rtp_hdr, int* len_ptr)
    srtp_err_status_t srtp_unprotect(srtp_t ctx, void* srtp_hdr, int* len_ptr)
    srtp_err_status_t srtp_protect_rtcp(srtp_t ctx, void* rtcp_hdr, int* pkt_octet_len)
    srtp_err_status_t srtp_unprotect_rtcp(srtp_t ctx, void* srtcp_hdr, int* pkt_octet_len)
    void srtp_crypto_policy_set_rtp_default(srtp_crypto_policy_t* p)
    void srtp_crypto_policy_set_rtcp_default(srtp_crypto_policy_t* p)
    void srtp_crypto_policy_set_aes_gcm_128_16_auth(srtp_crypto_policy_t* p)
