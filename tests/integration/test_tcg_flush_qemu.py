"""On the QEMU colopp runs (TCG here), ``flush_translations`` drops every translation of a
running guest (HMP ``info jit``: ``TB flush count`` + 1) and leaves it running; a stopped
guest is left stopped and unflushed. With a disk that can hold snapshots (qcow2) as without
one, the ``loadvm`` it sends finds nothing to load. Why it exists: colopp/agent/tcg_flush.py."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from colopp.agent.tcg_flush import FLUSHED, NOT_RUNNING, flush_translations
from colopp.image.builder import GuestImage
from colopp.qemu.runtime import QemuRuntime
from colopp.qmp.monitor import Monitor


def flush_count(jit: str) -> int:
    found = re.search(r"TB flush count\s+(\d+)", jit)
    assert found, jit
    return int(found.group(1))


def start_qemu(
    runtime: QemuRuntime, image: GuestImage, tmp: Path, disk: bool
) -> subprocess.Popen[bytes]:
    """A TCG VM running the lab kernel, its QMP on ``tmp/qmp.sock``."""
    argv = [*runtime.system_argv(), "-accel", "tcg", "-m", "256", "-nodefaults"]
    argv += ["-display", "none", "-vga", "none", "-serial", f"file:{tmp / 'serial.log'}"]
    argv += ["-kernel", str(image.vmlinuz), "-initrd", str(image.initrd), "-append", "quiet"]
    argv += ["-qmp", f"unix:{tmp / 'qmp.sock'},server=on,wait=off"]
    env = runtime.env() | {"PATH": "/usr/bin:/bin"}
    if disk:
        qcow2 = tmp / "disk.qcow2"
        create = [*runtime.tool_argv("qemu-img"), "create", "-q", "-f", "qcow2", str(qcow2), "64M"]
        subprocess.run(create, check=True, env=env)
        argv += ["-drive", f"if=virtio,file={qcow2},format=qcow2"]
    return subprocess.Popen(argv, env=env)


def translated(jit: str) -> int:
    found = re.search(r"TB count\s+(\d+)", jit)
    return int(found.group(1)) if found else 0


async def scenario(qmp: Path) -> None:
    monitor = Monitor("tcg", qmp)
    await monitor.connect()
    try:
        for _ in range(200):  # until the guest's kernel runs translated code
            if translated(await monitor.hmp("info jit")) > 1000:
                break
            await asyncio.sleep(0.05)
        before = flush_count(await monitor.hmp("info jit"))
        assert await flush_translations(monitor) == FLUSHED
        assert flush_count(await monitor.hmp("info jit")) == before + 1
        status = await monitor.execute("query-status")
        assert status["status"] == "running", status
        await monitor.execute("stop")
        assert await flush_translations(monitor) == NOT_RUNNING
        assert flush_count(await monitor.hmp("info jit")) == before + 1
        status = await monitor.execute("query-status")
        assert status["status"] == "paused", status
    finally:
        await monitor.close()


@pytest.mark.parametrize("disk", [False, True], ids=["no_disk", "qcow2_disk"])
def test_flush_translations_on_a_real_qemu(
    runtime: QemuRuntime, guest_image: GuestImage, tmp_path: Path, disk: bool
) -> None:
    proc = start_qemu(runtime, guest_image, tmp_path, disk)
    try:
        asyncio.run(scenario(tmp_path / "qmp.sock"))
    finally:
        proc.kill()
        proc.wait()
