"""``python -m colopp.mirror`` on real sockets: this test plays QEMU's ``mirror0`` (a unix
server) and the secondary host (TCP on loopback). Whole frames, from a frame boundary, to
the newest peer; none dropped silently; it ends with its source; a crashed child ends the
comparator that started it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from colopp.compare.framing import FrameDecoder, encode_frame
from colopp.compare.mirror_child import MirrorChild
from colopp.polling import wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.path = tmp / "mirror0.sock"
        self.status = tmp / "mirror.json"
        self.port = _free_port()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(self.path))
        self.server.listen(1)
        argv = [sys.executable, "-m", "colopp.mirror", "--from", f"unix:{self.path}"]
        argv += ["--to", f"listen:tcp:127.0.0.1:{self.port}", "--status", str(self.status)]
        self.proc = subprocess.Popen([*argv, "--status-interval", "0.05", *extra])
        self.server.settimeout(10)
        self.qemu, _ = self.server.accept()
        self.peers: list[socket.socket] = []

    def state(self) -> dict[str, object]:
        try:
            data = json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def connect_peer(self) -> socket.socket:
        peers = self.state().get("peers", 0)
        peer = wait_until("the mirror's port", lambda: _connect(self.port), timeout=10, period=0.05)
        wait_until(
            "the mirror to take the peer",
            lambda: self.state().get("peers", 0) == peers + 1 and self.state()["peer_connected"],
            timeout=10,
            period=0.02,
        )
        self.peers.append(peer)
        return peer

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        self.qemu.close()
        self.server.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _connect(port: int) -> socket.socket | None:
    sock = socket.socket()
    try:
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    sock.settimeout(10)
    return sock


def _frames(sock: socket.socket, count: int) -> list[bytes]:
    decoder, out = FrameDecoder(), []
    while len(out) < count:
        chunk = sock.recv(65536)
        assert chunk, f"peer closed after {len(out)} of {count} frames"
        out += [f.data for f in decoder.feed(chunk)]
    assert decoder.malformed == 0 and decoder.buffered == 0
    return out


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def test_frames_without_a_peer_are_counted_then_a_peer_gets_whole_frames_in_order(
    rig: Rig,
) -> None:
    rig.qemu.sendall(encode_frame(b"before" * 10))
    wait_until("the drop to be counted", lambda: rig.state().get("dropped_frames") == 1, 10, 0.02)
    peer = rig.connect_peer()
    sent = [bytes([i % 256]) * (60 + i) for i in range(300)]
    stream = b"".join(encode_frame(f) for f in sent)
    for i in range(0, len(stream), 777):  # cut mid-frame, as QEMU's separate writes may
        rig.qemu.sendall(stream[i : i + 777])
    assert _frames(peer, len(sent)) == sent
    wait_until("the count", lambda: rig.state().get("frames") == 301, 10, 0.02)


def test_the_newest_peer_wins_and_starts_at_a_frame_boundary(rig: Rig) -> None:
    first = rig.connect_peer()
    rig.qemu.sendall(encode_frame(b"one" * 30))
    assert _frames(first, 1) == [b"one" * 30]
    half = encode_frame(b"two" * 30)
    rig.qemu.sendall(half[:20])  # a frame begun before the reconnect...
    second = rig.connect_peer()
    assert first.recv(100) == b""  # the old connection is closed
    rig.qemu.sendall(half[20:] + encode_frame(b"three" * 30))
    assert _frames(second, 2) == [b"two" * 30, b"three" * 30]  # ...arrives whole


def test_it_ends_with_its_source(rig: Rig) -> None:
    rig.qemu.close()
    assert rig.proc.wait(10) == 0
    assert rig.state().get("peer_connected") is False


def test_bad_addresses_exit_2(tmp_path: Path) -> None:
    for args in (["--from", "tcp:1.2.3.4:5", "--to", "listen:tcp:127.0.0.1:1"],
                 ["--from", f"unix:{tmp_path}/x", "--to", "tcp:127.0.0.1:9"]):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "colopp.mirror", *args, "--connect-timeout", "0.1"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2 and "colopp.mirror:" in done.stderr


def test_a_crashed_child_ends_the_comparator_an_exit_0_or_a_stop_does_not() -> None:
    crashed: list[int] = []
    seen = threading.Event()

    def on_crash(code: int) -> None:
        crashed.append(code)
        seen.set()

    child = MirrorChild.start([sys.executable, "-c", "raise SystemExit(3)"], on_crash)
    assert child is not None and seen.wait(10) and crashed == [3]
    quiet = MirrorChild.start([sys.executable, "-c", "pass"], on_crash)
    assert quiet is not None and quiet.proc.wait(10) == 0
    # A child that runs until it is stopped: it blocks on a pipe nobody writes to.
    forever = "import os; os.read(os.pipe()[0], 1)"
    stopped = MirrorChild.start([sys.executable, "-c", forever], on_crash)
    assert stopped is not None
    stopped.stop()
    assert stopped.proc.returncode == -15 and crashed == [3]
    assert MirrorChild.start(None) is None


def test_only_the_secondary_host_may_connect(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "--allow", "127.0.0.1")
    try:
        stranger = socket.socket()
        stranger.bind(("127.0.0.2", 0))
        stranger.settimeout(10)
        wait_until(
            "the stranger's connect",
            lambda: stranger.connect_ex(("127.0.0.1", rig.port)) == 0,
            10,
            0.05,
        )
        rig.peers.append(stranger)
        assert stranger.recv(10) == b""  # closed at once
        wait_until("the refusal", lambda: rig.state().get("refused_peers") == 1, 10, 0.02)
        assert rig.state()["peer_connected"] is False
        peer = rig.connect_peer()
        rig.qemu.sendall(encode_frame(b"hello" * 20))
        assert _frames(peer, 1) == [b"hello" * 20]
    finally:
        rig.close()


def test_a_reconnect_frees_a_mirror_stuck_on_a_peer_that_stopped_reading(rig: Rig) -> None:
    stuck = rig.connect_peer()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    frame = encode_frame(b"f" * 1400)
    writer_done = threading.Event()

    def qemu_writes() -> None:  # QEMU's filter-mirror, blocked once every buffer is full
        try:
            for _ in range(20000):
                rig.qemu.sendall(frame)
            rig.qemu.sendall(encode_frame(b"marker" * 10))
        finally:
            writer_done.set()

    threading.Thread(target=qemu_writes, daemon=True).start()
    assert not writer_done.wait(1.0)  # the stuck peer holds everything up
    fresh = rig.connect_peer()
    decoder, seen = FrameDecoder(), []
    while b"marker" * 10 not in seen:
        chunk = fresh.recv(1 << 16)
        assert chunk, "the new peer was closed"
        seen = [f.data for f in decoder.feed(chunk)] or seen
    assert decoder.malformed == 0 and writer_done.wait(10)
    # What the stuck send held is gone, and counted.
    wait_until("the drop count", lambda: rig.state().get("dropped_frames", 0) > 0, 10, 0.02)
