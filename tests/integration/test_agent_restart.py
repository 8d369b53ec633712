"""Agent restart (an upgrade): each host's agent in turn gets SIGTERM and a new agent starts;
the new one re-adopts QEMU, its QMP socket and the comparator, the supervisor waits for it
(no failover), and the pair keeps checkpointing. The secondary is semi-active: its vCPU cap
(a cgroup) stays in force across its agent's restart and is lifted when it is promoted by a
failover afterwards. Under client load: 0 failed requests, 0 resets, 0 lost writes, the same
QEMU and comparator pids before and after."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_pairs import Driven, agent_status, driven_pair

from colopp.agent.state_file import STATE_FILE
from colopp.colo.state import PairState
from colopp.vcpu.cgroup import CgroupVersion, cgroup_of, find_cpu_controller, parse_cpu_max


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("adopt"), qemu_root, "clpadp", semiactive=True)


def cap_in_force(pid: int, tids: list[int]) -> tuple[str, int | None] | None:
    """The cgroup every vCPU thread of ``pid`` is in (the kernel's view, whatever the agent
    mounted) and its quota in us (None: no limit); None when they are not under colopp's."""
    controller = find_cpu_controller()
    assert controller is not None
    groups = {
        cgroup_of(Path(f"/proc/{pid}/task/{tid}/cgroup").read_text(), controller.version)
        for tid in tids
    }
    (group,) = groups
    if not group.startswith("/colopp/"):
        return None
    folder = controller.mount / group.lstrip("/")
    if controller.version is CgroupVersion.V2:
        return group, parse_cpu_max((folder / "cpu.max").read_text())[0]
    quota = int((folder / "cpu.cfs_quota_us").read_text())
    return group, quota if quota > 0 else None


def test_agents_restart_one_at_a_time_keep_the_pair(site: Driven) -> None:
    sp = site.sp
    deployment = sp.local.deployment
    workload = site.supervised_under_load()
    try:
        before = {n: site.run(agent_status(site, n)) for n in ("hosta", "hostb")}
        assert before["hosta"]["role"] == "primary"
        assert before["hosta"]["comparator"]["alive"] is True
        shrunk = before["hostb"]["vcpu"]
        assert shrunk is not None and shrunk["cgroup"], before["hostb"]
        tids = shrunk["thread_ids"]
        capped = cap_in_force(before["hostb"]["pid"], tids)
        assert capped is not None and capped[1] is not None, capped
        for name in ("hosta", "hostb"):
            state = deployment.state_dir / name / STATE_FILE
            assert state.stat().st_mode & 0o777 == 0o600
            site.run(deployment.restart_agent(name))
            after = site.run(agent_status(site, name))
            assert after["pid"] == before[name]["pid"], f"{name}: QEMU replaced"
            assert after["vm_alive"] is True and after["role"] == before[name]["role"]
            if name == "hosta":
                assert after["comparator"]["pid"] == before[name]["comparator"]["pid"]
                assert after["comparator"]["alive"] is True
            # Heartbeats flow to the new agent and replication goes on through it.
            site.run(sp.heartbeats())
            site.run(sp.next_checkpoint())
            site.run(sp.next_checkpoint())
            assert sp.incidents == [], sp.incidents
            assert sp.pair.state is PairState.PROTECTED
        # The semi-active cap is the same cgroup, still in force, and known to the new agent.
        assert site.run(agent_status(site, "hostb"))["vcpu"]["thread_ids"] == tids
        assert cap_in_force(before["hostb"]["pid"], tids) == capped
        # A failover after the restarts: the re-adopted secondary is promoted at full speed.
        os.kill(before["hosta"]["pid"], signal.SIGKILL)
        site.run(sp.wait_for("failover", lambda: sp.handled(1), 60))
        assert sp.incidents[0].error is None and sp.pair.primary.name == "hostb"
        assert site.run(agent_status(site, "hostb"))["vcpu"] is None
        assert cap_in_force(before["hostb"]["pid"], tids) is None, "still capped once promoted"
        workload.served(100)  # the promoted secondary serves
        summary = workload.finish()
    finally:
        workload.kill()
    for name in ("hosta", "hostb"):
        log = (deployment.state_dir / f"agent-{name}.log").read_text()
        assert "left running for the next agent" in log
        assert "re-adopted the" in log
        assert "plain TCP on" in log  # the lab's agents say they run without TLS
    assert "semi-active cap in" in (deployment.state_dir / "agent-hostb.log").read_text()
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
