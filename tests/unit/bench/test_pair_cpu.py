"""bench.pair's per-CPU account of work outside the lab (pure part)."""

from __future__ import annotations

from bench.pair_cpu import CpuSample, outside_share


def test_outside_is_busy_minus_the_lab_and_the_client_program() -> None:
    before = CpuSample({0: 100.0, 1: 200.0}, lab_pids={0: {10: 50.0}, 1: {20: 5.0}}, children_s=1.0)
    after = CpuSample(
        {0: 109.0, 1: 210.0},
        lab_pids={0: {10: 57.0, 11: 99.0}, 1: {20: 6.0}},  # 11 appeared: not counted
        children_s=5.0,  # the client program used 4 s on CPU 1
        client_cpus=(1,),
    )
    assert outside_share(before, after, 10.0) == {"cpu0": 0.2, "cpu1": 0.5}


def test_no_plan_or_no_window_gives_nothing() -> None:
    assert outside_share(CpuSample(), CpuSample(), 10.0) == {}
    assert outside_share(CpuSample({0: 1.0}), CpuSample({0: 2.0}), 0.0) == {}


def test_no_wait_share_counts_early_and_matched_on_arrival() -> None:
    from bench.pair_figures import no_wait_share

    before = {"matched_on_arrival": 10, "pre_release": {"read_requests": 100, "granted": {}}}
    after = {
        "matched_on_arrival": 70,
        "pre_release": {"read_requests": 190, "write_requests": 10, "granted": {"http_read": 20}},
    }
    assert no_wait_share(before, after) == 0.8  # (20 + 60) / (90 + 10)
    assert no_wait_share({}, {}) == 0.0
