"""COLO++ under failure: the primary is SIGKILLed while it pre-releases read answers.

The pair runs colopp's comparator with pre-release (reads on /kv/) and a semi-active
secondary. A read-mostly client PUTs its keys, then only GETs them: once a checkpoint
re-arms the read rule, answers leave the primary before the secondary's copy. The primary
is killed at a moment the comparator is pre-releasing. Afterwards every answer the client
ever got equals what it wrote, the promoted secondary (its vCPUs restored first) serves the
same bytes for every acknowledged write, and no connection broke.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_pairs import Driven, driven_pair

from colopp.agent.semiactive import semiactive_quota
from colopp.colo.state import PairState
from colopp.demo.harness import ClientWorkload

SEED = 8  # keys per connection


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(
        tmp_path_factory.mktemp("pre"),
        qemu_root,
        "clppre",
        prerelease="auto",
        read_prefixes=("/kv/",),
        semiactive=True,
    )


def counters(site: Driven) -> dict[str, Any]:
    status = site.run(site.sp.pair.agents[site.sp.pair.primary.name].call("status"))
    found: dict[str, Any] = status["comparator"]["counters"]
    return found


def relay_counters(site: Driven, host: str) -> dict[str, Any]:
    status = site.run(site.sp.pair.agents[host].call("status"))
    found: dict[str, Any] = (status.get("ingress") or {}).get("counters") or {}
    return found


def test_kill_while_pre_releasing_keeps_the_client_consistent(site: Driven) -> None:
    sp = site.sp
    old_primary, secondary = sp.pair.primary, sp.pair.secondary
    assert secondary is not None
    shrunk = site.run(sp.pair.agents[secondary.name].call("status"))["vcpu"]
    assert shrunk is not None and shrunk["quota"] == semiactive_quota(), (
        "the secondary is semi-active"
    )
    workload = ClientWorkload(sp.plan, connections=3, read_only=SEED)
    try:
        while workload.stats()["writes_acked"] < 3 * SEED:
            pass  # one stats line every half second
        site.run(sp.next_checkpoint())  # re-arms the read rule after the seeding writes
        sp.supervise(site.loop)
        # Kill while answers are being pre-released (the counter moves between reads).
        before = counters(site)["pre_released_frames"]
        while counters(site)["pre_released_frames"] == before:
            workload.stats()
        relay = site.run(sp.pair.agents[secondary.name].call("status"))["ingress"]
        assert relay["alive"] and relay["counters"]["client_frames"] > 0, "the ACK gate relays"
        pid = site.run(sp.pair.agents[old_primary.name].call("status"))["pid"]
        os.kill(pid, signal.SIGKILL)
        workload.mark()
        site.run(sp.wait_for("failover", lambda: sp.handled(1) and sp.pair.secondary is None, 60))
        promoted = site.run(sp.pair.agents[secondary.name].call("status"))
        assert promoted["vcpu"] is None, "vCPUs restored before promotion"
        for tid, cpus in shrunk["cpus_before"].items():
            assert os.sched_getaffinity(int(tid)) == set(cpus)
        reads_then = workload.stats()["reads"]
        while workload.stats()["reads"] < reads_then + 200:
            pass  # the promoted secondary answers reads
        # The relay hands the promoted guest what it had not acknowledged, then ends (its
        # replay deadline is 60 s).
        deadline = time.monotonic() + 75
        while "replay" not in relay_counters(site, secondary.name):
            assert time.monotonic() < deadline, "the relay never finished its replay"
            workload.stats()  # one stats line every half second
        replay = relay_counters(site, secondary.name)["replay"]
        assert replay.get("unacknowledged", 0) == 0, replay
        assert replay.get("acks_owed", 0) == 0, replay  # ACKs lowered before the failover
        summary = workload.finish()
    finally:
        workload.kill()
    incident = sp.incidents[0]
    assert incident.error is None and incident.host == old_primary.name
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["read_mismatch"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
    assert sp.pair.state is not PairState.ERROR
