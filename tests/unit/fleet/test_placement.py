"""Placement over a pool of hosts: never both sides on one host, spread, re-protection."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.errors import ConfigError
from colopp.fleet.placement import PoolHost, Sides, new_secondary, place, replace_lost_host

POOL = [PoolHost("hosta"), PoolHost("hostb"), PoolHost("hostc")]


def fill(pool: list[PoolHost], count: int) -> dict[str, Sides]:
    placed: dict[str, Sides] = {}
    for i in range(count):
        placed[f"vm{i}"] = place(pool, placed)
    return placed


def test_three_protections_on_three_hosts_mix_roles_and_spread() -> None:
    placed = fill(POOL, 3)
    assert placed == {
        "vm0": Sides("hosta", "hostb"),
        "vm1": Sides("hostc", "hosta"),
        "vm2": Sides("hostb", "hostc"),
    }
    per_host = Counter(h for w in placed.values() for h in (w.primary, w.secondary))
    assert sorted(per_host.values()) == [2, 2, 2]
    primaries = {w.primary for w in placed.values()}
    secondaries = {w.secondary for w in placed.values()}
    assert primaries & secondaries  # some host is primary for one VM, secondary for another


def test_a_lost_host_fails_over_its_primaries_and_reprotects_everything_elsewhere() -> None:
    placed = fill(POOL, 3)
    lost = placed["vm0"].primary
    moves = replace_lost_host(POOL, placed, lost)
    affected = {n for n, w in placed.items() if lost in (w.primary, w.secondary)}
    assert {m.protection for m in moves} == affected
    for move in moves:
        assert move.failover == (placed[move.protection].primary == lost)
        assert lost not in (move.sides.primary, move.sides.secondary)
        assert move.sides.secondary is not None
        assert move.sides.primary != move.sides.secondary
        if move.failover:  # the old secondary serves now
            assert move.sides.primary == placed[move.protection].secondary


def test_with_two_hosts_left_after_a_loss_and_no_third_the_pair_stays_unprotected() -> None:
    pool = [PoolHost("hosta"), PoolHost("hostb")]
    placed = fill(pool, 1)
    (move,) = replace_lost_host(pool, placed, "hostb")
    assert move.sides == Sides(placed["vm0"].primary, None)


@pytest.mark.parametrize(
    ("pool", "words"),
    [
        ([PoolHost("hosta")], "no second healthy host"),
        ([PoolHost("hosta"), PoolHost("hostb", healthy=False)], "no second healthy host"),
        ([PoolHost("hosta", healthy=False)], "no healthy host"),
        ([PoolHost("hosta"), PoolHost("hosta")], "distinct names"),
        ([PoolHost("hosta", slots=0), PoolHost("hostb")], "at least one slot"),
    ],
)
def test_impossible_placements_are_clear_errors(pool: list[PoolHost], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        place(pool, {})


def test_full_hosts_are_skipped() -> None:
    pool = [PoolHost("hosta", slots=1), PoolHost("hostb", slots=2), PoolHost("hostc", slots=2)]
    placed = {"vm0": place(pool, {})}
    assert placed["vm0"] == Sides("hosta", "hostb")
    assert place(pool, placed) == Sides("hostc", "hostb")  # hosta is full


pools = st.lists(st.tuples(st.booleans(), st.integers(1, 4)), min_size=2, max_size=6).map(
    lambda hs: [PoolHost(f"h{i}", healthy, slots) for i, (healthy, slots) in enumerate(hs)]
)


@settings(max_examples=200, deadline=None)
@given(pool=pools, count=st.integers(0, 12), lost=st.integers(0, 5))
def test_placement_invariants(pool: list[PoolHost], count: int, lost: int) -> None:
    placed: dict[str, Sides] = {}
    for i in range(count):
        load = Counter(h for w in placed.values() for h in (w.primary, w.secondary))
        try:
            where = place(pool, placed)
        except ConfigError:
            eligible = [h for h in pool if h.healthy and load[h.name] < h.slots]
            assert len(eligible) < 2
            break
        healthy = {h.name: h for h in pool if h.healthy}
        assert where.primary != where.secondary
        assert where.primary in healthy and where.secondary in healthy
        eligible = [h.name for h in pool if h.healthy and load[h.name] < h.slots]
        assert load[where.primary] == min(load[n] for n in eligible)  # spread
        placed[f"vm{i}"] = where
    lost_name = pool[lost % len(pool)].name
    for move in replace_lost_host(pool, placed, lost_name):
        assert lost_name not in (move.sides.primary, move.sides.secondary)
        assert move.sides.primary != move.sides.secondary
    final = Counter(h for w in placed.values() for h in (w.primary, w.secondary) if h)
    assert all(final[h.name] <= h.slots for h in pool)


@settings(max_examples=200, deadline=None)
@given(
    pool=pools,
    count=st.integers(1, 10),
    pick=st.integers(0, 9),
    avoid=st.sets(st.integers(0, 5), max_size=3),
)
def test_a_new_secondary_is_healthy_free_least_loaded_and_never_the_serving_host(
    pool: list[PoolHost], count: int, pick: int, avoid: set[int]
) -> None:
    placed: dict[str, Sides] = {}
    for i in range(count):
        try:
            placed[f"vm{i}"] = place(pool, placed)
        except ConfigError:
            break
    if not placed:
        return
    name = sorted(placed)[pick % len(placed)]
    serving = placed[name].primary
    avoided = {pool[k % len(pool)].name for k in avoid}
    host = new_secondary(pool, placed, name, serving, avoided)
    others = {n: w for n, w in placed.items() if n != name}
    load = Counter(h for w in others.values() for h in (w.primary, w.secondary))
    load[serving] += 1
    eligible = [
        h.name
        for h in pool
        if h.healthy and h.name != serving and h.name not in avoided and load[h.name] < h.slots
    ]
    if not eligible:
        assert host is None
        return
    assert host in eligible
    assert load[host] == min(load[n] for n in eligible)


def test_a_new_secondary_ignores_the_protection_s_own_old_secondary_in_the_load() -> None:
    placed = {"vm0": Sides("hosta", "hostb"), "vm1": Sides("hostc", "hostb")}
    # vm0 lost hostb: hostc carries one side (vm1's primary), hostb is avoided.
    assert new_secondary(POOL, placed, "vm0", "hosta", {"hostb"}) == "hostc"
    assert new_secondary(POOL, placed, "vm0", "hosta", {"hostb", "hostc"}) is None
