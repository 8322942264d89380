"""Batched UDP I/O for RTP legs (Linux ``recvmmsg``/``sendto``), usable without the GIL.

The engine owns one :class:`RecvBatch` and drains every leg's non-blocking socket with one
``recvmmsg`` per socket per tick. Sockets are created, bound and closed by Python; the engine
only borrows their file descriptors. Errors are returned as ``-errno`` so the compiled loop never
raises; the Python wrappers turn them into ``OSError``.
"""
from libc.stdint cimport uint8_t, int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp, memset, memcpy
from pbx.core.includes.sock cimport (
    recvmmsg, sendmmsg, sendto, sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t,
    MSG_DONTWAIT, MSG_TRUNC, AF_INET, AF_INET6, htons, ntohs, inet_pton, inet_ntop, errno, EAGAIN,
    EWOULDBLOCK, EINTR,
)
import os

cdef class RecvBatch:
    def __cinit__(self):
        self.buffers = <uint8_t*>malloc(UDP_BATCH * UDP_MAX_DATAGRAM)
        if self.buffers == NULL:
            raise MemoryError("RecvBatch: cannot allocate receive buffers")
        memset(self.msgs, 0, sizeof(self.msgs))
        cdef int i
        for i in range(UDP_BATCH):
            self.iov[i].iov_base = self.buffers + i * UDP_MAX_DATAGRAM
            self.iov[i].iov_len = UDP_MAX_DATAGRAM
            self.msgs[i].msg_hdr.msg_iov = &self.iov[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
            self.msgs[i].msg_hdr.msg_name = &self.addrs[i]
        self.count = 0
        self.truncated = 0

    def __dealloc__(self):
        free(self.buffers)

    cdef int recv_c(self, int fd) noexcept nogil:
        """Receive up to UDP_BATCH datagrams without blocking; returns the count or -errno."""
        cdef int i, n, kept = 0
        for i in range(UDP_BATCH):
            self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            self.msgs[i].msg_hdr.msg_flags = 0
        n = recvmmsg(fd, self.msgs, UDP_BATCH, MSG_DONTWAIT, NULL)
        if n < 0:
            self.count = 0
            n = errno  # EWOULDBLOCK == EAGAIN on Linux; compared apart for other platforms
            if n == EAGAIN or n == EINTR:
                return 0
            if n == EWOULDBLOCK:
                return 0
            return -n
        # Compact away truncated datagrams: an oversized packet is garbage for RTP, never a partial parse.
        for i in range(n):
            if self.msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
                self.truncated += 1
                continue
            if kept != i:
                memcpy(self.buffers + kept * UDP_MAX_DATAGRAM, self.buffers + i * UDP_MAX_DATAGRAM,
                       self.msgs[i].msg_len)
                self.msgs[kept].msg_len = self.msgs[i].msg_len
                self.msgs[kept].msg_hdr.msg_namelen = self.msgs[i].msg_hdr.msg_namelen
                memcpy(&self.addrs[kept], &self.addrs[i], sizeof(sockaddr_storage))
            kept += 1
        self.count = kept
        return kept

    def recv(self, int fd):
        """Python entry for tests: ``[(payload, (host, port)), ...]`` drained from ``fd``."""
        cdef int n
        with nogil:
            n = self.recv_c(fd)
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        return [(bytes(self.buffers[i * UDP_MAX_DATAGRAM:i * UDP_MAX_DATAGRAM + self.msgs[i].msg_len]),
                 addr_to_python(&self.addrs[i], self.msgs[i].msg_hdr.msg_namelen)) for i in range(n)]

    def count_sources(self, int fd, int64_t[::1] counts, int limit=1 << 30):
        """Drain ``fd`` (up to about ``limit`` datagrams) counting each by its source port: ``counts[port] += 1``
        (a port beyond ``counts`` is not counted). Returns the datagrams read. For load generators that only
        count what a server sends per call: no Python object per datagram."""
        cdef int n = 0, i, port
        cdef Py_ssize_t size = counts.shape[0]
        cdef long total = 0
        with nogil:
            while total < limit:
                n = self.recv_c(fd)
                if n <= 0:
                    break
                for i in range(n):
                    port = addr_port(&self.addrs[i])
                    if 0 <= port < size:
                        counts[port] += 1
                total += n
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        return total

    @property
    def truncated(self):
        return self.truncated


cdef int addr_equal(const sockaddr_storage* a, socklen_t alen, const sockaddr_storage* b,
                    socklen_t blen) noexcept nogil:
    cdef const sockaddr_in* a4
    cdef const sockaddr_in* b4
    cdef const sockaddr_in6* a6
    cdef const sockaddr_in6* b6
    if a.ss_family != b.ss_family:
        return 0
    if a.ss_family == AF_INET:
        a4 = <const sockaddr_in*>a
        b4 = <const sockaddr_in*>b
        return a4.sin_port == b4.sin_port and a4.sin_addr.s_addr == b4.sin_addr.s_addr
    if a.ss_family == AF_INET6:
        a6 = <const sockaddr_in6*>a
        b6 = <const sockaddr_in6*>b
        return a6.sin6_port == b6.sin6_port and memcmp(&a6.sin6_addr, &b6.sin6_addr, 16) == 0
    return alen == blen and memcmp(a, b, alen) == 0


cdef int addr_same_host(const sockaddr_storage* a, const sockaddr_storage* b) noexcept nogil:
    """1 if both are IPv4 or both IPv6 with the same IP address, whatever their ports."""
    if a.ss_family != b.ss_family:
        return 0
    if a.ss_family == AF_INET:
        return (<const sockaddr_in*>a).sin_addr.s_addr == (<const sockaddr_in*>b).sin_addr.s_addr
    if a.ss_family == AF_INET6:
        return memcmp(&(<const sockaddr_in6*>a).sin6_addr, &(<const sockaddr_in6*>b).sin6_addr, 16) == 0
    return 0


cdef int addr_port(const sockaddr_storage* a) noexcept nogil:
    """The port in host order, or -1 for a family other than IPv4/IPv6."""
    if a.ss_family == AF_INET:
        return ntohs((<const sockaddr_in*>a).sin_port)
    if a.ss_family == AF_INET6:
        return ntohs((<const sockaddr_in6*>a).sin6_port)
    return -1


cdef void addr_set_port(UdpAddr* a, int port) noexcept nogil:
    if a.sa.ss_family == AF_INET:
        (<sockaddr_in*>&a.sa).sin_port = htons(<unsigned short>port)
    elif a.sa.ss_family == AF_INET6:
        (<sockaddr_in6*>&a.sa).sin6_port = htons(<unsigned short>port)


cdef int send_datagram(int fd, const uint8_t* data, Py_ssize_t n, const UdpAddr* to) noexcept nogil:
    """One datagram; returns 0, or -errno (EAGAIN counts as a drop, not an error, for real-time media)."""
    if sendto(fd, data, n, MSG_DONTWAIT, <const sockaddr*>&to.sa, to.len) < 0:
        return -errno
    return 0


cdef int addr_from_python(object host_port, UdpAddr* out) except -1:
    """``(host, port)`` with a numeric IPv4/IPv6 host -> socket address."""
    host, port = host_port
    if not 0 <= port <= 65535:
        raise ValueError(f"UDP port out of range: {port}")
    cdef bytes h = host.encode("ascii")
    cdef sockaddr_in* a4 = <sockaddr_in*>&out.sa
    cdef sockaddr_in6* a6 = <sockaddr_in6*>&out.sa
    memset(&out.sa, 0, sizeof(sockaddr_storage))
    if inet_pton(AF_INET, h, &a4.sin_addr) == 1:
        a4.sin_family = AF_INET
        a4.sin_port = htons(port)
        out.len = sizeof(sockaddr_in)
        return 0
    memset(&out.sa, 0, sizeof(sockaddr_storage))
    if inet_pton(AF_INET6, h, &a6.sin6_addr) == 1:
        a6.sin6_family = AF_INET6
        a6.sin6_port = htons(port)
        out.len = sizeof(sockaddr_in6)
        return 0
    raise ValueError(f"not a numeric IP address: {host!r}")


cdef object addr_to_python(const sockaddr_storage* sa, socklen_t alen):
    cdef char text[64]
    cdef const sockaddr_in* a4
    cdef const sockaddr_in6* a6
    if sa.ss_family == AF_INET:
        a4 = <const sockaddr_in*>sa
        inet_ntop(AF_INET, &a4.sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(a4.sin_port))
    if sa.ss_family == AF_INET6:
        a6 = <const sockaddr_in6*>sa
        inet_ntop(AF_INET6, &a6.sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(a6.sin6_port))
    return None


def send_to(int fd, const uint8_t[::1] data, object host_port):
    """Python entry for tests: send one datagram from ``fd`` to ``(host, port)``."""
    cdef UdpAddr to
    addr_from_python(host_port, &to)
    cdef int rc
    with nogil:
        rc = send_datagram(fd, &data[0] if data.shape[0] else NULL, data.shape[0], &to)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


cdef enum:
    SEND_BATCH = 64


def send_batch(int fd, const uint8_t[::1] packets, Py_ssize_t size, object host, const int32_t[::1] ports):
    """Send ``len(ports)`` datagrams of ``size`` bytes, datagram i from ``packets[i * size:]`` to
    ``(host, ports[i])``, with one ``sendmmsg`` per 64. Returns how many left; it stops early when the
    socket buffer is full (EAGAIN: the rest count as dropped). Other errors raise OSError. For load
    generators: one Python call per batch, not per packet."""
    cdef Py_ssize_t count = ports.shape[0]
    if size <= 0 or packets.shape[0] < count * size:
        raise ValueError(f"send_batch: {count} datagrams of {size} bytes need {count * size} bytes, "
                         f"got {packets.shape[0]}")
    cdef UdpAddr base
    addr_from_python((host, 0), &base)
    cdef mmsghdr msgs[SEND_BATCH]
    cdef iovec iov[SEND_BATCH]
    cdef UdpAddr addrs[SEND_BATCH]
    cdef Py_ssize_t done = 0, i, n
    cdef int sent, err = 0
    memset(msgs, 0, sizeof(msgs))
    with nogil:
        while done < count:
            n = min(count - done, <Py_ssize_t>SEND_BATCH)
            for i in range(n):
                addrs[i] = base
                addr_set_port(&addrs[i], ports[done + i])
                iov[i].iov_base = <void*>&packets[(done + i) * size]
                iov[i].iov_len = size
                msgs[i].msg_hdr.msg_iov = &iov[i]
                msgs[i].msg_hdr.msg_iovlen = 1
                msgs[i].msg_hdr.msg_name = &addrs[i].sa
                msgs[i].msg_hdr.msg_namelen = addrs[i].len
            sent = sendmmsg(fd, msgs, <unsigned int>n, MSG_DONTWAIT)
            if sent < 0:
                err = errno
                break
            done += sent
            if sent < n:
                break
    if err == EAGAIN or err == EINTR:
        err = 0
    if err == EWOULDBLOCK:          # == EAGAIN on Linux: apart, or Cython makes a switch of duplicate cases
        err = 0
    if err != 0:
        raise OSError(err, os.strerror(err))
    return done


cdef Py_ssize_t send_due_batch(int fd, mmsghdr* msgs, Py_ssize_t n, const Py_ssize_t* owner, int64_t[::1] sent,
                               int* err) noexcept nogil:
    """sendmmsg one batch of send_rtp_due's packets: ``sent[owner[j]] += 1`` for each that left, the
    errno in ``err`` on failure; returns how many were dropped."""
    cdef int got = sendmmsg(fd, msgs, <unsigned int>n, MSG_DONTWAIT)
    cdef Py_ssize_t j
    if got < 0:
        err[0] = errno
        got = 0
    for j in range(got):
        sent[owner[j]] += 1
    return n - got


def send_rtp_due(int fd, object host, double now, double[::1] next_due, int64_t[::1] pos,
                 const double[:, ::1] due, const int64_t[:, ::1] number, const double[::1] start,
                 const uint8_t[:, ::1] header, const int32_t[::1] ports, const uint8_t[:, ::1] frames,
                 const int64_t[::1] first, int64_t[::1] sent, int64_t[::1] hist, double bin_s, double late_s,
                 double[:, ::1] late_at, Py_ssize_t late_kept):
    """Send every RTP packet due by ``now`` for calls on precomputed schedules (a load generator's hot loop).

    Call c's packet j is due at ``start[c] + due[c, j]`` and carries frame number ``k = number[c, j]``:
    header ``header[c]`` (12 bytes: V=2, the payload type, the first sequence number, the first
    timestamp, the SSRC) with sequence + k, timestamp + k * frame length and the marker on k == 0, and
    payload ``frames[(first[c] + k) % len(frames)]`` (not copied: a second iovec). ``next_due[c]`` is the
    due time of ``pos[c]``, the next packet (inf: none; ``due`` rows end with inf). Packets leave in
    sendmmsg batches of 64 to ``(host, ports[c])``; a full socket buffer drops the rest of a batch.

    Per packet sent: ``sent[c] += 1``, its lag (``now`` - due) into ``hist`` (bins of ``bin_s``, the last
    one open-ended); lags over ``late_s`` are counted and the first go to ``late_at[late_kept:]`` as
    (due, lag). Returns ``(packets, late, dropped, max_lag, late_kept)``."""
    cdef Py_ssize_t n = next_due.shape[0], payload = frames.shape[1], n_frames = frames.shape[0]
    cdef Py_ssize_t bins = hist.shape[0], kept_max = late_at.shape[0]
    if n_frames == 0 or header.shape[1] < 12 or bins == 0 or not bin_s > 0:
        raise ValueError("send_rtp_due: no frames, a header row under 12 bytes or no lag bins")
    for arr_n in (pos.shape[0], due.shape[0], number.shape[0], start.shape[0], header.shape[0], ports.shape[0],
                  first.shape[0], sent.shape[0]):
        if arr_n != n:
            raise ValueError(f"send_rtp_due: every per-call array needs {n} rows, one has {arr_n}")
    if due.shape[1] != number.shape[1]:
        raise ValueError("send_rtp_due: due and number differ in width")
    cdef UdpAddr base
    addr_from_python((host, 0), &base)
    cdef mmsghdr msgs[SEND_BATCH]
    cdef iovec iov[2 * SEND_BATCH]
    cdef UdpAddr addrs[SEND_BATCH]
    cdef uint8_t heads[SEND_BATCH][12]
    cdef Py_ssize_t owner[SEND_BATCH]
    cdef Py_ssize_t c, p, i = 0, width = due.shape[1], b
    cdef int64_t k, seq, ts
    cdef long packets = 0, late = 0, dropped = 0
    cdef double lag, max_lag = 0.0, d
    cdef int err = 0
    memset(msgs, 0, sizeof(msgs))
    with nogil:
        for c in range(n):
            while next_due[c] <= now:
                p = pos[c]
                if p + 1 >= width:
                    next_due[c] = 1.0 / 0.0
                    break
                d = next_due[c]
                k = number[c, p]
                memcpy(&heads[i][0], &header[c, 0], 12)
                if k == 0:
                    heads[i][1] |= 0x80
                seq = ((<int64_t>header[c, 2] << 8) | header[c, 3]) + k
                ts = ((<int64_t>header[c, 4] << 24) | (<int64_t>header[c, 5] << 16) | (<int64_t>header[c, 6] << 8)
                      | header[c, 7]) + k * payload
                heads[i][2] = (seq >> 8) & 0xFF
                heads[i][3] = seq & 0xFF
                heads[i][4] = (ts >> 24) & 0xFF
                heads[i][5] = (ts >> 16) & 0xFF
                heads[i][6] = (ts >> 8) & 0xFF
                heads[i][7] = ts & 0xFF
                iov[2 * i].iov_base = &heads[i][0]
                iov[2 * i].iov_len = 12
                iov[2 * i + 1].iov_base = <void*>&frames[(first[c] + k) % n_frames, 0]
                iov[2 * i + 1].iov_len = payload
                addrs[i] = base
                addr_set_port(&addrs[i], ports[c])
                msgs[i].msg_hdr.msg_iov = &iov[2 * i]
                msgs[i].msg_hdr.msg_iovlen = 2
                msgs[i].msg_hdr.msg_name = &addrs[i].sa
                msgs[i].msg_hdr.msg_namelen = addrs[i].len
                owner[i] = c
                lag = now - d
                b = <Py_ssize_t>(lag / bin_s)
                hist[b if b < bins else bins - 1] += 1
                if lag > max_lag:
                    max_lag = lag
                if lag > late_s:
                    late += 1
                    if late_kept < kept_max:
                        late_at[late_kept, 0] = d
                        late_at[late_kept, 1] = lag
                        late_kept += 1
                pos[c] = p + 1
                next_due[c] = start[c] + due[c, p + 1]
                packets += 1
                i += 1
                if i == SEND_BATCH:
                    dropped += send_due_batch(fd, msgs, i, owner, sent, &err)
                    i = 0
        if i > 0:
            dropped += send_due_batch(fd, msgs, i, owner, sent, &err)
    if err == EAGAIN or err == EINTR:
        err = 0
    if err == EWOULDBLOCK:
        err = 0
    if err != 0:
        raise OSError(err, os.strerror(err))
    return packets, late, dropped, max_lag, late_kept
