"""Reading acknowledged writes back: every key once, over several connections, each loss named."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from colopp.demo.workload import verify_writes


class _Store(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, data: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.data = data
        self.lock = threading.Lock()
        self.gets: list[str] = []
        self.peers: set[int] = set()
        self.drop_first: set[str] = set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Store

    def do_GET(self) -> None:
        key = self.path.removeprefix("/kv/")
        with self.server.lock:
            self.server.gets.append(key)
            self.server.peers.add(self.client_address[1])
            drop = key in self.server.drop_first
            self.server.drop_first.discard(key)
        if drop:  # the connection breaks mid-request: the reader retries on a new one
            self.close_connection = True
            return
        body = self.server.data.get(key)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def store() -> Iterator[_Store]:
    server = _Store({f"k{i}": f"v{i}".encode() for i in range(40)})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_every_key_is_read_once_over_the_given_connections(store: _Store) -> None:
    writes = {f"k{i}": f"v{i}" for i in range(40)}
    writes["k3"] = "not what was stored"
    writes["gone"] = "never stored"
    host, port = store.server_address[:2]
    lost = verify_writes(str(host), int(port), writes, 5.0, connections=4)
    assert sorted(lost) == ["gone: HTTP 404", "k3: other bytes (2 B)"]
    assert sorted(store.gets) == sorted(writes)
    assert len(store.peers) == 4


def test_a_broken_connection_is_retried_not_counted_lost(store: _Store) -> None:
    store.drop_first = {"k5", "k6"}
    writes = {f"k{i}": f"v{i}" for i in range(10)}
    host, port = store.server_address[:2]
    assert verify_writes(str(host), int(port), writes, 5.0, connections=3) == []
    assert store.gets.count("k5") == 2 and store.gets.count("k6") == 2


def test_no_writes_and_more_connections_than_keys(store: _Store) -> None:
    host, port = store.server_address[:2]
    assert verify_writes(str(host), int(port), {}, 5.0, connections=3) == []
    assert verify_writes(str(host), int(port), {"k1": "v1"}, 5.0, connections=8) == []
    assert store.gets == ["k1"]
