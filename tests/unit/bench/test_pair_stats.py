"""The pure parts of python -m bench.pair: wrk parsing, window figures, targets, JSON shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.pair_stats import (
    CONFIGS,
    FIGURES,
    MIXES,
    Snapshot,
    WrkRun,
    duration_ms,
    evaluate_targets,
    format_table,
    format_targets,
    host_cpu_seconds,
    parse_wrk,
    prerelease_ratio,
    proc_cpu_seconds,
    shape_problems,
    window_figures,
)

DATA = Path(__file__).parents[2] / "data" / "wrk"


@pytest.mark.parametrize(
    ("text", "ms"),
    [("812.00us", 0.812), ("3.69ms", 3.69), ("1.02s", 1020.0), ("1.50m", 90_000.0)],
)
def test_duration_units(text: str, ms: float) -> None:
    assert duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "3.69", "ms", "-1ms", "1.2k"])
def test_duration_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a wrk duration"):
        duration_ms(text)


def test_parse_captured_wrk_output() -> None:
    run = parse_wrk((DATA / "loopback-non2xx.txt").read_text())
    # python -m http.server on loopback: 404 to every GET, 501 to every PUT.
    assert run.requests == 1838
    assert run.duration_s == pytest.approx(2.0)
    assert run.rps == pytest.approx(917.89)
    assert run.p50_ms == pytest.approx(3.18)
    assert run.p99_ms == pytest.approx(16.08)
    assert run.percentiles_ms[90.0] == pytest.approx(11.60)
    assert run.non_2xx == 1838
    assert run.socket_errors == {}
    assert run.errors == 1838
    assert (run.gets_sent, run.puts_sent) == (927, 915)
    assert run.statuses == {"not_found": 925, "other_4xx": 0, "server_error": 913}


def test_parse_socket_errors_and_seconds() -> None:
    text = "\n".join(
        [
            "  Latency Distribution",
            "     50%   10.00ms",
            "     99%    1.20s",
            "  40 requests in 20.00s, 5.00KB read",
            "  Socket errors: connect 1, read 2, write 0, timeout 3",
            "Requests/sec:      2.00",
        ]
    )
    run = parse_wrk(text)
    assert run.p99_ms == pytest.approx(1200.0)
    assert run.socket_errors == {"connect": 1, "read": 2, "write": 0, "timeout": 3}
    assert run.errors == 6
    assert run.gets_sent is None


def test_parse_without_latency_flag_fails() -> None:
    text = "  10 requests in 1.00s, 1.00KB read\nRequests/sec:     10.00\n"
    with pytest.raises(ValueError, match="--latency"):
        parse_wrk(text)


def test_parse_of_a_failed_run_fails() -> None:
    with pytest.raises(ValueError, match="requests in"):
        parse_wrk("unable to connect to 198.18.0.100:80 Connection refused\n")


def test_proc_stat_cpu_seconds_with_odd_command_name() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    stat = "4242 (qemu (x) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5"
    assert proc_cpu_seconds(stat, 100) == pytest.approx(3.0)


def test_proc_stat_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="stat"):
        proc_cpu_seconds("no parenthesis here", 100)


def test_host_cpu_seconds() -> None:
    text = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1\n"
    assert host_cpu_seconds(text, 100) == (pytest.approx(1.5), pytest.approx(10.0))
    with pytest.raises(ValueError, match="cpu"):
        host_cpu_seconds("intr 1\n", 100)


def test_prerelease_ratio_over_the_window_leaves_passthrough_out() -> None:
    before = {"released_frames": 100, "passthrough_frames": 10, "pre_released_frames": 20}
    after = {"released_frames": 300, "passthrough_frames": 20, "pre_released_frames": 115}
    # 95 of the 190 compared frames released in the window went early.
    assert prerelease_ratio(before, after) == pytest.approx(0.5)
    assert prerelease_ratio({}, {}) == 0.0


def _run(requests: int = 1000, rps: float = 50.0) -> WrkRun:
    return WrkRun(requests, 20.0, rps, {50.0: 4.0, 99.0: 40.0}, gets_sent=950, puts_sent=50)


def test_window_figures() -> None:
    before = Snapshot(
        at=100.0,
        checkpoints=7,
        counters={"divergences": {"payload": 1}, "pre_release": {"granted": {"http_read": 5}}},
        secondary_cpu_s=10.0,
        primary_cpu_s=20.0,
        host_cpu_s=(100.0, 200.0),
    )
    after = Snapshot(
        at=120.0,
        checkpoints=17,
        counters={
            "divergences": {"payload": 4, "timeout": 0},
            "pre_release": {"granted": {"http_read": 905, "ack_only": 3}},
            "released_frames": 2000,
            "pre_released_frames": 500,
            "hold_time_buckets": [0.1, 1.0, "+Inf"],
            "hold_time_counts": [1900, 80, 20],
        },
        secondary_cpu_s=12.5,
        primary_cpu_s=25.0,
        host_cpu_s=(130.0, 240.0),
    )
    f = window_figures(before, after, _run())
    assert f["rps"] == 50.0
    assert (f["p50_ms"], f["p99_ms"]) == (4.0, 40.0)
    assert f["checkpoints_per_min"] == pytest.approx(30.0)
    assert f["prerelease_ratio"] == pytest.approx(0.25)
    assert f["secondary_cpu_s_per_req"] == pytest.approx(0.0025)
    assert f["primary_cpu_s_per_req"] == pytest.approx(0.005)
    assert f["put_share"] == pytest.approx(0.05)
    assert f["divergences"] == {"payload": 3}
    assert f["prerelease_granted"] == {"ack_only": 3, "http_read": 900}
    assert f["hold_time_counts"] == {"<=0.1": 1900, "<=1.0": 80, "<=+Inf": 20}
    # 2 CPUs (40 CPU-seconds in 20 s), 75% of them busy.
    assert f["host_busy_cpus"] == pytest.approx(1.5)


def test_window_figures_unreplicated() -> None:
    before = Snapshot(at=0.0, checkpoints=0, counters={}, secondary_cpu_s=None)
    after = Snapshot(at=20.0, checkpoints=0, counters={}, secondary_cpu_s=None)
    f = window_figures(before, after, _run())
    assert f["checkpoints_per_min"] == 0.0
    assert f["prerelease_ratio"] == 0.0
    assert f["secondary_cpu_s_per_req"] is None
    assert f["primary_cpu_s_per_req"] is None
    assert f["host_busy_cpus"] is None
    assert f["hold_time_counts"] == {}


def _figures(rps: float, cpu: float | None) -> dict[str, Any]:
    return {
        "rps": rps,
        "p50_ms": 5.0,
        "p99_ms": 50.0,
        "checkpoints_per_min": 30.0,
        "prerelease_ratio": 0.0,
        "secondary_cpu_s_per_req": cpu,
    }


def _result(d_read: float, e_cpu: float) -> dict[str, Any]:
    def mix() -> dict[str, Any]:
        return {
            "unreplicated": _figures(200.0, None),
            "builtin": _figures(50.0, 0.004),
            "colopp": _figures(100.0, 0.004),
            "colopp_prerelease": _figures(d_read, 0.004),
            "colopp_prerelease_semiactive": _figures(d_read * 0.97, e_cpu),
        }

    return {"read_mostly": mix(), "write_heavy": mix(), "meta": {}}


def test_targets_met_and_not_met() -> None:
    by_name = {t["target"]: t for t in evaluate_targets(_result(d_read=195.0, e_cpu=0.001))}
    rm = by_name["read-mostly (d) >= 0.95x (a) throughput"]
    assert rm["ratio"] == pytest.approx(0.975)
    assert rm["met"] is True
    assert by_name["read-mostly (d) >= 2x (b) throughput"]["met"] is True
    cpu = by_name["read-mostly (e) secondary CPU/request <= 0.5x (d)"]
    assert (cpu["ratio"], cpu["met"], cpu["comparison"]) == (pytest.approx(0.25), True, "<=")
    assert by_name["write-heavy (e) throughput loss <= 5% vs (d)"]["met"] is True

    by_name = {t["target"]: t for t in evaluate_targets(_result(d_read=90.0, e_cpu=0.003))}
    assert by_name["read-mostly (d) >= 0.95x (a) throughput"]["met"] is False
    assert by_name["read-mostly (d) >= 2x (b) throughput"]["met"] is False
    assert by_name["write-heavy (d) >= (b) throughput"]["met"] is True
    assert by_name["write-heavy (e) secondary CPU/request <= 0.5x (d)"]["met"] is False


def test_targets_not_measured_when_a_side_is_missing() -> None:
    result = _result(d_read=195.0, e_cpu=0.001)
    del result["read_mostly"]["unreplicated"]
    del result["write_heavy"]
    by_name = {t["target"]: t for t in evaluate_targets(result)}
    assert by_name["read-mostly (d) >= 0.95x (a) throughput"]["met"] is None
    assert by_name["write-heavy (d) >= (b) throughput"]["ratio"] is None
    assert by_name["read-mostly (d) >= 2x (b) throughput"]["met"] is True
    assert "not measured" in format_targets(evaluate_targets(result))


def test_json_shape() -> None:
    result = _result(d_read=195.0, e_cpu=0.001)
    assert set(result) == {*MIXES, "meta"}
    assert all(set(result[m]) == set(CONFIGS) for m in MIXES)
    assert shape_problems(result) == []
    del result["write_heavy"]["colopp"]["p99_ms"]
    result["read_mostly"]["colo"] = _figures(1.0, None)
    result["other"] = {}
    del result["meta"]
    assert shape_problems(result) == [
        "no meta object",
        "read_mostly: unknown configuration 'colo'",
        "write_heavy.colopp: no p99_ms",
        "unknown mix 'other'",
    ]


def test_table_has_every_measured_row() -> None:
    table = format_table(_result(d_read=195.0, e_cpu=0.001)).splitlines()
    assert len(table) == 2 + len(MIXES) * len(CONFIGS)
    assert table[2].startswith("| read-mostly | (a) unreplicated | 200 |")
    assert table[2].endswith("| - |")
    assert all(line.count("|") == len(FIGURES) + 3 for line in table)
