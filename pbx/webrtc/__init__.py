"""WebRTC calls: ICE-lite, DTLS-SRTP and the SDP a browser expects, each sans-I/O."""
