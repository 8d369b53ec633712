"""Protect a running libvirt domain without restarting it (issue #17), against a real
libvirtd: the domain is started the way an operator starts it (`virsh start`: libvirt
opens its tap, with a virtio-net header) on its own qcow2 file; its tap is then moved
onto host A's bridge in the lab. Under client load the pair takes it over on host A
(a live migration through libvirt's QMP passthrough into colopp's QEMU, ``vnet_hdr=on``,
on the domain's own disk file), protects it live onto host B, fails over when the
primary is SIGKILLed, re-protects onto host A, and unprotects. Every acknowledged write
is read back over HTTP and from the disk the VM ends on; the writes acknowledged before
the failover (one made before protection included) from the domain's own disk file.
(About 2 min on the lab.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from libvirt_lab import URI, running_domain_xml, running_libvirtd, wait_until
from rich.console import Console

from bench.inplace_disk import keys_missing_on_disk
from bench.inplace_running import BEFORE_KEY, BEFORE_VALUE, client_put, wait_ready
from colopp.controller.setup import prepare_local_pair
from colopp.demo.harness import ClientWorkload, SupervisedPair
from colopp.domain import Role
from colopp.lab.plan import Node
from colopp.qemu.argv import ComparatorKind

PREFIX = "clplrn"
DOMAIN = "lvrunning"
TAP = "clplrnvm0"
FAILOVER_KEY, FAILOVER_VALUE = "before-failover", "acked-by-the-taken-over-primary"
COUNTERS = (
    "primary_frames_in",
    "secondary_frames_in",
    "matched_frames",
    "flushed_frames",
    "passthrough_frames",
    "malformed_total",
    "checkpoints_done",
)
pytestmark = pytest.mark.timeout(900)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=30)


def _tap_flags(netns: str, tap: str) -> str:
    """``ip -d link`` of ``tap`` in ``netns``: its tun flags (``vnet_hdr on``...)."""
    argv = ["ip", "-d", "-n", netns, "link", "show", "dev", tap]
    return subprocess.run(argv, check=True, timeout=30, capture_output=True, text=True).stdout


def _opened(pid: int) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            st = os.stat(fd)
            out.add((st.st_dev, st.st_ino))
    return out


@pytest.fixture
def libvirt_module(needs_root: None, qemu_root: Path) -> Iterator[Any]:
    with running_libvirtd(qemu_root) as libvirt:
        yield libvirt


async def _trial(libvirt: Any, qemu_root: Path, state: Path) -> dict[str, Any]:
    console = Console(stderr=True)
    local = await prepare_local_pair(
        state, qemu_root, ComparatorKind.COLOPP, console, prefix=PREFIX
    )
    await local.deployment.start()
    sp = SupervisedPair(local)
    for agent in sp.pair.agents.values():  # authenticate now: an idle connection is dropped
        await agent.call("ping")
    plan = sp.plan
    folder = state / "domain"
    folder.mkdir(parents=True, mode=0o700)
    disk, serial = folder / "web.qcow2", folder / "serial.log"
    img = local.runtime.tool_argv("qemu-img")
    convert = [*img, "convert", "-O", "qcow2", str(local.config.base_disk), str(disk)]
    await asyncio.to_thread(
        subprocess.run, convert, check=True, timeout=120, env=local.runtime.env()
    )
    conn = libvirt.open(URI)
    with contextlib.suppress(libvirt.libvirtError):  # a previous run's leftover
        old = conn.lookupByName(DOMAIN)
        if old.isActive():
            old.destroy()
        old.undefine()
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("link", "del", TAP)
    _ip("tuntap", "add", "dev", TAP, "mode", "tap")
    dom = conn.defineXML(running_domain_xml(DOMAIN, local.config.vm, disk, TAP, serial))
    workload: ClientWorkload | None = None
    netns, bridge = plan.netns(Node.HOST_A), plan.tap(Node.HOST_A).bridge
    writes_file = state / "writes.json"
    try:
        dom.create()  # virsh start: libvirt opens the tap (IFF_VNET_HDR)
        source_pid = int((Path("/run/libvirt/qemu") / f"{DOMAIN}.pid").read_text())
        # The operator's bridge is host A's: move the tap (QEMU keeps its fd) there.
        _ip("link", "set", "dev", TAP, "netns", netns)
        _ip("-n", netns, "link", "set", "dev", TAP, "master", bridge, "up")
        await asyncio.to_thread(_wait_domain_ready, serial, dom)
        domain_tap = await asyncio.to_thread(_tap_flags, netns, TAP)
        address = str(plan.guest_address.ip)
        client = plan.netns(Node.CLIENT)
        await asyncio.to_thread(client_put, client, address, BEFORE_KEY, BEFORE_VALUE)
        workload = ClientWorkload(plan, connections=3, writes_out=writes_file)
        await asyncio.to_thread(workload.served, 20)
        workload.mark()
        result = await sp.pair.protect_running(domain=DOMAIN)
        await sp.next_checkpoint()
        workload.mark()
        primary = await sp.pair.agents[sp.pair.primary.name].call("status")
        original = os.stat(disk)
        same_disk = (original.st_dev, original.st_ino) in _opened(int(primary["pid"]))
        domain_active = bool(dom.isActive())
        copy_argv = Path(f"/proc/{primary['pid']}/cmdline").read_bytes().split(b"\0")
        copy_tap = await asyncio.to_thread(_tap_flags, netns, result["take_over"]["tap"])
        await asyncio.to_thread(workload.served, 20)
        await asyncio.to_thread(client_put, client, address, FAILOVER_KEY, FAILOVER_VALUE)
        run_dir = state / "hosta" / local.config.vm.name / Role.PRIMARY.value
        compared = await asyncio.to_thread(_compared, run_dir / "compare.json")
        # Windows (pairs of marks): protection, failover, re-protection, unprotect.
        workload.mark()
        await sp.pair.agents[sp.pair.primary.name].call("kill_vm")
        await sp.pair.failover(Role.PRIMARY)
        await asyncio.to_thread(workload.served, 20)
        workload.mark()
        await asyncio.to_thread(workload.served, 20)
        workload.mark()
        reprotected = await sp.pair.reprotect()
        await sp.next_checkpoint()
        workload.mark()
        await asyncio.to_thread(workload.served, 20)
        workload.mark()
        await sp.pair.unprotect()
        await asyncio.to_thread(workload.served, 20)
        workload.mark()
        summary = await asyncio.to_thread(workload.finish, 300)
        serving = sp.pair.primary.name
        stopped = await sp.pair.agents[serving].call("stop_vm", timeout=30)
        writes: dict[str, str] = json.loads(writes_file.read_text())
        writes |= {BEFORE_KEY: BEFORE_VALUE, FAILOVER_KEY: FAILOVER_VALUE}
        final = state / serving / local.config.vm.name / Role.SECONDARY.value / "disk.qcow2"
        missing = await asyncio.to_thread(keys_missing_on_disk, local.runtime, final, writes)
        before = {BEFORE_KEY: BEFORE_VALUE, FAILOVER_KEY: FAILOVER_VALUE}
        missing_own = await asyncio.to_thread(keys_missing_on_disk, local.runtime, disk, before)
    finally:
        if workload is not None:
            workload.kill()
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefine()
        conn.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("-n", netns, "link", "del", TAP)
        await sp.close()
    return {
        "source_pid": source_pid,
        "take_over": result["take_over"],
        "same_disk": same_disk,
        "domain_tap_flags": domain_tap,
        "copy_tap_flags": copy_tap,
        "copy_netdev": [a.decode() for a in copy_argv if a.startswith(b"tap,")],
        "compared": {k: compared.get(k) for k in COUNTERS},
        "domain_active_after": domain_active,
        "served_by": serving,
        "reprotect_s": reprotected.get("reprotect_s"),
        "summary": summary,
        "missing_final": missing,
        "missing_own_disk": missing_own,
        "stopped_returncode": stopped.get("returncode"),
    }


def _compared(status: Path) -> dict[str, Any]:
    """The comparator's counters once it has matched a frame (its status file is rewritten
    every 0.5 s)."""
    seen: dict[str, Any] = {}

    def matched() -> bool:
        with contextlib.suppress(OSError, ValueError):
            seen.update(json.loads(status.read_text()))
        return int(seen.get("matched_frames", 0)) > 0

    with contextlib.suppress(TimeoutError):
        wait_until("the comparator matched a frame", matched, 30)
    return seen


def _wait_domain_ready(serial: Path, dom: Any) -> None:
    class _Alive:  # wait_ready's process protocol: poll() is None while it runs
        def poll(self) -> int | None:
            return None if dom.isActive() else 1

    wait_ready(serial, _Alive())  # type: ignore[arg-type]


def test_a_running_libvirt_domain_is_protected_failed_over_reprotected_and_unprotected(
    libvirt_module: Any, qemu_root: Path, tmp_path: Path
) -> None:
    out = asyncio.run(_trial(libvirt_module, qemu_root, tmp_path / "state"))
    summary = out["summary"]
    figures = {
        k: summary[k]
        for k in ("requests_ok", "requests_failed", "connections_reset", "writes_acked")
    }
    figures |= {
        "writes_lost": summary["writes_lost"],
        "window_gaps_ms": summary["window_gaps_ms"],
        "window_gap_at_ms": summary["window_gap_at_ms"],
        "take_over_downtime_ms": out["take_over"]["downtime_ms"],
        "take_over_s": out["take_over"]["took_s"],
        "reprotect_s": out["reprotect_s"],
        "compared": out["compared"],
        "served_by": out["served_by"],
    }
    print(f"\nrunning libvirt domain: {json.dumps(figures, default=str)}")
    taken = out["take_over"]
    assert taken["domain"] == DOMAIN and taken["source_pid"] == out["source_pid"], taken
    assert taken["vm"]["vnet_hdr"] is True, taken
    assert out["same_disk"], out  # the primary had the domain's own file open
    assert out["domain_active_after"] is False  # its old QEMU is gone, the VM is not
    # libvirt opened the domain's tap with a virtio-net header; colopp's copy opened its
    # own with one too, and the comparator parsed the filters' frames (header length word).
    assert "vnet_hdr on" in out["domain_tap_flags"], out["domain_tap_flags"]
    assert "vnet_hdr on" in out["copy_tap_flags"], out["copy_tap_flags"]
    assert all("vnet_hdr=on" in a for a in out["copy_netdev"]) and out["copy_netdev"], out
    compared = out["compared"]
    assert compared["matched_frames"] > 0 and compared["malformed_total"] == 0, compared
    assert summary["writes_acked"] > 0, summary
    assert summary["writes_lost"] == 0, summary["lost_keys"]
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0, summary
    assert out["missing_final"] == [], out["missing_final"]
    assert out["missing_own_disk"] == [], out  # acked before the failover, on its own file
    assert out["stopped_returncode"] == 0, out
