"""Batched UDP I/O over real loopback sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pbx.core.udp import RecvBatch, send_to


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    a.setblocking(False)
    b.settimeout(2)
    yield a, b
    a.close()
    b.close()


def test_recv_drains_in_order_with_source(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    for i in range(40):  # more than one batch of 32
        b.sendto(bytes([i]) * (i + 1), a.getsockname())
    batch = RecvBatch()
    first = batch.recv(a.fileno())
    second = batch.recv(a.fileno())
    got = first + second
    assert len(first) == 32
    assert [p for p, _ in got] == [bytes([i]) * (i + 1) for i in range(40)]
    assert all(addr == b.getsockname() for _, addr in got)
    assert batch.recv(a.fileno()) == []


def test_oversized_datagram_is_dropped_and_counted(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendto(b"x" * 3000, a.getsockname())
    b.sendto(b"ok", a.getsockname())
    batch = RecvBatch()
    assert [p for p, _ in batch.recv(a.fileno())] == [b"ok"]
    assert batch.truncated == 1


def test_send_to_reaches_peer(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    send_to(a.fileno(), b"hello", b.getsockname())
    assert b.recvfrom(100) == (b"hello", a.getsockname())


def test_send_to_rejects_names_and_bad_ports(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(ValueError, match="not a numeric IP address: 'localhost'"):
        send_to(a.fileno(), b"x", ("localhost", 5000))
    with pytest.raises(ValueError, match="UDP port out of range: 70000"):
        send_to(a.fileno(), b"x", ("127.0.0.1", 70000))


def test_recv_on_closed_fd_raises_oserror() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    s.close()
    with pytest.raises(OSError):
        RecvBatch().recv(fd)
