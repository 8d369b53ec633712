"""kvd's HTTP contract, against kvd built from our source and run on localhost.

No root needed: kvd listens on a free high port with a temporary data dir.
"""

import http.client
import shutil
import socket
import subprocess
import time

import pytest

from colopp.image import tools
from colopp.image.builder import GUEST_SOURCES_DIR

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kvd_binary(tmp_path_factory):
    out = tmp_path_factory.mktemp("kvd") / "kvd"
    try:
        subprocess.run(
            tools.gcc_static_argv(GUEST_SOURCES_DIR / "kvd.c", out),
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        if b"cannot find -lc" in exc.stderr:
            pytest.skip("static libc (libc6-dev) not installed")
        raise
    return out


@pytest.fixture
def kvd(kvd_binary, tmp_path):
    port = free_port()
    data = tmp_path / "kv"
    proc = subprocess.Popen([str(kvd_binary), "-p", str(port), "-d", str(data)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                try:  # not listening yet: wait for kvd to exit (it must not), briefly
                    proc.wait(0.01)
                except subprocess.TimeoutExpired:
                    continue
                raise
        yield port, data
        assert proc.poll() is None, "kvd crashed"
    finally:
        proc.kill()
        proc.wait()


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def raw_exchange(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_put_get_durable_file(kvd):
    port, data = kvd
    assert request(port, "PUT", "/kv/alpha", b"one")[0] == 200
    assert request(port, "GET", "/kv/alpha")[:2] == (200, b"one")
    assert (data / "alpha").read_bytes() == b"one"
    assert request(port, "POST", "/kv/alpha", b"two")[0] == 200
    assert request(port, "GET", "/kv/alpha")[:2] == (200, b"two")
    assert not list(data.glob(".tmp-*"))


def test_head_and_health(kvd):
    port, _ = kvd
    request(port, "PUT", "/kv/h", b"12345")
    status, body, headers = request(port, "HEAD", "/kv/h")
    assert (status, body, headers["Content-Length"]) == (200, b"", "5")
    assert request(port, "GET", "/health")[:2] == (200, b"ok\n")
    assert "Date" not in request(port, "GET", "/health")[2]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/kv/missing", None, 404),
        ("GET", "/kv/bad.key", None, 400),
        ("GET", "/kv/", None, 400),
        ("GET", "/kv/" + "a" * 65, None, 400),
        ("GET", "/nope", None, 404),
        ("DELETE", "/kv/x", None, 405),
        ("PUT", "/health", b"x", 405),
        ("PUT", "/kv/big", b"x" * 65537, 413),
    ],
)
def test_errors(kvd, method, path, body, status):
    port, _ = kvd
    assert request(port, method, path, body)[0] == status


def test_max_value_accepted(kvd):
    port, _ = kvd
    value = bytes(range(256)) * 256
    assert request(port, "PUT", "/kv/max", value)[0] == 200
    assert request(port, "GET", "/kv/max")[1] == value


def test_put_without_length_is_411(kvd):
    port, _ = kvd
    assert raw_exchange(port, b"PUT /kv/a HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 411 ")


def test_counter(kvd):
    port, _ = kvd
    assert request(port, "GET", "/counter")[1] == b"0\n"
    assert request(port, "POST", "/counter")[1] == b"1\n"
    assert request(port, "POST", "/counter")[1] == b"2\n"
    assert request(port, "GET", "/counter")[1] == b"2\n"


def test_random_differs(kvd):
    port, _ = kvd
    first, second = request(port, "GET", "/random")[1], request(port, "GET", "/random")[1]
    assert first != second
    assert len(first.split()[0]) == 32


def test_keep_alive_many_requests_one_connection(kvd):
    port, _ = kvd
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.connect()
        local = conn.sock.getsockname()
        for i in range(50):
            conn.request("PUT", f"/kv/k{i % 5}", body=str(i).encode())
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"stored\n")
            conn.request("GET", f"/kv/k{i % 5}")
            assert conn.getresponse().read() == str(i).encode()
        assert conn.sock.getsockname() == local
    finally:
        conn.close()


def test_pipelining_and_close(kvd):
    port, _ = kvd
    reply = raw_exchange(
        port,
        b"GET /health HTTP/1.1\r\n\r\n"
        b"PUT /kv/p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /kv/p HTTP/1.1\r\nConnection: close\r\n\r\n"
        b"GET /health HTTP/1.1\r\n\r\n",
    )
    assert reply.count(b"HTTP/1.1 200 OK") == 3  # nothing after Connection: close
    assert reply.endswith(b"Connection: close\r\n\r\nabc")


def test_http10_closes_unless_keep_alive(kvd):
    port, _ = kvd
    assert b"Connection: close" in raw_exchange(port, b"GET /health HTTP/1.0\r\n\r\n")
    reply = raw_exchange(
        port, b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /counter HTTP/1.0\r\n\r\n"
    )
    assert reply.count(b"200 OK") == 2
    assert b"Connection: keep-alive" in reply


@pytest.mark.parametrize(
    "garbage",
    [
        b"\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"get /health HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
        b"PUT /kv/a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"PUT /kv/a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"PUT /kv/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        bytes(range(256)) * 40,
    ],
)
def test_malformed_requests_get_4xx_and_kvd_survives(kvd, garbage):
    port, _ = kvd
    reply = raw_exchange(port, garbage)
    assert reply.startswith(b"HTTP/1.1 4") or reply.startswith(b"HTTP/1.1 505"), reply[:60]
    assert request(port, "GET", "/health")[0] == 200


def test_expect_100_continue(kvd):
    port, _ = kvd
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PUT /kv/e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"ok")
        assert s.recv(200).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python")
def test_listens_on_ipv6_and_ipv4(kvd):
    port, _ = kvd
    try:
        conn6 = http.client.HTTPConnection("::1", port, timeout=5)
        conn6.request("PUT", "/kv/six", body=b"over ipv6")
    except OSError as exc:  # a host without ::1 (IPv6 disabled): nothing to show here
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert conn6.getresponse().status == 200
    conn4 = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn4.request("GET", "/kv/six")
    response = conn4.getresponse()
    assert (response.status, response.read()) == (200, b"over ipv6")
    conn6.close()
    conn4.close()
