"""A real Linux server under COLO: the Debian 12 guest (systemd, own disk, 2 vCPUs, 1 GiB).

The pair boots the disk through SeaBIOS and extlinux (no ``-kernel``), runs colopp's
comparator with a semi-active secondary (its 2 vCPUs shrunk onto fewer host CPUs), and
serves redis from Debian's redis-server plus kvd. Under a redis write load and the kvd
client workload the primary QEMU is SIGKILLed: the supervisor fails over (vCPUs restored
first) and re-protects. Every redis SET acknowledged before the kill is readable after
it, nginx serves its static files, and the kvd client saw no failure.

Runs in CI (about 2 min here: boot 15-50 s, COLO, failover, re-protection); the image is
built by `make image`. The demo with this guest (test_demo.py) is marked slow.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_pairs import Driven, driven_pair
from netns_client import NetnsHTTPConnection, socket_in_netns

from colopp.colo.state import PairState
from colopp.lab import Node


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(
        tmp_path_factory.mktemp("debian"), qemu_root, "clpdeb", guest="debian", semiactive=True
    )


class Resp:
    """A minimal redis (RESP) client over one socket made in the client namespace."""

    def __init__(self, netns: str, host: str, timeout: float = 30.0) -> None:
        self.sock = socket_in_netns(netns, (host, 6379), timeout)
        self.buf = b""

    def command(self, *words: str) -> bytes | None:
        out = f"*{len(words)}\r\n".encode()
        for word in words:
            data = word.encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(out)
        line = self._line()
        if line[:1] in (b"+", b":"):
            return line[1:]
        if line[:1] == b"$":
            size = int(line[1:])
            if size < 0:
                return None
            while len(self.buf) < size + 2:
                self._fill()
            value, self.buf = self.buf[:size], self.buf[size + 2 :]
            return value
        raise RuntimeError(f"redis error: {line!r}")

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("redis closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def close(self) -> None:
        self.sock.close()


class RedisWriter:
    """A thread SETting fresh keys on one connection; records the acknowledged ones."""

    def __init__(self, netns: str, host: str) -> None:
        self.client = Resp(netns, host)
        self.acked: dict[str, str] = {}
        self.errors: list[str] = []
        self.progress = threading.Condition()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            key, value = f"deb:{n}", f"v{n}"
            try:
                if self.client.command("SET", key, value) != b"OK":
                    self.errors.append(f"SET {key} not OK")
            except (OSError, RuntimeError) as exc:
                self.errors.append(f"SET {key}: {exc!r}")
                return
            with self.progress:
                self.acked[key] = value
                self.progress.notify_all()
            n += 1

    def wait_acked(self, count: int, timeout: float) -> None:
        with self.progress:
            if not self.progress.wait_for(lambda: len(self.acked) >= count or self.errors, timeout):
                raise TimeoutError(f"only {len(self.acked)} redis writes acknowledged")
        assert not self.errors, self.errors

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(60)
        self.client.close()


def test_debian_guest_fails_over_under_redis_load(site: Driven) -> None:
    sp = site.sp
    vm = sp.local.config.vm
    assert (vm.kernel, vm.vcpus, vm.memory_mb) == (None, 2, 1024), "disk-booted, 2 vCPUs, 1 GiB"
    netns, guest = sp.plan.netns(Node.CLIENT), str(sp.plan.guest_address.ip)
    old_primary, secondary = sp.pair.primary, sp.pair.secondary
    assert secondary is not None
    shrunk = site.run(sp.pair.agents[secondary.name].call("status"))["vcpu"]
    assert shrunk is not None and len(shrunk["cpus_before"]) == 2, "both vCPUs shrunk"
    # MTTCG: each vCPU runs on a host thread of its own, and both sit on fewer host CPUs.
    assert len(set(shrunk["thread_ids"])) == 2
    for tid, cpus in shrunk["cpus_after"].items():
        assert os.sched_getaffinity(int(tid)) == set(cpus)
        assert len(cpus) < len(shrunk["cpus_before"][tid]) or len(os.sched_getaffinity(0)) == 1

    nginx = NetnsHTTPConnection(netns, guest, 8080, timeout=60)
    status, body = nginx.call("GET", "/64k.bin")
    nginx.close()
    assert status == 200 and len(body) == 64 * 1024

    before = Resp(netns, guest)
    assert before.command("SET", "before-failover", "kept") == b"OK"
    before.close()
    writer = RedisWriter(netns, guest)
    workload = site.supervised_under_load()
    try:
        writer.wait_acked(20, 120)
        pid = site.run(sp.pair.agents[old_primary.name].call("status"))["pid"]
        os.kill(pid, signal.SIGKILL)
        workload.mark()
        site.run(sp.wait_for("failover", lambda: sp.handled(1), 120))
        writer.wait_acked(len(writer.acked) + 20, 120)  # redis still takes writes
        promoted = site.run(sp.pair.agents[secondary.name].call("status"))
        assert promoted["vcpu"] is None, "vCPUs restored before promotion"
        for tid, cpus in shrunk["cpus_before"].items():  # the same QEMU, now the primary
            assert os.sched_getaffinity(int(tid)) == set(cpus), f"vCPU thread {tid} restored"
        workload.served(20)
        print(f"boot {sp.pair.boot_s:.1f} s, failover {sp.incidents[0].failover_ms:.0f} ms")
        site.run(sp.wait_for("re-protection", lambda: sp.pair.state is PairState.PROTECTED, 900))
        writer.stop()
        summary = workload.finish(600)
    finally:
        writer.stop()
        workload.kill()
    assert not writer.errors, writer.errors
    incident = sp.incidents[0]
    assert incident.error is None and incident.host == old_primary.name
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]

    after = Resp(netns, guest)
    try:
        assert after.command("GET", "before-failover") == b"kept"
        lost = [k for k, v in writer.acked.items() if after.command("GET", k) != v.encode()]
    finally:
        after.close()
    assert lost == [], f"{len(lost)} acknowledged redis writes lost, e.g. {lost[:5]}"
    nginx = NetnsHTTPConnection(netns, guest, 8080, timeout=60)
    status, body = nginx.call("GET", "/1m.bin")
    nginx.close()
    assert status == 200 and len(body) == 1024 * 1024
