"""The local stack's round-robin balancer: one address, connections spread, a dead replica skipped."""

from __future__ import annotations

import gc
import http.server
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tools.background import free_port
from tools.stack.balancer import RoundRobin


class Named(http.server.BaseHTTPRequestHandler):
    """Answers with the port it listens on: which replica took the connection."""

    @property
    def port(self) -> int:
        assert isinstance(self.server, http.server.ThreadingHTTPServer)
        return self.server.server_port

    def do_GET(self) -> None:
        body = str(self.port).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        got = self.rfile.read(length)
        body = f"{self.port} {len(got)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def replicas() -> Iterator[list[int]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Named) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield [s.server_port for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def fetch(port: int, data: bytes | None = None) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=data, method="PUT" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.read().decode())


def test_connections_go_round_the_replicas_and_skip_a_dead_one(replicas: list[int]) -> None:
    dead = free_port()  # nobody listens: a replica that died
    balancer = RoundRobin("receiver", free_port(), [replicas[0], dead, replicas[1]]).start()
    try:
        answered = [fetch(balancer.port) for _ in range(6)]
        assert sorted(set(answered)) == sorted(str(p) for p in replicas)
        assert balancer.connections[replicas[0]] == balancer.connections[replicas[1]] == 3
        assert balancer.connections[dead] == 0
        body = bytes(3 << 20)  # a body larger than any buffer crosses whole
        port, length = fetch(balancer.port, body).split()
        assert int(port) in replicas and int(length) == len(body)
    finally:
        balancer.stop()


def test_every_replica_refusing_closes_the_connection() -> None:
    balancer = RoundRobin("validator", free_port(), [free_port()]).start()
    try:
        with pytest.raises(OSError):
            fetch(balancer.port)
    finally:
        balancer.stop()


def test_stopping_with_a_connection_in_flight_closes_it_and_drops_no_coroutine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dropped: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(repr(unraisable.exc_value)))
    replica = socket.create_server(("127.0.0.1", 0))  # takes the connection and never answers
    balancer = RoundRobin("receiver", free_port(), [replica.getsockname()[1]]).start()
    held = socket.create_connection(("127.0.0.1", balancer.port), timeout=10)
    try:
        held.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")  # a PUT half sent
        deadline = time.monotonic() + 10
        while sum(balancer.connections.values()) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sum(balancer.connections.values()) == 1, "the connection reached a replica"
        balancer.stop()
        assert held.recv(1) == b"", "the client's connection is closed with the balancer"
    finally:
        held.close()
        replica.close()
    gc.collect()
    assert dropped == []
