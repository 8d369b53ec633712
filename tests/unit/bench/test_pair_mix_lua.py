"""bench/pair-mix.lua's warm-up stores every key (issue #22: ``download_static`` had a
quarter of its GETs answered 404 in every configuration, the unreplicated guest's too).

Why: wrk calls the script's ``request()`` once per run before sending anything (to count
pipelined requests, ``script_verify_request``) and throws that request away, so a warm-up
that PUT key ``sent - 1`` for the first KVD_KEYS calls never stored ``k0`` (1 of the bench's
4 keys: 25%). Checked against a local HTTP server and the real wrk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "pair-mix.lua"


class _Kv(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stored: ClassVar[set[str]] = set()

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).stored.add(self.path)
        self._answer(200)

    def do_GET(self) -> None:
        self._answer(200 if self.path in type(self).stored else 404)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # wrk resets its connections when it stops


@pytest.fixture
def server() -> Iterator[str]:
    _Kv.stored = set()
    httpd = _Server(("127.0.0.1", 0), _Kv)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_the_warm_up_stores_every_key(server: str) -> None:
    env = {**os.environ, "KVD_PREFILL": "1", "KVD_KEYS": "4", "KVD_PUT_RATIO": "0"}
    argv = ["wrk", "-t1", "-c1", "-d1s", "-s", str(SCRIPT), server]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True)
    assert _Kv.stored == {f"/kv/k{n}" for n in range(4)}, out.stdout
