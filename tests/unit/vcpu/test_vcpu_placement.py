"""Pure vCPU placement: captured query-cpus-fast replies, shrink plans, the adaptive rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colopp.errors import ConfigError
from colopp.vcpu.placement import (
    AdaptivePolicy,
    LagSignal,
    VcpuThread,
    adapt_target,
    parse_cpus_fast,
    plan_shrink,
    target_count,
    thread_ids,
)

DATA = Path(__file__).parent / "data"


def captured(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_parse_real_mttcg_reply() -> None:
    threads = parse_cpus_fast(captured("query-cpus-fast-smp2-tcg-11.1.3.json"))
    assert threads == [VcpuThread(0, 10681), VcpuThread(1, 10682)]
    assert thread_ids(threads) == (10681, 10682)


def test_parse_real_single_thread_tcg_reply_shares_one_thread() -> None:
    threads = parse_cpus_fast(captured("query-cpus-fast-smp2-tcg-single-thread-11.1.3.json"))
    assert [t.cpu_index for t in threads] == [0, 1]
    assert thread_ids(threads) == (10689,)
    plan = plan_shrink(threads, {0, 1}, count=1)
    assert len(plan.placements) == 1
    assert plan.placements[0].cpu_indexes == (0, 1)


def test_parse_orders_by_cpu_index() -> None:
    reply = [{"cpu-index": 1, "thread-id": 20}, {"cpu-index": 0, "thread-id": 10}]
    assert parse_cpus_fast(reply) == [VcpuThread(0, 10), VcpuThread(1, 20)]


@pytest.mark.parametrize(
    "reply",
    [
        None,
        [],
        {"cpu-index": 0},
        ["x"],
        [{"cpu-index": 0}],
        [{"cpu-index": 0, "thread-id": 0}],
        [{"cpu-index": -1, "thread-id": 5}],
        [{"cpu-index": True, "thread-id": 5}],
        [{"cpu-index": 0, "thread-id": "5"}],
        [{"cpu-index": 0, "thread-id": 5}, {"cpu-index": 0, "thread-id": 6}],
    ],
)
def test_parse_rejects_malformed_replies(reply: Any) -> None:
    with pytest.raises(ConfigError, match="query-cpus-fast"):
        parse_cpus_fast(reply)


def test_plan_keeps_the_highest_cpus_for_every_thread() -> None:
    threads = parse_cpus_fast(captured("query-cpus-fast-smp2-tcg-11.1.3.json"))
    plan = plan_shrink(threads, {0, 1, 2, 3}, count=2)
    assert plan.target == frozenset({2, 3})
    assert plan.cpus_of(10681) == plan.cpus_of(10682) == frozenset({2, 3})
    with pytest.raises(KeyError):
        plan.cpus_of(1)


def test_plan_with_a_fraction_rounds_up() -> None:
    threads = [VcpuThread(0, 7)]
    assert plan_shrink(threads, range(8), fraction=0.3).target == frozenset({5, 6, 7})
    assert plan_shrink(threads, {3}, fraction=0.01).target == frozenset({3})


@pytest.mark.parametrize(
    ("available", "count", "fraction"),
    [(4, None, None), (4, 1, 0.5), (4, 0, None), (4, None, 0.0), (4, None, 1.5), (0, 1, None)],
)
def test_target_count_rejects(available: int, count: int | None, fraction: float | None) -> None:
    with pytest.raises(ConfigError):
        target_count(available, count, fraction)


def test_plan_needs_threads_and_sane_cpus() -> None:
    with pytest.raises(ConfigError, match="no vCPU threads"):
        plan_shrink([], {0}, count=1)
    with pytest.raises(ConfigError, match="negative"):
        plan_shrink([VcpuThread(0, 1)], {-1, 0}, count=1)
    with pytest.raises(ConfigError, match="no host CPU"):
        plan_shrink([VcpuThread(0, 1)], set(), count=1)


threads_strategy = st.lists(
    st.builds(VcpuThread, st.integers(0, 63), st.integers(1, 10**6)),
    min_size=1,
    max_size=8,
    unique_by=lambda t: t.cpu_index,
)


@given(
    threads=threads_strategy,
    available=st.frozensets(st.integers(0, 255), min_size=1, max_size=64),
    count=st.integers(1, 300),
)
def test_plan_properties_count(
    threads: list[VcpuThread], available: frozenset[int], count: int
) -> None:
    plan = plan_shrink(threads, available, count=count)
    assert 1 <= len(plan.target) <= len(available)
    assert len(plan.target) == min(count, len(available))
    assert plan.target <= available
    assert {p.thread_id for p in plan.placements} == {t.thread_id for t in threads}
    assert all(p.cpus == plan.target for p in plan.placements)
    assert plan_shrink(list(reversed(threads)), sorted(available), count=count) == plan


@given(
    threads=threads_strategy,
    available=st.frozensets(st.integers(0, 255), min_size=1, max_size=64),
    fraction=st.floats(min_value=1e-9, max_value=1.0),
)
def test_plan_properties_fraction(
    threads: list[VcpuThread], available: frozenset[int], fraction: float
) -> None:
    plan = plan_shrink(threads, available, fraction=fraction)
    assert 1 <= len(plan.target) <= len(available)
    assert plan.target <= available


def test_adapt_relaxes_when_compare_timeouts_pile_up() -> None:
    assert adapt_target(1, 1, 4, LagSignal(timeout_checkpoints_per_minute=6)) == 2
    assert adapt_target(4, 1, 4, LagSignal(timeout_checkpoints_per_minute=60)) == 4


def test_adapt_relaxes_on_hold_latency_alone() -> None:
    assert adapt_target(2, 1, 4, LagSignal(0, hold_latency_ms=80)) == 3


def test_adapt_tightens_only_when_both_signals_are_low() -> None:
    assert adapt_target(3, 1, 4, LagSignal(0.5, hold_latency_ms=5)) == 2
    assert adapt_target(3, 1, 4, LagSignal(0.5)) == 2
    assert adapt_target(1, 1, 4, LagSignal(0)) == 1
    assert adapt_target(3, 1, 4, LagSignal(0.5, hold_latency_ms=20)) == 3


def test_adapt_holds_inside_the_hysteresis_band() -> None:
    assert adapt_target(2, 1, 4, LagSignal(3)) == 2


def test_adapt_clamps_a_current_value_out_of_bounds() -> None:
    assert adapt_target(9, 1, 4, LagSignal(3)) == 4
    assert adapt_target(0, 2, 4, LagSignal(3)) == 2


def test_adapt_uses_the_policy_step() -> None:
    policy = AdaptivePolicy(step=2)
    assert adapt_target(1, 1, 8, LagSignal(10), policy) == 3
    assert adapt_target(8, 1, 8, LagSignal(0), policy) == 6


@pytest.mark.parametrize(
    ("minimum", "maximum", "policy"),
    [
        (0, 4, AdaptivePolicy()),
        (5, 4, AdaptivePolicy()),
        (1, 4, AdaptivePolicy(step=0)),
        (1, 4, AdaptivePolicy(tighten_checkpoints_per_minute=10)),
        (1, 4, AdaptivePolicy(tighten_latency_ms=100)),
    ],
)
def test_adapt_rejects_bad_bounds_and_policies(
    minimum: int, maximum: int, policy: AdaptivePolicy
) -> None:
    with pytest.raises(ConfigError):
        adapt_target(2, minimum, maximum, LagSignal(0), policy)


@given(
    current=st.integers(-5, 20),
    bounds=st.tuples(st.integers(1, 10), st.integers(0, 10)),
    per_minute=st.floats(0, 100),
    latency=st.none() | st.floats(0, 1000),
)
def test_adapt_stays_in_bounds(
    current: int, bounds: tuple[int, int], per_minute: float, latency: float | None
) -> None:
    minimum, extra = bounds
    result = adapt_target(current, minimum, minimum + extra, LagSignal(per_minute, latency))
    assert minimum <= result <= minimum + extra
