"""``colopp protect --running-qmp`` end to end: a plain QEMU serving on the lab (not started
by colopp) is protected through the CLI and the API's ``hosts`` placement, then
unprotected with the CLI; it serves throughout and afterwards, on its own disk file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench.inplace_running import client_get, client_put, start_plain_vm, wait_ready
from colopp.controller.setup import LocalPair, prepare_local_pair
from colopp.lab import Node
from colopp.qemu.argv import ComparatorKind
from tests.api.conftest import WRITE, ApiServer

PREFIX = "clpcr"
pytestmark = pytest.mark.slow  # a lab, a guest boot, a take-over and a live copy: ~2 min


@pytest.fixture
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, taps, QEMU)")


@pytest.fixture
def qemu_root() -> Path:
    from colopp.qemu.runtime import DEFAULT_ROOT

    return Path(os.environ.get("COLOPP_QEMU_ROOT", DEFAULT_ROOT))


def colopp(env: dict[str, str], *args: str, timeout: float = 600) -> Any:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COLOPP_API")}
    return subprocess.run(
        [sys.executable, "-m", "colopp.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**base, "COLUMNS": "200", **env},
    )


@pytest.fixture
def lab(needs_root: None, qemu_root: Path) -> Iterator[tuple[LocalPair, asyncio.AbstractEventLoop]]:
    """The lab with both agents running (no pair: the API drives them)."""
    loop = asyncio.new_event_loop()
    short = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))  # QEMU socket paths < 108 bytes
    local = loop.run_until_complete(
        prepare_local_pair(short, qemu_root, ComparatorKind.COLOPP, Console(stderr=True),
                           prefix=PREFIX)
    )  # fmt: skip
    try:
        loop.run_until_complete(local.deployment.start())
        yield local, loop
    finally:
        loop.run_until_complete(local.deployment.stop())
        loop.close()
        shutil.rmtree(short, ignore_errors=True)


def _hosts(local: LocalPair) -> dict[str, Any]:
    cfg, agents = local.config, local.deployment.agents
    assert cfg.secondary is not None
    return {
        role: {
            "name": slot.name,
            "agent": f"{agents[slot.name].host}:{agents[slot.name].port}",
            "tap": slot.tap,
            "repl_ip": slot.repl_ip,
        }
        for role, slot in (("primary", cfg.primary), ("secondary", cfg.secondary))
    }


def test_the_cli_protects_a_running_vm_and_unprotects_it(
    lab: tuple[LocalPair, asyncio.AbstractEventLoop], tmp_path: Path
) -> None:
    local, loop = lab
    plan = local.deployment.plan
    state = local.deployment.state_dir
    folder = state / "plain"
    plain = loop.run_until_complete(start_plain_vm(local, folder))
    server = ApiServer(
        tmp_path / "api",
        f"sqlite:///{tmp_path / 'api.db'}",
        COLOPP_AGENT_TOKEN_FILE=str(state / "agent.token"),
    )
    try:
        wait_ready(folder / "serial.log", plain)
        client, address = plan.netns(Node.CLIENT), str(plan.guest_address.ip)
        client_put(client, address, "before", "written-before-protection")
        hosts = tmp_path / "hosts.json"
        hosts.write_text(json.dumps(_hosts(local)))
        server.start()
        env = {"COLOPP_API_URL": server.url, "COLOPP_API_TOKEN": WRITE}
        qmp = str(folder / "qmp.sock")
        args = ["--hosts", str(hosts), "--name", "web1", "--comparator", "colopp", "--json"]
        done = colopp(env, "protect", "--running-qmp", qmp, *args, "--timeout", "400")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["state"] == "protected"
        client_put(client, address, "protected", "written-while-protected")
        done = colopp(env, "unprotect", "web1", "--json", "--timeout", "120")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["state"] == "unprotected"
        client_put(client, address, "after", "written-after-unprotect")
        for key, value in (("before", "written-before-protection"),
                           ("protected", "written-while-protected")):  # fmt: skip
            assert client_get(client, address, key) == value
    finally:
        with contextlib.suppress(Exception), server.client() as c:
            for p in c.get("/v1/protections").json()["protections"]:
                if not p["stopped"]:
                    c.delete(f"/v1/protections/{p['id']}", params={"stop": "true"})
        server.kill()
        if plain.poll() is None:
            plain.kill()
        plain.wait()
