# Batched datagram I/O (Linux recvmmsg/sendmmsg). Python.h defines _GNU_SOURCE, which exposes them.


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct timespec:
        long tv_sec
        long tv_nsec
    int recvmmsg(int fd, mmsghdr* msgvec, unsigned int vlen, int flags, timespec* timeout)
    int sendmmsg(int fd, mmsghdr* msgvec, unsigned int vlen, int flags)
    Py_ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr, socklen_t addrlen)
    enum: MSG_DONTWAIT
    enum: MSG_TRUNC
    enum: AF_INET
    enum: AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        unsigned int s_addr
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct in6_addr:
        unsigned char s6_addr[16]
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    unsigned short htons(unsigned short)
    unsigned short ntohs(unsigned short)

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

cdef extern from "<errno.h>" nogil:
    int errno
    enum: EAGAIN
    enum: EWOULDBLOCK
    enum: EINTR
