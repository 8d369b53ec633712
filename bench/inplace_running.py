"""Protect a VM that colopp did not start, while it serves (``bench.inplace``'s
``protect_running`` keys).

The VM is a plain QEMU started here in host A's namespace, with its own QMP socket, its
own disk file and the lab's tap (the shape :mod:`colopp.qemu.running` documents). Under
client load a write is made, the pair protects the running VM (take-over on the same
disk, live protection onto host B), serves, is unprotected, serves alone; then the VM is
stopped cleanly and every acknowledged write (the one made before protection included)
is read back from the VM's original disk file. (``failover``: the primary is SIGKILLed
instead of unprotected, and the writes are read back from the secondary's disk.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.inplace_disk import keys_missing_on_disk
from colopp.controller.rights import PairRights, right_key
from colopp.controller.setup import LocalPair, prepare_local_pair
from colopp.demo.harness import ClientWorkload, SupervisedPair
from colopp.domain import Role, VmSpec
from colopp.lab.plan import Node, netns_argv
from colopp.qemu.argv import ComparatorKind
from colopp.qemu.qemu_process import READY_LINE
from colopp.qemu.runtime import QemuRuntime

STATE = Path("/var/lib/colopp/bench-inplace")
BOOT_TIMEOUT = 120.0
BEFORE_KEY, BEFORE_VALUE = "before-protection", "written-before-colopp-protected-it"


def plain_argv(runtime: QemuRuntime, vm: VmSpec, folder: Path, tap: str) -> list[str]:
    """A VM as its owner would start it (not by colopp)."""
    argv = [
        *runtime.system_argv(),
        *("-name", "plain-web", "-accel", vm.accel, "-cpu", vm.cpu),
        *("-m", str(vm.memory_mb), "-smp", str(vm.vcpus), "-nodefaults"),
        *("-display", "none", "-serial", f"file:{folder / 'serial.log'}"),
        *("-qmp", f"unix:{folder / 'qmp.sock'},server=on,wait=off"),
        "-netdev",
        f"tap,id=net0,ifname={tap},script=no,downscript=no,vhost=off,vnet_hdr=off",
        *("-device", f"virtio-net-pci,netdev=net0,mac={vm.mac},romfile="),
        *("-drive", f"if=none,id=disk0,file={folder / 'web.qcow2'},format=qcow2"),
        *("-device", "virtio-blk-pci,drive=disk0"),
    ]
    if vm.kernel is not None and vm.initrd is not None:
        argv += ["-kernel", str(vm.kernel), "-initrd", str(vm.initrd), "-append", vm.append]
    return argv


async def start_plain_vm(local: LocalPair, folder: Path) -> subprocess.Popen[bytes]:
    """Start the lab's guest as a plain QEMU in host A's namespace, on its own disk file
    ``folder/web.qcow2`` (a copy of the lab's image) and QMP socket ``folder/qmp.sock``
    (then :func:`wait_ready` on ``folder/serial.log``)."""
    if folder.exists():  # an old serial log would say "ready" before this VM booted
        shutil.rmtree(folder)
    folder.mkdir(parents=True, mode=0o700)
    disk = folder / "web.qcow2"
    img = local.runtime.tool_argv("qemu-img")
    convert = [*img, "convert", "-O", "qcow2", str(local.config.base_disk), str(disk)]
    await asyncio.to_thread(
        subprocess.run, convert, check=True, timeout=120, env=local.runtime.env()
    )
    plan = local.deployment.plan
    argv = plain_argv(local.runtime, local.config.vm, folder, plan.tap(Node.HOST_A).ifname)
    return subprocess.Popen(netns_argv(plan.netns(Node.HOST_A), argv), env=local.runtime.env())


def wait_ready(serial: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while READY_LINE not in (serial.read_bytes() if serial.exists() else b""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the plain VM did not boot (exit {proc.poll()})")
        time.sleep(0.2)  # a boot: polled, nothing to wait on


def client_put(netns: str, address: str, key: str, value: str) -> None:
    code = (
        "import http.client,sys;c=http.client.HTTPConnection(sys.argv[1],80,timeout=10);"
        "c.request('PUT','/kv/'+sys.argv[2],body=sys.argv[3].encode());"
        "r=c.getresponse();sys.exit(0 if r.status==200 else 1)"
    )
    argv = netns_argv(netns, [sys.executable, "-c", code, address, key, value])
    subprocess.run(argv, check=True, timeout=30)


def client_get(netns: str, address: str, key: str) -> str:
    """The guest's value of ``key`` (GET /kv/KEY from the client's namespace)."""
    code = (
        "import http.client,sys;c=http.client.HTTPConnection(sys.argv[1],80,timeout=10);"
        "c.request('GET','/kv/'+sys.argv[2]);r=c.getresponse();b=r.read();"
        "sys.stdout.write(b.decode());sys.exit(0 if r.status==200 else 1)"
    )
    argv = netns_argv(netns, [sys.executable, "-c", code, address, key])
    return subprocess.run(argv, check=True, timeout=30, capture_output=True, text=True).stdout


def _opened(pid: int) -> set[tuple[int, int]]:
    """(device, inode) of every file process ``pid`` has open."""
    out: set[tuple[int, int]] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            st = os.stat(fd)
            out.add((st.st_dev, st.st_ino))
    return out


async def protect_running_trial(
    console: Console,
    memory_mb: int = 256,
    state: Path = STATE / "running",
    prefix: str = "clpir",
    qemu_root: Path | None = None,
    failover: bool = False,
    comparator: ComparatorKind = ComparatorKind.COLOPP,
    etcd_endpoints: list[str] | None = None,
) -> dict[str, Any]:
    """The ``protect_running`` keys (see the module docstring). With ``failover`` the
    primary is SIGKILLed instead of unprotected, and the writes are read back from the
    disk of the secondary that the live mirror filled (``failover_gap_ms``). With
    ``etcd_endpoints`` the pair holds its right to serve there (fleet etcd mode,
    :mod:`colopp.controller.rights`): ``right_tokens`` are the serving side's tokens after
    the protection and (with ``failover``) after the failover."""
    local = await prepare_local_pair(
        state, qemu_root, comparator, console, prefix=prefix, memory_mb=memory_mb
    )
    await local.deployment.start()
    sp = SupervisedPair(local)
    if etcd_endpoints is not None:
        sp.pair.rights = PairRights(etcd_endpoints, right_key(local.config.vm.name))
    tokens: list[int] = []
    for agent in sp.pair.agents.values():  # authenticate now: an idle connection is dropped
        await agent.call("ping")
    plan = sp.plan
    folder = state / "plain"
    disk = folder / "web.qcow2"
    plain = await start_plain_vm(local, folder)
    with tempfile.TemporaryDirectory(prefix="colopp-inplace-") as tmp:
        writes_file = Path(tmp) / "writes.json"
        workload: ClientWorkload | None = None
        try:
            await asyncio.to_thread(wait_ready, folder / "serial.log", plain)
            address = str(plan.guest_address.ip)
            await asyncio.to_thread(
                client_put, plan.netns(Node.CLIENT), address, BEFORE_KEY, BEFORE_VALUE
            )
            workload = ClientWorkload(plan, connections=3, writes_out=writes_file)
            await asyncio.to_thread(workload.served, 20)
            workload.mark()
            result = await sp.pair.protect_running(str(folder / "qmp.sock"))
            await sp.next_checkpoint()
            workload.mark()
            primary = await sp.pair.agents[sp.pair.primary.name].call("status")
            original = os.stat(disk)
            same_disk = (original.st_dev, original.st_ino) in _opened(int(primary["pid"]))
            console.log(f"protected the running VM: {result}")
            if sp.pair.rights is not None:
                tokens.append(sp.pair.rights.token)
            await asyncio.to_thread(workload.served, 20)
            checked = disk
            if failover:  # the secondary the live mirror filled serves, from its own disk
                workload.mark()
                await sp.pair.agents[sp.pair.primary.name].call("kill_vm")
                await sp.pair.failover(Role.PRIMARY)
                if sp.pair.rights is not None:
                    tokens.append(sp.pair.rights.token)
                await asyncio.to_thread(workload.served, 20)
                workload.mark()
                vm_dir = state / sp.pair.primary.name / sp.pair.config.vm.name
                checked = vm_dir / Role.SECONDARY.value / "disk.qcow2"
            else:
                await sp.pair.unprotect()
            await asyncio.to_thread(workload.served, 20)
            summary = await asyncio.to_thread(workload.finish, 300)
            stopped = await sp.pair.agents[sp.pair.primary.name].call("stop_vm", timeout=30)
            writes: dict[str, str] = json.loads(writes_file.read_text())
            writes[BEFORE_KEY] = BEFORE_VALUE
            missing = await asyncio.to_thread(keys_missing_on_disk, local.runtime, checked, writes)
        finally:
            if workload is not None:
                workload.kill()
            if plain.poll() is None:
                plain.kill()
            plain.wait()
            await sp.close()
    gaps = summary["window_gaps_ms"]
    return {
        "max_gap_ms": round(gaps[0], 1) if gaps and gaps[0] is not None else None,
        "requests_failed": summary["requests_failed"],
        "connections_reset": summary["connections_reset"],
        "writes_lost": summary["writes_lost"] + len(missing),
        "writes_lost_disk": len(missing),
        "before_protection_read_back": BEFORE_KEY not in missing,
        "same_disk": same_disk and BEFORE_KEY not in missing,
        "opened_original_disk": same_disk,
        "failover_gap_ms": round(gaps[1], 1)
        if failover and len(gaps) > 1 and gaps[1] is not None
        else None,
        "gap_at_ms": summary["window_gap_at_ms"][0] if summary["window_gap_at_ms"] else None,
        "primary_pauses_ms": primary.get("checkpoint_pauses_ms", [])[-6:],
        "writes_acked": summary["writes_acked"],
        "requests_ok": summary["requests_ok"],
        "take_over_downtime_ms": result["take_over"]["downtime_ms"],
        "take_over_s": round(result["take_over"]["took_s"], 2),
        "resync_s": round(result["resync_s"], 2),
        "precopy_s": round(result["precopy_s"], 2),
        "switch_ms": round(result["switch_ms"], 1),
        "stopped_returncode": stopped.get("returncode"),
        "lost_keys": missing[:20] + summary["lost_keys"][:20],
        "errors": summary["errors"],
        "right_tokens": tokens,
    }
