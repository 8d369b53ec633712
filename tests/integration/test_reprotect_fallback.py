"""A live re-protection whose RAM pre-copy cannot converge still ends, in bounded time,
through the stop-and-copy fallback (colopp.colo.converge), with clients served throughout.

The pre-copy is capped at 2 MiB/s (a 256 MiB guest would need two minutes for its first
pass alone): the agent widens the downtime limit, then lets QEMU stop the guest and send
the rest at full speed. Client load runs across the kill, the failover and the fallback.
Marked slow (about 200 s here, most of it the pair's setup): the unit tier checks the same
decisions and the agent's escalation against a scripted QEMU on every run.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_pairs import Driven, driven_pair

from colopp.colo.converge import LiveBudget
from colopp.colo.state import PairState

FIGURES = ("fallbacks", "precopy_s", "switch_ms", "took_s", "reprotect_s")
pytestmark = pytest.mark.slow

SLOW_LINK = LiveBudget(
    precopy_bandwidth=2 << 20, widen_s=2.0, stop_s=4.0, give_up_s=60.0, per_gib_s=0.1
)


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("rfb"), qemu_root, "clprfb")


def test_reprotection_falls_back_to_stop_and_copy_within_its_bound(site: Driven) -> None:
    sp = site.sp
    workload = site.supervised_under_load()
    try:
        sp.pair.live_budget = SLOW_LINK
        primary = sp.pair.agents[sp.pair.primary.name]
        os.kill(site.run(primary.call("status"))["pid"], signal.SIGKILL)
        bound = SLOW_LINK.bound_s(256)
        site.run(
            sp.wait_for(
                "re-protected by the fallback",
                lambda: sp.handled(1) and sp.pair.state is PairState.PROTECTED,
                bound + 60,
            )
        )
        assert sp.incidents[-1].error is None, sp.incidents[-1]
        (event,) = [e for e in sp.pair.events if e["kind"] == "reprotected"]
        assert [stage for stage, _ in event["fallbacks"]] == ["widen", "stop-and-copy"]
        assert event["stage"] == "stop-and-copy"
        print("re-protected by the fallback:", {k: event[k] for k in FIGURES})
        # Ended by the fallback, not by a timeout: well inside the pre-copy's give-up time.
        assert event["precopy_s"] < SLOW_LINK.give_up_s
        sides = site.run(sp.pair.status())["sides"]
        assert {s["colo"]["mode"] for s in sides.values()} == {"primary", "secondary"}
        site.run(sp.next_checkpoint())
        summary = workload.finish()
    finally:
        workload.kill()
    assert summary["requests_ok"] > 0
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
