"""Losing the QMP monitor: the comparator says so and exits cleanly with a documented code.

The test plays the primary QEMU: chardev servers for primary_in and outdev, and the
comparator's own QMP monitor (a scripted server that can hang up).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from compare_fakes import TIMEOUT, Rig, ScriptedQmp, connect_when_ready, status_until
from compare_frames import arp_frame

from colopp.compare.addresses import parse_endpoint
from colopp.compare.checkpoint import QmpCheckpointLink
from colopp.compare.framing import encode_frames
from colopp.compare.shell import EXIT_PATH_LOST, EXIT_QMP_LOST, ComparatorShell, ShellOptions
from colopp.errors import QmpError


async def run_process(tmp: Path, act: str) -> tuple[int, str, dict[str, object], Rig]:
    rig = Rig(tmp)
    await rig.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *rig.argv(), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        await asyncio.wait_for(rig.primary.conn, TIMEOUT)
        await asyncio.wait_for(rig.outdev.conn, TIMEOUT)
        await asyncio.wait_for(rig.qmp.got_command.wait(), TIMEOUT)
        await status_until(rig.status_path, lambda st: st["shell"]["qmp"] is True)
        _, p_writer = rig.primary.conn.result()
        _, o_writer = rig.outdev.conn.result()
        if act.startswith("qmp_lost"):
            await rig.qmp.hang_up()
            await status_until(rig.status_path, lambda st: st["shell"]["qmp"] is False)
            # Blind: even a frame that passes straight through must not leave now.
            p_writer.write(encode_frames([arp_frame()], 0))
            await status_until(
                rig.status_path, lambda st: st["shell"]["qmp_lost_dropped_frames"] == 1
            )
        if act == "qmp_lost_then_sigterm":
            proc.send_signal(signal.SIGTERM)
        elif act in ("outdev_closed", "qmp_lost_then_outdev_closed"):
            o_writer.close()
        code = await asyncio.wait_for(proc.wait(), TIMEOUT)
        err = (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await rig.close()
    return code, err, json.loads(rig.status_path.read_text()), rig


def test_qmp_loss_exits_with_documented_code(tmp_path: Path) -> None:
    """Bug 6: no checkpoint is possible without the monitor: exit 4 so the agent restarts
    the comparator and forces a checkpoint; the last status says the monitor is gone."""
    code, err, status, rig = asyncio.run(run_process(tmp_path, "qmp_lost"))
    assert code == EXIT_QMP_LOST == 4, err
    assert "Traceback" not in err
    assert status["shell"]["qmp"] is False  # type: ignore[index]
    assert status["shell"]["outdev_frames"] == 0  # type: ignore[index]
    assert not rig.listen_path.exists()


def test_sigterm_after_qmp_loss_is_clean(tmp_path: Path) -> None:
    """Bug 7: a clean exit: code 0, final status, listen socket removed, no traceback."""
    code, err, status, rig = asyncio.run(run_process(tmp_path, "qmp_lost_then_sigterm"))
    assert code == 0, err
    assert "Traceback" not in err
    assert status["shell"]["qmp"] is False  # type: ignore[index]
    assert not rig.listen_path.exists()


@pytest.mark.parametrize("act", ["outdev_closed", "qmp_lost_then_outdev_closed"])
def test_outdev_closed_exits_3(tmp_path: Path, act: str) -> None:
    """Bug 7: outdev closing exits 3, also after the monitor was lost."""
    code, err, status, rig = asyncio.run(run_process(tmp_path, act))
    assert code == EXIT_PATH_LOST == 3, err
    assert "Traceback" not in err
    assert status["shell"]["outdev_connected"] is False  # type: ignore[index]
    assert not rig.listen_path.exists()


async def shell_scenario(tmp: Path) -> int:
    """Bug 7 in process: the monitor and outdev go together; shutdown must not abort."""
    rig = Rig(tmp)
    await rig.start()
    options = ShellOptions(
        primary_in=parse_endpoint(f"unix:{rig.primary.path}"),
        secondary_in=parse_endpoint(f"listen:unix:{rig.listen_path}"),
        outdev=parse_endpoint(f"unix:{rig.outdev.path}"),
        qmp=str(rig.qmp_path),
        status=rig.status_path,
    )
    shell = ComparatorShell(options)
    task = asyncio.create_task(shell.run())
    try:
        await asyncio.wait_for(rig.outdev.conn, TIMEOUT)
        await status_until(rig.status_path, lambda st: st["shell"]["qmp"] is True)
        _, writer = rig.outdev.conn.result()
        writer.close()
        await rig.qmp.hang_up()
        return await asyncio.wait_for(task, TIMEOUT)
    finally:
        await rig.close()


def test_shutdown_survives_a_lost_monitor(tmp_path: Path) -> None:
    code = asyncio.run(shell_scenario(tmp_path))
    assert code == EXIT_PATH_LOST
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["shell"]["qmp"] is False
    assert not (tmp_path / "red1.sock").exists()


async def link_scenario(tmp: Path) -> None:
    qemu = ScriptedQmp()
    path = tmp / "m.qmp"
    await qemu.listen(path)
    lost = asyncio.Event()
    link = QmpCheckpointLink(str(path), lambda: None, timeout=TIMEOUT, on_lost=lost.set)
    await asyncio.wait_for(link.start(connect_timeout=TIMEOUT), TIMEOUT)
    assert link.connected
    await qemu.hang_up()
    await asyncio.wait_for(lost.wait(), TIMEOUT)
    assert not link.connected
    with pytest.raises(QmpError):
        await link.request("tcp_payload_mismatch")
    await link.close()  # must not raise (EOFError escaped here)


def test_link_reports_loss_and_closes_quietly(tmp_path: Path) -> None:
    asyncio.run(link_scenario(tmp_path))


async def startup_scenario(tmp: Path) -> tuple[int, str, Path]:
    """Bug 7's sibling: SIGTERM while the comparator still waits for QEMU's sockets."""
    listen = tmp / "red1.sock"
    status = tmp / "status.json"
    argv = [
        *("-m", "colopp.compare", "--primary-in", f"unix:{tmp / 'absent0.sock'}"),
        *("--outdev", f"unix:{tmp / 'absent1.sock'}", "--secondary-in", f"listen:unix:{listen}"),
        *("--status", str(status), "--connect-timeout", "60"),
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        writer = await connect_when_ready(listen)  # listening: startup goes on
        writer.close()
        await writer.wait_closed()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, (await proc.stderr.read()).decode(), status


def test_sigterm_during_startup_is_clean(tmp_path: Path) -> None:
    code, err, status = asyncio.run(startup_scenario(tmp_path))
    assert code == 0, err
    assert "Traceback" not in err
    assert status.exists()
    assert not (tmp_path / "red1.sock").exists()


def test_listen_address_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """Bug 7's sibling: an unusable listen address exits 2 with a message, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "colopp.compare", "--primary-in", "unix:/nonexistent"),
                *(
                    "--outdev",
                    "unix:/nonexistent",
                    "--secondary-in",
                    f"listen:tcp:127.0.0.1:{port}",
                ),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "127.0.0.1" in done.stderr
