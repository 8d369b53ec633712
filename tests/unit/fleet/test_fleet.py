"""A fleet over a simulated pool: placement, fleet slots, and a dead host's protections
failed over and re-protected onto the remaining hosts (scripted agents, fake time)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from colopp.colo.state import PairState
from colopp.domain import VmSpec
from colopp.errors import ConfigError
from colopp.fleet.fleet import Fleet
from colopp.fleet.placement import Sides
from colopp.fleet.pool import slot_ports
from tests.unit.fleet.fleet_sim import SimHost, SimSide, scripted, sim_pool

HOSTS = ["hosta", "hostb", "hostc"]


def vm(name: str) -> VmSpec:
    return VmSpec(name, Path("/k"), Path("/i"), "console=ttyS0")


def fleet_of(names: list[str]) -> tuple[Fleet, dict[str, SimHost]]:
    members, pool, clock = sim_pool(names)
    return Fleet(members, "t", clock=clock, client=scripted(pool)), pool


async def protect_all(fleet: Fleet, count: int) -> None:
    for i in range(count):
        await fleet.protect(f"vm{i}", vm(f"vm{i}"), Path("/d"))


async def until(check: Callable[[], bool], fleet: Fleet) -> None:
    while not check():
        await asyncio.sleep(0)
        for made in fleet.protections.values():
            assert made.task is None or not made.task.done(), f"{made.name}: supervisor ended"


def test_three_protections_spread_over_three_hosts_with_their_own_slots() -> None:
    fleet, pool = fleet_of(HOSTS)

    async def main() -> None:
        await protect_all(fleet, 3)
        placed = fleet.placed()
        assert placed == {
            "vm0": Sides("hosta", "hostb"),
            "vm1": Sides("hostc", "hosta"),
            "vm2": Sides("hostb", "hostc"),
        }
        slots = {n: p.slot for n, p in fleet.protections.items()}
        assert slots == {"vm0": 0, "vm1": 1, "vm2": 2}
        for name, made in fleet.protections.items():
            assert made.pair.state is PairState.PROTECTED
            assert made.pair.config.ports == slot_ports(slots[name])
            assert made.pair.config.primary.tap == f"cpp{slots[name]}"
        # Each host holds exactly the sides placed on it, and runs two of them.
        for host in pool.values():
            mine = {n for n, w in placed.items() if host.member.name in (w.primary, w.secondary)}
            assert set(host.sides) == mine and len(mine) == 2
        await fleet.close()
        assert all(not host.sides for host in pool.values())  # every slot released

    asyncio.run(main())


@pytest.mark.parametrize("lost", HOSTS)
def test_a_dead_host_s_protections_fail_over_and_are_reprotected_on_the_others(
    lost: str,
) -> None:
    fleet, pool = fleet_of(HOSTS)

    async def main() -> None:
        await protect_all(fleet, 3)
        before = fleet.placed()
        affected = {n for n, w in before.items() if lost in (w.primary, w.secondary)}
        for name in fleet.protections:
            fleet.supervise(name)
        pool[lost].reachable = False

        def recovered() -> bool:
            return all(
                fleet.protections[n].pair.state is PairState.PROTECTED
                and lost not in (fleet.placed()[n].primary, fleet.placed()[n].secondary)
                for n in affected
            )

        await until(recovered, fleet)
        after = fleet.placed()
        for name in affected:
            made, was = fleet.protections[name], before[name]
            (incident,) = made.incidents
            assert incident.host == lost and incident.error is None
            assert incident.role == ("primary" if was.primary == lost else "secondary")
            assert incident.reprotected_onto == after[name].secondary
            # The survivor serves: the old secondary after a lost primary, else the primary.
            assert after[name].primary == (was.secondary if was.primary == lost else was.primary)
            assert after[name].secondary not in (lost, after[name].primary)
        for name in set(before) - affected:
            assert after[name] == before[name] and not fleet.protections[name].incidents
        # The survivors carry every side, at most one more than the other.
        load = Counter(h for w in after.values() for h in (w.primary, w.secondary))
        assert set(load) == set(HOSTS) - {lost} and sum(load.values()) == 6
        assert max(load.values()) - min(load.values()) <= 0
        for name, made in fleet.protections.items():  # each slot allocated where it runs
            for host in (after[name].primary, after[name].secondary):
                assert pool[host].sides[name].slot == made.slot
        await fleet.close()

    asyncio.run(main())


def test_with_no_healthy_host_left_the_survivor_keeps_serving_alone() -> None:
    fleet, pool = fleet_of(HOSTS)

    async def main() -> None:
        made = await fleet.protect("vm0", vm("vm0"), Path("/d"))
        fleet.supervise("vm0")
        pool["hostb"].reachable = pool["hostc"].reachable = False  # its secondary, the spare
        await until(lambda: made.pair.state is PairState.FAILED_OVER, fleet)
        start = fleet.clock.monotonic()
        await until(lambda: fleet.clock.monotonic() > start + 30, fleet)
        assert made.pair.state is PairState.FAILED_OVER and made.pair.primary.name == "hosta"
        assert made.incidents[0].reprotected_onto is None
        assert "vm0" not in pool["hostc"].sides
        pool["hostc"].reachable = True  # the spare answers again: re-protected onto it
        await until(lambda: made.pair.state is PairState.PROTECTED, fleet)
        assert fleet.placed()["vm0"] == Sides("hosta", "hostc")
        await fleet.close()

    asyncio.run(main())


def test_a_lost_host_back_before_re_protection_takes_its_side_again() -> None:
    fleet, pool = fleet_of(HOSTS)

    async def main() -> None:
        made = await fleet.protect("vm0", vm("vm0"), Path("/d"))
        fleet.supervise("vm0")
        pool["hostb"].sides["vm0"].vm_alive = False  # its secondary QEMU dies, host fine
        await until(lambda: bool(made.incidents) and made.pair.state is PairState.PROTECTED, fleet)
        assert fleet.placed()["vm0"] == Sides("hosta", "hostb")
        assert "vm0" not in pool["hostc"].sides  # the spare was never asked
        await fleet.close()

    asyncio.run(main())


def test_a_host_that_holds_the_slot_for_another_protection_is_skipped() -> None:
    fleet, pool = fleet_of([*HOSTS, "hostd"])

    async def main() -> None:
        made = await fleet.protect("vm0", vm("vm0"), Path("/d"), sides=Sides("hosta", "hostb"))
        pool["hostc"].sides["other"] = SimSide(slot=made.slot)  # e.g. a leftover
        fleet.supervise("vm0")
        pool["hostb"].reachable = False
        await until(lambda: made.pair.state is PairState.PROTECTED and made.incidents != [], fleet)
        assert fleet.placed()["vm0"] == Sides("hosta", "hostd")
        await fleet.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("sides", "words"),
    [
        (Sides("hosta", "hosta"), "two distinct hosts"),
        (Sides("hosta", None), "two distinct hosts"),
        (Sides("hosta", "nohost"), "not a host of the pool"),
    ],
)
def test_bad_sides_are_refused(sides: Sides, words: str) -> None:
    fleet, _ = fleet_of(HOSTS)
    with pytest.raises(ConfigError, match=words):
        asyncio.run(fleet.protect("vm0", vm("vm0"), Path("/d"), sides=sides))


def test_a_name_protected_twice_is_refused() -> None:
    fleet, _ = fleet_of(HOSTS)

    async def main() -> None:
        await fleet.protect("vm0", vm("vm0"), Path("/d"))
        with pytest.raises(ConfigError, match="already protects"):
            await fleet.protect("vm0", vm("vm0"), Path("/d"))
        await fleet.close()

    asyncio.run(main())


def test_a_pool_of_two_is_refused() -> None:
    members, _, _ = sim_pool(["hosta", "hostb"])
    with pytest.raises(ConfigError, match="at least 3 hosts"):
        Fleet(members, "t")


def test_two_protections_reprotecting_at_once_do_not_both_take_the_idlest_host() -> None:
    fleet, pool = fleet_of([*HOSTS, "hostd"])

    async def main() -> None:
        await fleet.protect("vm0", vm("vm0"), Path("/d"), sides=Sides("hosta", "hostb"))
        await fleet.protect("vm1", vm("vm1"), Path("/d"), sides=Sides("hostc", "hosta"))
        gate = asyncio.Event()
        pool["hostb"].resume_gate = pool["hostc"].resume_gate = gate
        for name in fleet.protections:
            fleet.supervise(name)
        pool["hosta"].reachable = False
        both = list(fleet.protections.values())
        await until(lambda: all(p.pair.state is PairState.SYNCING for p in both), fleet)
        gate.set()  # both re-protections were in flight at once
        await until(lambda: all(p.pair.state is PairState.PROTECTED for p in both), fleet)
        after = fleet.placed()
        # hostd was idle: one of them goes there, never both (the first one's new secondary
        # counts while it is being re-protected).
        assert "hostd" in (after["vm0"].secondary, after["vm1"].secondary)
        assert after["vm0"].secondary != after["vm1"].secondary
        await fleet.close()

    asyncio.run(main())
