"""Agent restart with the libvirt backend, against a real libvirtd: a pair of libvirt domains
(the semi-active secondary pinned and capped through libvirt) under client load; each host's
agent in turn gets SIGTERM (an upgrade, one host at a time) and a new agent re-adopts its
domain by name: the same QEMU pids, the pair protected with checkpoints advancing through
the new agents, the secondary still capped. Then a failover (the primary's QEMU killed) still
works: the re-adopted secondary is promoted with its full CPUs. The client sees 0 failed
requests, 0 resets, 0 lost writes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_pairs import Driven, agent_status, driven_pair
from libvirt_lab import URI, discard_sides, running_libvirtd, user_domain_xml
from rich.console import Console

from colopp.agent.state_file import STATE_FILE
from colopp.colo.state import PairState
from colopp.domain import Backend
from colopp.image.builder import build_image
from colopp.image.cmdline import kernel_cmdline
from colopp.lab import Node, plan_lab

PREFIX = "clplvr"
DOMAIN = "lvadopt"
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    with running_libvirtd(qemu_root) as libvirt:
        image = build_image(None, console=Console(quiet=True))
        plan = plan_lab(PREFIX)
        append = kernel_cmdline(
            plan.guest_address.with_prefixlen, ip6_cidr=plan.guest_address6.with_prefixlen
        )
        conn = libvirt.open(URI)
        domain = conn.defineXML(
            user_domain_xml(DOMAIN, image, append, plan.tap(Node.HOST_A).ifname)
        )
        try:
            yield from driven_pair(
                tmp_path_factory.mktemp("lvadopt"),
                qemu_root,
                PREFIX,
                backend=Backend.LIBVIRT,
                vm_name=DOMAIN,
                semiactive=True,
            )
        finally:
            discard_sides(libvirt, conn, DOMAIN)
            domain.undefine()
            conn.close()


def libvirt_view(host: str) -> tuple[int, list[set[int]], int]:
    """The side domain's libvirt id, each vCPU's CPU set and its vcpu_quota."""
    import libvirt

    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(f"colopp-{DOMAIN}-{host}")
        _info, maps = dom.vcpus()
        quota = int(dom.schedulerParametersFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE)["vcpu_quota"])
        return int(dom.ID()), [{i for i, on in enumerate(m) if on} for m in maps], quota
    finally:
        conn.close()


def test_libvirt_agents_restart_readopt_their_domains(site: Driven) -> None:
    sp = site.sp
    deployment = sp.local.deployment
    host_cpus = len(os.sched_getaffinity(0))
    workload = site.supervised_under_load()
    try:
        before: dict[str, Any] = {n: site.run(agent_status(site, n)) for n in ("hosta", "hostb")}
        assert {s["backend"] for s in before.values()} == {"libvirt"}
        assert before["hosta"]["comparator"]["alive"] is True
        domains = {n: libvirt_view(n) for n in ("hosta", "hostb")}
        assert domains["hostb"][2] > 0 and before["hostb"]["vcpu"] is not None  # semi-active
        for name in ("hosta", "hostb"):
            state = deployment.state_dir / name / STATE_FILE
            assert state.stat().st_mode & 0o777 == 0o600
            site.run(deployment.restart_agent(name))
            after = site.run(agent_status(site, name))
            assert after["pid"] == before[name]["pid"], f"{name}: QEMU replaced"
            assert after["vm_alive"] is True and after["role"] == before[name]["role"]
            assert after["backend"] == "libvirt"
            if name == "hosta":
                assert after["comparator"]["pid"] == before[name]["comparator"]["pid"]
            # Heartbeats flow to the new agent; checkpoints go on through it.
            site.run(sp.heartbeats())
            site.run(sp.next_checkpoint())
            site.run(sp.next_checkpoint())
            assert sp.incidents == [], sp.incidents
            assert sp.pair.state is PairState.PROTECTED
        # The same domains (libvirt ids), the secondary still pinned and capped.
        assert {n: libvirt_view(n) for n in ("hosta", "hostb")} == domains
        assert site.run(agent_status(site, "hostb"))["vcpu"]["quota"] is not None
        # A failover after the restarts.
        workload.mark()
        os.kill(before["hosta"]["pid"], signal.SIGKILL)
        site.run(sp.wait_for("failover", lambda: sp.handled(1), 60))
        incident = sp.incidents[0]
        assert incident.error is None and incident.host == "hosta", incident
        assert sp.pair.primary.name == "hostb"
        promoted = site.run(agent_status(site, "hostb"))
        assert promoted["vcpu"] is None and promoted["pid"] == before["hostb"]["pid"]
        _id, cpus, quota = libvirt_view("hostb")
        assert cpus == [set(range(host_cpus))] and quota <= 0, (cpus, quota)
        workload.served(100)  # the promoted secondary serves
        summary = workload.finish()
    finally:
        workload.kill()
    for name in ("hosta", "hostb"):
        log = (deployment.state_dir / f"agent-{name}.log").read_text()
        assert "left running for the next agent" in log
        assert "re-adopted the" in log
    print(
        f"\nlibvirt restart + failover: {summary['requests_ok']} ok, outage "
        f"{summary['failover_outage_ms']} ms, fence + failover {incident.failover_ms:.0f} ms"
    )
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
