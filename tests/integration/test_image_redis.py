"""The default guest also serves Redis on 6379 (issue 15's RESP mix) and asks for immediate
ACKs on its routes (quickack), booted under QEMU with user-mode networking."""

import os
import shutil
import socket
import subprocess

import pytest
from test_image_boot import QEMU_ROOT, Guest, free_port, image  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def command(sock, *args):
    out = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    sock.sendall(out.encode())
    data = b""
    while not data.endswith(b"\r\n") or (
        data[:2] not in (b"$-", b"+O") and data.count(b"\r\n") < 2
    ):
        chunk = sock.recv(4096)
        assert chunk, "redis closed the connection"
        data += chunk
    return data


def test_redis_answers_and_routes_ack_at_once(image, tmp_path, monkeypatch):  # noqa: F811
    disk = tmp_path / image.disk.name
    shutil.copyfile(image.disk, disk)
    port = free_port()
    popen = subprocess.Popen

    def forward_redis(argv, **kw):  # the boot test's guest, 6379 forwarded instead of 80
        return popen([a.replace("-:80", "-:6379") for a in argv], **kw)

    monkeypatch.setattr(subprocess, "Popen", forward_redis)
    guest = Guest(image, disk, port)
    monkeypatch.undo()
    try:
        guest.wait_ready()
        console = "\n".join(guest.lines)
        assert "redis-server does not answer" not in console, console[-3000:]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            assert command(sock, "SET", "k1", "v1") == b"+OK\r\n"
            assert command(sock, "GET", "k1") == b"$2\r\nv1\r\n"
            assert command(sock, "GET", "nope") == b"$-1\r\n"
        console = "\n".join(guest.lines)
        assert "redis-server does not answer" not in console
        assert "no quickack" not in console, console[-2000:]
    finally:
        guest.kill()
    assert os.path.exists(QEMU_ROOT)
