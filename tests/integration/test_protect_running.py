"""Protect a VM colopp did not start, while it serves, then unprotect it (issue #17):
a plain QEMU on the lab with its own disk file and QMP socket is taken over by a local
live migration, protected live onto the other host, serves through COLO, is unprotected
and serves alone; every acknowledged write (one made before protection included) is read
back over HTTP and from the VM's original disk file, which the primary had open. And the
same with a failover instead of the unprotect: the secondary the live mirror filled
serves, every write read back from its disk. (About 50 s each on the lab.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from bench.inplace_running import protect_running_trial


def test_a_running_plain_qemu_is_protected_and_unprotected_on_its_own_disk(
    needs_root: None, qemu_root: Path, tmp_path: Path
) -> None:
    result = asyncio.run(
        protect_running_trial(
            Console(stderr=True), state=tmp_path / "state", prefix="clptr", qemu_root=qemu_root
        )
    )
    assert result["opened_original_disk"], result
    assert result["before_protection_read_back"], result
    assert result["writes_acked"] > 0 and result["writes_lost"] == 0, result
    assert result["requests_failed"] == 0 and result["connections_reset"] == 0, result
    assert result["stopped_returncode"] == 0, result


def test_a_protected_running_vm_fails_over_to_the_secondary_its_mirror_filled(
    needs_root: None, qemu_root: Path, tmp_path: Path
) -> None:
    result = asyncio.run(
        protect_running_trial(
            Console(stderr=True),
            state=tmp_path / "state",
            prefix="clptf",
            qemu_root=qemu_root,
            failover=True,
        )
    )
    assert result["opened_original_disk"], result
    assert result["before_protection_read_back"], result  # from the secondary's disk
    assert result["writes_acked"] > 0 and result["writes_lost"] == 0, result
    assert result["requests_failed"] == 0 and result["connections_reset"] == 0, result
    assert result["stopped_returncode"] == 0, result
