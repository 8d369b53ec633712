"""Controller restart: SIGKILL the controller process mid-replication; the pair keeps
serving, a new controller re-attaches within 5 s, still handles the next failover, and
performs a planned switchover asked for through the CLI (``colopp switchover``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from colopp.controller.agent_client import AgentClient
from colopp.controller.pair import PairController
from colopp.controller.setup import LocalPair, prepare_local_pair
from colopp.controller.store import pair_record, save_record
from colopp.demo.harness import ClientWorkload
from colopp.domain import ComparatorKind
from colopp.polling import wait_until

PREFIX = "clprst"


@pytest.fixture(scope="module")
def protected(
    qemu_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalPair, Path]]:
    loop = asyncio.new_event_loop()
    state_dir = tmp_path_factory.mktemp("rst")
    local = loop.run_until_complete(
        prepare_local_pair(
            state_dir, qemu_root, ComparatorKind.COLOPP, Console(quiet=True), prefix=PREFIX
        )
    )
    loop.run_until_complete(local.deployment.start())
    pair = PairController(local.config, local.deployment.agents)
    try:
        loop.run_until_complete(pair.protect())
        agents = {n: (a.host, a.port) for n, a in local.deployment.agents.items()}
        record = state_dir / "pair.json"
        save_record(record, pair_record(pair, agents, state_dir / "agent.token"))
        yield local, record
    finally:
        loop.run_until_complete(local.deployment.stop())
        loop.close()


def start_controller(record: Path, status: Path) -> subprocess.Popen[bytes]:
    status.unlink(missing_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "colopp.controller",
            "--record",
            str(record),
            "--status",
            str(status),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_status(status: Path, check: Any, timeout: float) -> dict[str, Any]:
    def matched() -> dict[str, Any] | None:  # the controller writes the file
        try:
            data: dict[str, Any] = json.loads(status.read_text())
        except (OSError, ValueError):
            return None
        return data if check(data) else None

    return wait_until(f"controller status to match: {status}", matched, timeout, 0.05)


def wait_checkpoints(local: LocalPair, more: int, timeout: float = 60) -> None:
    """Wait until the primary has completed ``more`` further checkpoints."""

    async def count(client: AgentClient) -> int:
        return int((await client.call("status"))["checkpoints"])

    agent = local.deployment.agents[local.config.primary.name]
    loop = asyncio.new_event_loop()
    client = AgentClient("test", agent.host, agent.port, local.deployment.token)
    try:
        first = loop.run_until_complete(count(client))
        # Checkpoints happen in QEMU; the agent counts them when asked.
        wait_until(
            f"{more} more checkpoints",
            lambda: loop.run_until_complete(count(client)) >= first + more,
            timeout,
        )
    finally:
        loop.run_until_complete(client.close())
        loop.close()


def test_controller_restart_reattaches_and_keeps_supervising(
    protected: tuple[LocalPair, Path],
) -> None:
    local, record = protected
    status = record.with_name("controller.json")
    workload = ClientWorkload(local.deployment.plan)
    # Connections must live across one checkpoint before a failover (README: known limits).
    wait_checkpoints(local, 2)
    controller = start_controller(record, status)
    try:
        first = wait_status(
            status, lambda s: s.get("attached_at") and s["state"] == "protected", 20
        )
        assert first["consistent"] is True
        os.kill(controller.pid, signal.SIGKILL)
        controller.wait()
        killed_at = time.time()
        controller = start_controller(record, status)
        again = wait_status(
            status, lambda s: s.get("attached_at") and s["pid"] == controller.pid, 10
        )
        assert again["attached_at"] - killed_at < 5.0
        assert again["state"] == "protected" and again["consistent"] is True
        assert (again["primary"], again["secondary"]) == ("hosta", "hostb")
        # The restarted controller still supervises: lose the primary.
        pair_status = json.loads(record.read_text())
        assert pair_status["primary"]["name"] == "hosta"
        qemu_pid = int(
            (
                Path(local.deployment.state_dir) / "hosta" / "demo" / "primary" / "qemu.pid"
            ).read_text()
        )
        os.kill(qemu_pid, signal.SIGKILL)
        after = wait_status(
            status,
            lambda s: (
                s.get("state") == "protected" and s.get("primary") == "hostb" and s.get("incidents")
            ),
            90,
        )
        assert after["secondary"] == "hosta"
        assert json.loads(record.read_text())["primary"]["name"] == "hostb"
        # Planned switchover through the CLI, handled by the running controller.
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "colopp.cli",
                "switchover",
                "--record",
                str(record),
                "--status",
                str(status),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        back = json.loads(record.read_text())
        assert (back["state"], back["primary"]["name"], back["secondary"]["name"]) == (
            "protected",
            "hosta",
            "hostb",
        )
        summary = workload.finish()
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.wait(timeout=20)
        workload.kill()
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
