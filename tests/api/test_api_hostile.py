"""The API against hostile agents and clients (issue #13): every failure to protect ends in
``error`` with a reason and a state event; bodies are capped and authenticated first."""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import READ, WRITE, ApiServer, wait_until

HOST_PATHS = {
    "base_disk": "/var/lib/colopp/disk.qcow2",
    "vm": {"kernel": "/boot/vmlinuz", "initrd": "/boot/initrd", "append": "console=ttyS0"},
}


def hosts_body(name: str, port: int) -> dict[str, Any]:
    """A ``hosts`` protection whose two hosts' agents are both at 127.0.0.1:``port``."""

    def host(host_name: str, ip: str) -> dict[str, str]:
        return {"name": host_name, "agent": f"127.0.0.1:{port}", "tap": "tap0", "repl_ip": ip}

    return {
        "name": name,
        "placement": "hosts",
        "hosts": {"primary": host("hosta", "198.18.1.2"), "secondary": host("hostb", "198.18.1.3")},
        **HOST_PATHS,
    }


class _Answer(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        reply: bytes | None = self.server.reply  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            while self.rfile.readline():
                if reply is not None:
                    self.wfile.write(reply)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def fake_agent(reply: bytes | None) -> Iterator[int]:
    """A listener on loopback answering ``reply`` to every line (None: never answers)."""
    server = _Server(("127.0.0.1", 0), _Answer)
    server.reply = reply  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _events(c: httpx.Client, pid: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = c.get(
        f"/v1/protections/{pid}/events", params={"limit": 1000}
    ).json()["events"]
    return got


def _ends_in_error(c: httpx.Client, pid: str) -> dict[str, Any]:
    done: dict[str, Any] = wait_until(
        "error state",
        lambda: (p := c.get(f"/v1/protections/{pid}").json())["state"] == "error" and p,
        60,
    )
    assert done["reason"], done
    states = [e for e in _events(c, pid) if e["type"] == "state"]
    assert states[-1]["data"]["target"] == "error", states
    assert states[-1]["data"]["reason"], states
    return done


@pytest.mark.parametrize(
    ("name", "reply", "needle"),
    [
        ("notjson", b"x\n", "not JSON"),
        ("nofields", b'{"id":1,"result":{}}\n', "version"),
        ("noresult", b'{"id":1}\n', "neither result nor error"),
        ("deep", b"[" * 100_000 + b"\n", "nested"),
    ],
)
def test_a_bad_agent_reply_ends_in_error_with_an_event(
    api: ApiServer, name: str, reply: bytes, needle: str
) -> None:
    with fake_agent(reply) as port, api.client() as c:
        r = c.post("/v1/protections", json=hosts_body(f"bad-{name}", port))
        assert r.status_code == 201, r.text
        done = _ends_in_error(c, r.json()["id"])
    assert needle in done["reason"], done
    assert r.json()["id"] in api.log.read_text()  # and it is logged


def test_an_api_restart_before_the_pair_was_launched_ends_in_error_with_an_event(
    api: ApiServer,
) -> None:
    with api.client() as c:
        # Port 1 refuses: the placement retries its connection for seconds, so the API
        # is killed while the protection has no pair record yet.
        r = c.post("/v1/protections", json=hosts_body("restart-early", 1))
        assert r.status_code == 201, r.text
        api.kill()
    api.start()
    with api.client() as c:
        done = _ends_in_error(c, r.json()["id"])
    assert "restarted" in done["reason"]


def test_a_failed_reattach_ends_in_error_with_an_event(api: ApiServer) -> None:
    token_file = Path(api.env["COLOPP_AGENT_TOKEN_FILE"])
    with fake_agent(None) as port, api.client() as c:  # an agent that never answers
        r = c.post("/v1/protections", json=hosts_body("restart-late", port))
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        wait_until(
            "a pair record",
            lambda: c.get(f"/v1/protections/{pid}").json()["primary"] is not None,
            30,
        )
        api.kill()
        token = token_file.read_text()
        token_file.unlink()  # re-attaching needs it: it fails
        try:
            api.start()
            with api.client() as c2:
                done = _ends_in_error(c2, pid)
        finally:
            token_file.write_text(token)
            token_file.chmod(0o600)
    assert "re-attach failed" in done["reason"]


def test_an_agent_outside_the_networks_is_a_422_with_errors(api: ApiServer) -> None:
    body = hosts_body("far-away", 53)
    body["hosts"]["secondary"]["agent"] = "8.8.8.8:53"
    with api.client() as c:
        r = c.post("/v1/protections", json=body)
    assert r.status_code == 422, r.text
    got = r.json()
    assert "COLOPP_API_AGENT_NETWORKS" in got["detail"]
    assert got["errors"][0]["loc"] == ["body", "hosts", "secondary", "agent"]
    assert "COLOPP_API_AGENT_NETWORKS" in got["errors"][0]["msg"]


def test_delete_on_a_stopped_protection_in_error_keeps_its_reason(api: ApiServer) -> None:
    with api.client() as c:
        pid = c.post("/v1/protections", json=hosts_body("keep-reason", 1)).json()["id"]
        before = _ends_in_error(c, pid)
        r = c.delete(f"/v1/protections/{pid}")
        assert r.status_code == 409 and "stopped" in r.json()["detail"], r.text
        after = c.get(f"/v1/protections/{pid}").json()
    assert after["state"] == "error" and after["reason"] == before["reason"]


@pytest.mark.parametrize("where", ["vm.append", "vm.kernel", "vm.initrd", "base_disk"])
@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x1b", "\x7f"])
def test_control_characters_are_refused_naming_the_field(
    api: ApiServer, where: str, char: str
) -> None:
    body = hosts_body("ctl-chars", 7400)
    if where.startswith("vm."):
        body["vm"] = {**body["vm"], where[3:]: f"/boot/x{char}-drive file=/etc/shadow"}
    else:
        body[where] = f"/var/lib/disk{char}.qcow2"
    with api.client() as c:
        r = c.post("/v1/protections", json=body)
    assert r.status_code == 422, r.text
    assert where in r.json()["detail"]
    assert [e["loc"][-1] for e in r.json()["errors"]] == [where.rsplit(".", maxsplit=1)[-1]]


def _raw_request(api: ApiServer, head: str, timeout: float = 10) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", api.port), timeout=timeout)
    s.sendall(head.encode())
    return s


def _status_line(s: socket.socket) -> str:
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize(
    ("token", "status"), [(None, "401"), ("not-a-token", "401"), (WRITE, "413"), (READ, "413")]
)
def test_a_huge_announced_body_is_refused_before_it_is_read(
    api: ApiServer, token: str | None, status: str
) -> None:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        "POST /v1/protections HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: 100000000\r\n\r\n"
    )
    with _raw_request(api, head, timeout=5) as s:  # no body sent: the answer comes at once
        assert status in _status_line(s)


def test_a_chunked_body_over_the_limit_is_cut_off_and_healthz_answers(api: ApiServer) -> None:
    head = (
        "POST /v1/protections HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {WRITE}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"[" + b"0," * 32767 + b"0"  # a 64 KiB piece of a never-ending JSON array
    piece = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    with _raw_request(api, head) as s, api.client(None) as c:
        while sent < 64 << 20:  # 64 MiB at most; the server must answer long before
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
            try:
                s.sendall(piece)
            except OSError:
                break  # the server closed the connection after its answer
            sent += len(chunk)
            if sent == 8 * len(chunk):  # mid-upload
                assert c.get("/healthz", timeout=5).status_code == 200
        assert "413" in _status_line(s)
    assert sent < 8 << 20, sent


def test_deeply_nested_json_is_a_4xx_with_a_reason(api: ApiServer) -> None:
    with api.client() as c:
        r = c.post(
            "/v1/protections",
            content=b"[" * 100_000,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code in (400, 422), r.text
        assert r.json()["detail"]
        assert c.get("/healthz").status_code == 200
