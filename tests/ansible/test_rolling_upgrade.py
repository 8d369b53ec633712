"""A rolling upgrade under a protected VM: the playbook deploys and protects colopp's guest,
a client workload runs, then the playbook installs a new colopp wheel (a new version built
from a copy of the checkout) and restarts the agents one host at a time (``serial: 1``,
waiting until the pair is protected again) and then the API. The pair stays protected, the
QEMU pids do not change, the client sees 0 failed requests, 0 resets and 0 lost writes."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_harness import REPO, VM_NAME, AnsibleSite, wait_until

from colopp.controller.agent_client import AgentClient
from colopp.demo.harness import ClientWorkload
from colopp.lab import Network, Node
from colopp.qemu.runtime import DEFAULT_ROOT
from colopp.tls import TlsFiles, client_context

PREFIX = "clpupg"
NEW_VERSION = "0.1.1"


@pytest.fixture
def site() -> Iterator[AnsibleSite]:
    if not Path("/usr/sbin/sshd").exists() or not (DEFAULT_ROOT / "usr/bin").exists():
        pytest.skip("needs sshd and the QEMU runtime (scripts/setup.sh, colopp qemu install)")
    made = AnsibleSite(PREFIX)
    try:
        made.start()
        yield made
    finally:
        made.close()


def new_source(site: AnsibleSite) -> Path:
    """A copy of the checkout (tracked files as they are now) with a new version number."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    target = site.tmp / "src-new"
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode())
    pyproject = target / "pyproject.toml"
    text = re.sub(r'(?m)^version = ".*"$', f'version = "{NEW_VERSION}"', pyproject.read_text())
    pyproject.write_text(text)
    return target


class StateWatch:
    """Polls the protection's state through the API until stopped; keeps every state seen."""

    def __init__(self, site: AnsibleSite, pid: str) -> None:
        self.states: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(site, pid), daemon=True)
        self._thread.start()

    def _run(self, site: AnsibleSite, pid: str) -> None:
        with site.api() as api:
            while not self._stop.wait(0.5):
                try:
                    self.states.append(api.get(f"/v1/protections/{pid}").json()["state"])
                except Exception:  # the API restarts during the upgrade
                    self.states.append("(api down)")

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        return self.states


def primary_checkpoints(site: AnsibleSite, host: str) -> int:
    assert site.plan is not None
    pki = site.tmp / "secrets" / "pki"
    tls = client_context(TlsFiles(pki / "controller.pem", pki / "controller.key", pki / "ca.pem"))
    token = (site.tmp / "secrets" / "agent.token").read_text().strip()
    address = str(site.plan.address(Node(host), Network.MANAGEMENT))

    async def count() -> int:
        client = AgentClient(host, address, 7400, token, tls=tls)
        try:
            return int((await client.call("status"))["checkpoints"])
        finally:
            await client.close()

    return asyncio.run(count())


@pytest.mark.integration
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_rolling_upgrade_keeps_the_protected_vm(site: AnsibleSite) -> None:
    first = site.playbook()
    assert first.returncode == 0, first.tail()
    with site.api() as api:
        (protection,) = api.get("/v1/protections").json()["protections"]
    assert protection["name"] == VM_NAME and protection["state"] == "protected", protection
    pids = (protection["primary"]["pid"], protection["secondary"]["pid"])
    primary = protection["primary"]["host"]
    assert site.plan is not None
    workload = ClientWorkload(site.plan)
    watch: StateWatch | None = None
    try:
        # Client connections must live across a checkpoint (README: known limits).
        start = primary_checkpoints(site, primary)
        wait_until("two checkpoints", lambda: primary_checkpoints(site, primary) >= start + 2, 60)
        agent_pids = {
            h: (site.root_of(h) / "run/colopp/colopp-agent.pid").read_text().strip()
            for h in ("hosta", "hostb")
        }
        api_pid = (site.root_of("controller") / "run/colopp/colopp-api.pid").read_text()
        source = new_source(site)
        watch = StateWatch(site, protection["id"])
        upgrade = site.playbook(
            "-e",
            f"colopp_source_dir={source}",
            "-e",
            f"colopp_wheelhouse={site.tmp / 'wheelhouse-new'}",
            timeout=1200,
        )
        states = watch.stop()
        print(f"upgrade run: {upgrade.seconds:.0f} s, recap {upgrade.recap}")
        assert upgrade.returncode == 0, upgrade.tail(200)
        summary = workload.finish()
    finally:
        if watch is not None:
            watch.stop()
        workload.kill()
    with site.api() as api:
        after = api.get(f"/v1/protections/{protection['id']}").json()
    assert after["state"] == "protected", after
    assert (after["primary"]["pid"], after["secondary"]["pid"]) == pids
    # every service runs the new build, restarted (new pids)
    for host in ("hosta", "hostb", "controller"):
        venv = site.root_of(host) / "opt/colopp/venv/lib"
        assert list(venv.glob(f"python3*/site-packages/colopp-{NEW_VERSION}.dist-info")), host
    for host, old in agent_pids.items():
        assert (site.root_of(host) / "run/colopp/colopp-agent.pid").read_text().strip() != old
    assert (site.root_of("controller") / "run/colopp/colopp-api.pid").read_text() != api_pid
    # the pair never left "protected" (only the API's own restart hides it)
    assert set(states) <= {"protected", "(api down)"}, states
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
