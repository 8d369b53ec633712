"""Bad input gives a clear error naming what failed, and teardown still runs (real QEMU).

These run a HostAgent in-process in the root namespace with loopback addresses; QEMU
creates (and removes) its own throwaway tap.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colopp.agent.host import HostAgent
from colopp.domain import Ports, Role, VmSpec
from colopp.errors import GuestError, QemuNotFound, QemuStartError, QmpError
from colopp.image.builder import GuestImage
from colopp.image.cmdline import kernel_cmdline
from colopp.qemu.runtime import QemuRuntime, runtime_from
from colopp.side_request import SideRequest

LOOP = "127.0.0.1"


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind((LOOP, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ports() -> Ports:
    mirror, compare, nbd, migration = free_ports(4)
    return Ports(mirror=mirror, compare=compare, nbd=nbd, migration=migration)


def vm(image: GuestImage, **overrides: Any) -> dict[str, Any]:
    spec = VmSpec("badinput", image.vmlinuz, image.initrd, kernel_cmdline("198.18.0.100/24"))
    data = spec.to_dict()
    data.update(overrides)
    return data


def side(role: Role, tap: str, p: Ports) -> dict[str, Any]:
    return SideRequest(role, tap, LOOP, LOOP, p).to_dict()


def assert_no_qemu(agent: HostAgent, pid: int | None) -> None:
    assert agent.side is None
    if pid is not None:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_missing_qemu_binary_is_named() -> None:
    with pytest.raises(QemuNotFound, match="/nonexistent/qemu-system"):
        runtime_from(None, "/nonexistent/qemu-system")


def test_agent_names_a_binary_it_cannot_execute(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, guest_image: GuestImage
) -> None:
    agent = HostAgent("badbin", tmp_path, QemuRuntime(binary="/nonexistent/qemu-system-x86_64"))
    with pytest.raises(QemuNotFound, match="/nonexistent/qemu-system-x86_64"):
        loop.run_until_complete(
            agent.launch(
                vm(guest_image), side(Role.PRIMARY, "clpbad0", ports()), str(guest_image.disk)
            )
        )
    assert_no_qemu(agent, None)


def test_port_in_use_is_reported_in_qemus_words(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, runtime: QemuRuntime, guest_image: GuestImage
) -> None:
    p = ports()
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind((LOOP, p.mirror))
    busy.listen()
    agent = HostAgent("busyport", tmp_path, runtime)
    try:
        with pytest.raises(QemuStartError, match=r"(?i)address already in use"):
            loop.run_until_complete(
                agent.launch(
                    vm(guest_image), side(Role.PRIMARY, "clpbad1", p), str(guest_image.disk)
                )
            )
    finally:
        busy.close()
    assert_no_qemu(agent, None)


def test_guest_that_never_boots_times_out_with_the_serial_tail(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, runtime: QemuRuntime, guest_image: GuestImage
) -> None:
    empty_initrd = tmp_path / "empty.img"
    empty_initrd.write_bytes(b"")
    agent = HostAgent("noboot", tmp_path, runtime)
    launched = loop.run_until_complete(
        agent.launch(
            vm(guest_image, initrd=str(empty_initrd)),
            side(Role.PRIMARY, "clpbad2", ports()),
            str(guest_image.disk),
        )
    )
    try:
        with pytest.raises(GuestError, match="did not print COLOPP-GUEST-READY within 8s"):
            loop.run_until_complete(agent.wait_guest(timeout=8))
    finally:
        loop.run_until_complete(agent.stop_vm())
    assert_no_qemu(agent, launched["pid"])


def test_failing_qmp_command_is_named(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, runtime: QemuRuntime, guest_image: GuestImage
) -> None:
    agent = HostAgent("qmpfail", tmp_path, runtime)
    launched = loop.run_until_complete(
        agent.launch(
            vm(guest_image), side(Role.SECONDARY, "clpbad3", ports()), str(guest_image.disk)
        )
    )
    try:
        loop.run_until_complete(agent.prepare_secondary())
        with pytest.raises(QmpError) as info:
            loop.run_until_complete(agent.prepare_secondary())
        assert info.value.command == "nbd-server-start"
        assert "nbd-server-start" in str(info.value)
    finally:
        loop.run_until_complete(agent.stop_vm())
    assert_no_qemu(agent, launched["pid"])
