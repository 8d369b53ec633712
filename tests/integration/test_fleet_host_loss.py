"""A fleet on a three-host lab: two kvd guests placed so that host A is primary for one
and secondary for the other; every link of host A is cut under client load on both. Each
protection is served again (vm0 by its secondary on host B, vm1 by its primary on host C)
and re-protected onto the remaining hosts; no request fails and no acknowledged write is
lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from colopp.colo.state import PairState
from colopp.demo.harness import ClientWorkload
from colopp.fleet.local import LocalFleet
from colopp.polling import await_until

# Minutes of QEMU (or a full playbook run): out of CI's budget.
pytestmark = pytest.mark.slow

LOST = "hosta"


Site = tuple[LocalFleet, asyncio.AbstractEventLoop]


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    loop = asyncio.new_event_loop()
    state = tmp_path_factory.mktemp("fleet")
    try:
        made = loop.run_until_complete(LocalFleet.start(state, qemu_root, "f21bfl", taps=2))
        try:
            yield made, loop
        finally:
            made.cut(LOST, up=True)
            loop.run_until_complete(made.close())
    finally:
        loop.close()


def _states(local: LocalFleet) -> dict[str, object]:
    return {
        n: (p.pair.state.value, p.sides, p.incidents[-1:])
        for n, p in local.fleet.protections.items()
    }


def test_a_dead_host_s_protections_are_served_and_reprotected_on_the_others(site: Site) -> None:
    fleet, loop = site
    run = loop.run_until_complete
    vm0, target0 = run(fleet.protect("vm0"))
    vm1, target1 = run(fleet.protect("vm1"))
    assert (vm0.sides.primary, vm0.sides.secondary) == ("hosta", "hostb")
    assert (vm1.sides.primary, vm1.sides.secondary) == ("hostc", "hosta")
    plan = fleet.deployment.plan
    loads = [ClientWorkload(plan, target=t) for t in (target0, target1)]
    try:
        for load in loads:
            run(asyncio.to_thread(load.served, 20))
        supervisors = [fleet.fleet.supervise(name, loop) for name in ("vm0", "vm1")]
        # Heartbeats flowing: every agent's lease is armed (a cut-off primary fences itself).
        run(
            await_until(
                "heartbeats",
                lambda: all(s.rounds >= 3 for s in supervisors),
                30,
                describe=lambda: _states(fleet),
            )
        )
        fleet.cut(LOST)
        cut_at = time.monotonic()

        def recovered() -> bool:
            return all(
                p.pair.state is PairState.PROTECTED
                and LOST not in (p.sides.primary, p.sides.secondary)
                for p in (vm0, vm1)
            )

        run(
            await_until(
                "both re-protected elsewhere", recovered, 240, describe=lambda: _states(fleet)
            )
        )
        recovered_s = time.monotonic() - cut_at
        for load in loads:  # both guests answer on their new pairs (supervised meanwhile)
            run(asyncio.to_thread(load.served, 20))
        summaries = [load.finish() for load in loads]
        fleet.cut(LOST, up=True)  # host A back: vm0's old primary there fenced itself
        beat = run(vm0.agents[LOST].call("ping", timeout=10))
    finally:
        for load in loads:
            load.kill()
    assert (vm0.sides.primary, vm0.sides.secondary) == ("hostb", "hostc")
    assert (vm1.sides.primary, vm1.sides.secondary) == ("hostc", "hostb")
    assert [i.role for i in vm0.incidents] == ["primary"]
    assert [i.role for i in vm1.incidents] == ["secondary"]
    assert beat["self_fenced"] is True and beat["vm_alive"] is False
    assert vm0.incidents[0].reprotected_onto == "hostc"
    assert vm1.incidents[0].reprotected_onto == "hostb"
    print(f"recovered_s {recovered_s:.1f}", [s["requests_failed"] for s in summaries])
    for summary in summaries:
        assert summary["requests_failed"] == 0, summary["errors"]
        assert summary["writes_lost"] == 0, summary["lost_keys"]
