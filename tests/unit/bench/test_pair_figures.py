"""bench.pair's figures for issue 15: early-read share, per-host CPU, open-loop rate, targets."""

from __future__ import annotations

from typing import Any

from bench.pair_figures import (
    CONFIGS,
    MIXES,
    LoadRun,
    Sample,
    closed_figures,
    evaluate_targets,
    format_report,
    open_figures,
    open_rate,
    prerelease_share,
    shape_problems,
)


def counters(reads: int, early: int, mismatches: int = 0) -> dict[str, Any]:
    return {
        "prerelease_mismatches": mismatches,
        "pre_release": {"read_requests": reads, "granted": {"http_read": early, "ack_only": 99}},
    }


BEFORE = Sample(10.0, 3, counters(100, 50), {"hosta": 5.0, "hostb": 2.0}, {"hosta": 5, "hostb": 3})
AFTER = Sample(
    30.0, 13, counters(1100, 1000), {"hosta": 9.0, "hostb": 3.0}, {"hosta": 24, "hostb": 10}
)


def test_prerelease_share_counts_read_grants_per_read() -> None:
    assert prerelease_share(BEFORE.counters, AFTER.counters) == 0.95
    assert prerelease_share({}, {}) == 0.0


def test_closed_and_open_figures() -> None:
    run = LoadRun(requests=2000, rps=100.0, p50_ms=4.0, p99_ms=30.0, p999_ms=None, errors=0)
    f = closed_figures(BEFORE, AFTER, run)
    assert f["primary_host_cpu_ms_per_req"] == 2.0
    assert f["secondary_host_cpu_ms_per_req"] == 0.5
    assert f["host_cpu_busy"] == {"hosta": 0.95, "hostb": 0.35}
    assert f["checkpoints_per_min"] == 30.0
    o = open_figures(BEFORE, AFTER, LoadRun(2000, 99.0, 4.0, 30.0, 80.0, 0, offered_rps=100.0))
    assert (o["offered_rps"], o["p999_ms"], o["prerelease_share"]) == (100.0, 80.0, 0.95)


def test_open_rate_is_half_the_slowest() -> None:
    assert open_rate({"a": {"rps": 800.0}, "b": {"rps": 300.0}}) == 150.0
    assert open_rate({}) is None


def full_result() -> dict[str, Any]:
    closed = {m: {c: {"rps": 100.0, "p50_ms": 5.0, "p99_ms": 50.0, "secondary_host_cpu_ms_per_req": 1.0,
                      "primary_host_cpu_ms_per_req": 1.0, "prerelease_share": 0.95, "errors": 0}
                  for c in CONFIGS} for m in MIXES}  # fmt: skip
    opened = {m: {c: {"offered_rps": 50.0, "p50_ms": 5.0, "p99_ms": 50.0, "p999_ms": 90.0,
                      "prerelease_share": 0.95, "errors": 0} for c in CONFIGS}
              for m in MIXES}  # fmt: skip
    closed["read_mostly"]["colopp_prerelease_semiactive"]["secondary_host_cpu_ms_per_req"] = 0.4
    opened["read_mostly"]["colopp_semiactive"]["p50_ms"] = 10.0
    closed["read_mostly"]["builtin"]["rps"] = 80.0
    return {"closed_loop": closed, "open_loop": opened}


def test_targets_met_and_not_met() -> None:
    result = full_result()
    targets = {t["target"]: t for t in evaluate_targets(result)}
    assert all(t["met"] for t in targets.values()), [n for n, t in targets.items() if not t["met"]]
    result["open_loop"]["read_mostly"]["colopp_prerelease_semiactive"]["p50_ms"] = 6.0
    result["closed_loop"]["write_heavy"]["colopp"]["errors"] = 1
    targets = {t["target"]: t for t in evaluate_targets(result)}
    assert targets["read_mostly open: (e) p50 <= 1.1x (a) p50"]["met"] is False
    clean = targets["0 pre-release mismatches and 0 failed requests in every window"]
    assert clean["met"] is False and clean["windows"] == ["closed_loop.write_heavy.colopp"]
    assert all(t["met"] is None for t in evaluate_targets({}))


def test_shape_and_report() -> None:
    result = full_result()
    result["targets"] = evaluate_targets(result)
    assert shape_problems(result) == []
    del result["open_loop"]["redis_read_mostly"]["builtin"]
    assert shape_problems(result) == ["open_loop.redis_read_mostly: no builtin"]
    assert shape_problems(result, quick=True) == []
    report = format_report(result)
    assert "(e) (d) + semi-active secondary" in report and "met" in report


def test_open_rates_option_parses_mix_rates() -> None:
    import argparse

    import pytest

    from bench.pair import parse_rates

    parser = argparse.ArgumentParser()
    assert parse_rates("read_mostly=76.7,redis_read_mostly=172.6", parser) == {
        "read_mostly": 76.7,
        "redis_read_mostly": 172.6,
    }
    for bad in ("read_mostly", "nomix=3", "read_mostly=x"):
        with pytest.raises(SystemExit):
            parse_rates(bad, parser)
