"""Cheap liveness probes that speak just enough of each protocol, without client libraries."""

from __future__ import annotations

import socket
import struct

_API_VERSIONS_KEY = 18


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks += chunk
    return chunks


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Kafka broker on ``host:port`` answers an ApiVersions v0 request without error."""
    client_id = b"segstream-probe"
    correlation_id = 7
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            payload = _recv_exact(sock, size)
    except (OSError, ConnectionError, struct.error):
        return False
    got_id, error_code = struct.unpack(">ih", payload[:6])
    return got_id == correlation_id and error_code == 0


def redis_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server on ``host:port`` replies to PING (``+PONG``; ``-NOAUTH`` also counts)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
