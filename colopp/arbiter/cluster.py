"""A throwaway etcd cluster for tests, benchmarks and the lab: three members on loopback
ports, or one per network namespace (so a member, and the holder beside it, can be cut
off), plus helpers to run ``python -m colopp.arbiter`` processes and read their event lines.

Not for production: members run without TLS or authentication (the Ansible role sets up
the real cluster).
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colopp.errors import ConfigError

#: Namespaces of this cluster lab (its own: nothing shared with the QEMU labs).
SWITCH = "f21sw"
SUBNET = "198.19.21"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


@dataclass
class Member:
    name: str
    host: str
    client_port: int
    peer_port: int
    netns: str | None = None
    #: where the member listens, when not on ``host`` only (e.g. ``0.0.0.0`` before the
    #: lab's address ``host`` exists)
    listen: str | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def listen_url(self) -> str:
        return f"http://{self.listen or self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def listen_peer_url(self) -> str:
        return f"http://{self.listen or self.host}:{self.peer_port}"


@dataclass
class EtcdCluster:
    members: list[Member]
    data: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        if shutil.which("etcd") is None:
            raise ConfigError("etcd-server is not installed (scripts/setup.sh installs it)")
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            argv = [
                "etcd",
                f"--name={m.name}",
                f"--data-dir={self.data / m.name}",
                f"--listen-client-urls={m.listen_url}",
                f"--advertise-client-urls={m.client_url}",
                f"--listen-peer-urls={m.listen_peer_url}",
                f"--initial-advertise-peer-urls={m.peer_url}",
                f"--initial-cluster={initial}",
                "--initial-cluster-state=new",
                "--initial-cluster-token=colopp-test",
            ]
            with (self.data / f"{m.name}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(in_netns(m.netns, argv), stdout=log, stderr=subprocess.STDOUT)
                )

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)


class Events:
    """A ``python -m colopp.arbiter`` process and the JSON lines it prints."""

    def __init__(
        self, argv: list[str], netns: str | None = None, module: str = "colopp.arbiter"
    ) -> None:
        cmd = in_netns(netns, [sys.executable, "-m", module, *argv])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.stdout = self.proc.stdout
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(json.loads(raw))

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        """The next line of kind ``event`` (earlier lines are kept in ``seen``)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no {event!r} in {timeout}s; saw {self.seen}") from None
            self.seen.append(line)
            if line["event"] == event:
                return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.stdout is not None:
            self.stdout.close()


#: Its namespace names are fixed: two runs at once (two test sessions, a test and
#: bench.fleet) would delete each other's namespaces mid-run. Held until deleted.
LAB_LOCK = Path("/run/colopp-etcd-lab.lock")
_held: list[int] = []  # the lock's descriptor while this process holds it


def _lock(timeout: float = 1800.0) -> None:
    if _held:
        return
    fd = os.open(LAB_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _held.append(fd)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise ConfigError(f"another etcd lab holds {LAB_LOCK} for {timeout:.0f}s") from None
            time.sleep(0.2)  # flock has no timed wait


def _unlock() -> None:
    while _held:
        os.close(_held.pop())


def make_netns_lab(names: list[str]) -> None:
    """A switch namespace with a bridge, and one namespace per name joined to it (after
    waiting for any other run's lab on this machine: :data:`LAB_LOCK`)."""
    _lock()
    delete_netns_lab(names, unlock=False)
    run("ip", "netns", "add", SWITCH)
    run("ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", SWITCH, "link", "set", "br0", "up")
    for i, ns in enumerate(names, start=1):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "link", "add", f"f21v{i}", "netns", SWITCH, "type", "veth",
            "peer", "name", "eth0", "netns", ns)  # fmt: skip
        run("ip", "-n", SWITCH, "link", "set", f"f21v{i}", "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")


#: The service network of :func:`add_service_net` (not cut by :func:`cut`).
SERVICE_SUBNET = "198.19.22"
CLIENT_INDEX = 9


def add_service_net(names: list[str], client: str) -> None:
    """A second network beside the etcd one (bridge ``br1`` of the switch namespace): host
    ``i`` of ``names`` gets ``eth1`` at ``SERVICE_SUBNET.i``, and a namespace ``client`` at
    ``SERVICE_SUBNET.9``. :func:`cut` leaves it up: a host cut off from etcd still reaches
    its peer and its clients. ``client`` is deleted with the lab (pass it to
    :func:`delete_netns_lab`)."""
    run("ip", "-n", SWITCH, "link", "add", "br1", "type", "bridge")
    run("ip", "-n", SWITCH, "link", "set", "br1", "up")
    run("ip", "netns", "add", client)
    run("ip", "-n", client, "link", "set", "lo", "up")
    for i, ns in [*enumerate(names, start=1), (CLIENT_INDEX, client)]:
        dev = "eth0" if ns == client else "eth1"
        run("ip", "link", "add", f"f21s{i}", "netns", SWITCH, "type", "veth",
            "peer", "name", dev, "netns", ns)  # fmt: skip
        run("ip", "-n", SWITCH, "link", "set", f"f21s{i}", "master", "br1", "up")
        run("ip", "-n", ns, "addr", "add", f"{SERVICE_SUBNET}.{i}/24", "dev", dev)
        run("ip", "-n", ns, "link", "set", dev, "up")


def cut(index: int) -> None:
    """Cut namespace ``index`` (1-based) off from every other one on the etcd network."""
    run("ip", "-n", SWITCH, "link", "set", f"f21v{index}", "down")


def delete_netns_lab(names: list[str], unlock: bool = True) -> None:
    for ns in [*names, SWITCH]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    if unlock:
        _unlock()
