"""A probe QEMU (the KVM boot probe) dies with the process that started it: a harness
SIGKILLed mid-probe leaves nothing running. A protected VM's QEMU must not (agent restarts
re-adopt it), so only ``probe=True`` asks for it. Real processes, no QEMU needed: the
parent is a Python process that starts a :class:`QemuProcess` running ``sleep``."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PARENT = """
import asyncio, sys
from pathlib import Path
from colopp.qemu.qemu_process import QemuProcess

async def main() -> None:
    p = QemuProcess(["sleep", "300"], {}, Path(sys.argv[1]), probe=sys.argv[2] == "probe")
    await p.start()
    print(p.pid, flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie left for init to reap counts as gone
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _orphan_after_parent_killed(tmp_path: Path, kind: str) -> tuple[int, bool]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), kind], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    with parent.stdout:
        child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    # The kernel signals the child as the parent exits; a VM's QEMU gets no signal at all,
    # so it is checked once, right after its parent is gone.
    if kind == "probe":  # wait for its exit: a pidfd is readable once it has exited
        with contextlib.suppress(ProcessLookupError):
            pidfd = os.pidfd_open(child)
            try:
                select.select([pidfd], [], [], 10)
            finally:
                os.close(pidfd)
    return child, _alive(child)


def test_probe_dies_with_its_parent(tmp_path: Path) -> None:
    _child, alive = _orphan_after_parent_killed(tmp_path, "probe")
    assert not alive


def test_a_vms_qemu_outlives_its_agent(tmp_path: Path) -> None:
    child, alive = _orphan_after_parent_killed(tmp_path, "vm")
    try:
        assert alive
    finally:
        if alive:
            os.kill(child, signal.SIGKILL)


pytestmark = pytest.mark.integration
