"""The comparator's QMP link against a scripted QMP server on a unix socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from compare_fakes import TIMEOUT, ScriptedQmp

from colopp.compare.checkpoint import QmpCheckpointLink
from colopp.errors import QmpError


async def scenario(path: Path, refuse: bool) -> None:
    qemu = ScriptedQmp(refuse)
    server = await asyncio.start_unix_server(qemu.serve, str(path))
    done = asyncio.Event()
    link = QmpCheckpointLink(str(path), done.set, timeout=TIMEOUT)
    try:
        await asyncio.wait_for(link.start(connect_timeout=TIMEOUT), TIMEOUT)
        assert link.delay_ms == 2000
        if refuse:
            with pytest.raises(QmpError):
                await link.request("tcp_payload_mismatch")
            return
        await link.request("tcp_payload_mismatch")
        sent = [c for c in qemu.commands if c["execute"] == "migrate-set-parameters"]
        assert sent[0]["arguments"] == {"x-checkpoint-delay": 2000}
        qemu.event("RESUME")  # a RESUME without STOP is not a checkpoint
        qemu.event("STOP")
        qemu.event("RESUME")
        await asyncio.wait_for(done.wait(), TIMEOUT)
    finally:
        await link.close()
        if qemu.writer is not None:
            qemu.writer.close()
            await qemu.writer.wait_closed()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("refuse", [False, True], ids=["accepted", "refused"])
def test_qmp_link(tmp_path: Path, refuse: bool) -> None:
    asyncio.run(scenario(tmp_path / "primary-compare.qmp", refuse))
