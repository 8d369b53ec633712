"""Webhooks: classification, signatures, and deliveries through the real API to a real HTTP
receiver on loopback (signed, within 2 s of the state change, retried after a 500)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from test_api_http import HOSTS_BODY

from colopp_api.webhooks.classify import classify
from colopp_api.webhooks.signing import sign, verify
from tests.api.conftest import READ, ApiServer, wait_until

SECRET = "0123456789abcdef-webhook-secret"


def test_classify_state_changes() -> None:
    assert classify("state", {"target": "failing_over"}, "protected") == [
        "state",
        "lost_redundancy",
    ]
    assert classify("state", {"target": "protected"}, "reprotecting") == ["state", "reprotected"]
    assert classify("state", {"target": "protected"}, "syncing") == ["state"]
    assert classify("state", {"target": "protected"}, "protected") == []
    assert classify("failover", {"host": "a"}, "protected") == ["failover"]
    assert classify("switchover", {}, "protected") == ["switchover"]
    assert classify("error", {"message": "x"}, "protected") == ["error"]
    assert classify("state", {"target": "error", "pair_state": "error"}, "syncing") == [
        "state",
        "error",
    ]
    assert classify("checkpoint", {"reason": "periodic"}, "protected") == []


def test_signature_is_hmac_sha256_of_the_body() -> None:
    signature = sign("k" * 16, b'{"a":1}')
    expected = hmac.new(b"k" * 16, b'{"a":1}', hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert verify("k" * 16, b'{"a":1}', signature)
    assert not verify("k" * 16, b'{"a":2}', signature)
    assert not verify("x" * 16, b'{"a":1}', signature)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; answers ``fail_first`` 500s
    before answering 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[float, dict[str, str], bytes]] = []
        self.fail_left = fail_first
        self.changed = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.changed:
                    outer.received.append((time.time(), dict(self.headers), body))
                    failing = outer.fail_left > 0
                    outer.fail_left -= 1
                    outer.changed.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float) -> list[tuple[float, dict[str, str], bytes]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.received) >= count, timeout), (
                f"{len(self.received)} of {count} deliveries after {timeout} s"
            )
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _protect_and_fail(api: ApiServer, name: str) -> tuple[str, float]:
    """A protection whose agents cannot be reached: starting → error, a state change.
    Returns its id and when the API recorded the error."""
    with api.client() as c:
        pid = c.post("/v1/protections", json=HOSTS_BODY | {"name": name}).json()["id"]
        errors = wait_until(
            "the error event",
            lambda: c.get(f"/v1/protections/{pid}/events", params={"type": "error"}).json()[
                "events"
            ],
            30,
        )
    return pid, float(errors[0]["t"])


def test_webhook_routes_need_the_write_token_and_check_input(api: ApiServer) -> None:
    with api.client(READ) as c:
        assert c.get("/v1/webhooks").status_code == 403
        assert c.post("/v1/webhooks", json={"url": "http://127.0.0.1:1/"}).status_code == 403
    with api.client() as c:
        for body in (
            {"url": "ftp://x/"},
            {"url": "http://127.0.0.1:1/", "kinds": ["nope"]},
            {"url": "http://127.0.0.1:1/", "kinds": []},
            {"url": "http://127.0.0.1:1/", "secret": "short"},
            {"url": "http://192.0.2.1/"},  # outside COLOPP_API_WEBHOOK_NETWORKS
            {"url": "http://example.test/"},  # a name: refused when networks are set
        ):
            got = c.post("/v1/webhooks", json=body)
            assert got.status_code == 422 and got.json()["detail"], body
        made = c.post("/v1/webhooks", json={"url": "http://127.0.0.1:1/x"})
        assert made.status_code == 201 and len(made.json()["secret"]) >= 32
        hook = made.json()["id"]
        listed = c.get("/v1/webhooks").json()["webhooks"]
        assert [h["secret"] for h in listed if h["id"] == hook] == [None]
        assert c.delete(f"/v1/webhooks/{hook}").status_code == 204
        assert c.delete(f"/v1/webhooks/{hook}").status_code == 404
        assert c.get(f"/v1/webhooks/{hook}/deliveries").status_code == 404


def test_signed_notification_within_two_seconds_of_a_state_change(
    api: ApiServer, receiver: Receiver
) -> None:
    with api.client() as c:
        body = {"url": receiver.url, "kinds": ["error"], "secret": SECRET}
        hook = c.post("/v1/webhooks", json=body).json()["id"]
        try:
            pid, errored_at = _protect_and_fail(api, "hooked-1")
            arrived, headers, raw = receiver.wait_for(1, 10)[0]
            deliveries = c.get(f"/v1/webhooks/{hook}/deliveries").json()["deliveries"]
        finally:
            c.delete(f"/v1/webhooks/{hook}")
    assert arrived - errored_at < 2.0
    assert verify(SECRET, raw, headers["X-Colopp-Signature"])
    payload = json.loads(raw)
    assert payload["type"] == "error" and payload["protection"] == pid
    assert headers["X-Colopp-Event"] == "error"
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in deliveries] == [
        (1, 200, True)
    ]


def test_a_refused_notification_is_retried_and_logged(api: ApiServer) -> None:
    receiver = Receiver(fail_first=1)
    try:
        with api.client() as c:
            body = {"url": receiver.url, "kinds": ["error"], "secret": SECRET}
            hook = c.post("/v1/webhooks", json=body).json()["id"]
            try:
                _protect_and_fail(api, "hooked-2")
                (t1, h1, b1), (t2, h2, b2) = receiver.wait_for(2, 10)[:2]
                deliveries = wait_until(
                    "two logged attempts",
                    lambda: (
                        got
                        if len(got := c.get(f"/v1/webhooks/{hook}/deliveries").json()["deliveries"])
                        >= 2
                        else None
                    ),
                    10,
                )
            finally:
                c.delete(f"/v1/webhooks/{hook}")
    finally:
        receiver.close()
    assert b1 == b2 and h1["X-Colopp-Delivery"] == h2["X-Colopp-Delivery"]
    assert verify(SECRET, b2, h2["X-Colopp-Signature"])
    assert 0.4 < t2 - t1 < 2.0  # the first backoff (0.5 s)
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in deliveries] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert deliveries[0]["error"] == "HTTP 500"
