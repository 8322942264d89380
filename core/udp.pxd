# Batched UDP I/O for the engine's RTP legs: one recvmmsg drains a socket, sendmmsg/sendto sends.
from libc.stdint cimport uint8_t
from pbx.core.includes.sock cimport mmsghdr, iovec, sockaddr_storage, socklen_t

# Datagrams larger than this are truncated by the kernel and then dropped by us (RTP over UDP stays < MTU).
cdef enum:
    UDP_MAX_DATAGRAM = 2048
    UDP_BATCH = 32

cdef struct UdpAddr:
    sockaddr_storage sa
    socklen_t len

cdef class RecvBatch:
    """Reusable receive buffers: up to UDP_BATCH datagrams per recvmmsg call."""
    cdef mmsghdr msgs[UDP_BATCH]
    cdef iovec iov[UDP_BATCH]
    cdef sockaddr_storage addrs[UDP_BATCH]
    cdef uint8_t* buffers          # UDP_BATCH * UDP_MAX_DATAGRAM bytes
    cdef int count                 # datagrams held after the last recv_c
    cdef int truncated             # datagrams dropped for exceeding UDP_MAX_DATAGRAM, cumulative

    cdef int recv_c(self, int fd) noexcept nogil
    cdef inline const uint8_t* data(self, int i) noexcept nogil:
        return self.buffers + i * UDP_MAX_DATAGRAM
    cdef inline Py_ssize_t length(self, int i) noexcept nogil:
        return self.msgs[i].msg_len

cdef int addr_equal(const sockaddr_storage* a, socklen_t alen, const sockaddr_storage* b, socklen_t blen) noexcept nogil
cdef int addr_same_host(const sockaddr_storage* a, const sockaddr_storage* b) noexcept nogil
cdef int addr_port(const sockaddr_storage* a) noexcept nogil
cdef void addr_set_port(UdpAddr* a, int port) noexcept nogil
cdef int send_datagram(int fd, const uint8_t* data, Py_ssize_t n, const UdpAddr* to) noexcept nogil
cdef int addr_from_python(object host_port, UdpAddr* out) except -1
cdef object addr_to_python(const sockaddr_storage* sa, socklen_t alen)
