"""The pure side of ``python -m bench.bulk``: parsing, figures, targets."""

from __future__ import annotations

import json

import pytest

from bench.bulk_stats import (
    evaluate_targets,
    format_table,
    format_targets,
    iperf3_longest_stall_s,
    iperf3_mbit_per_s,
    iperf3_retransmits,
    max_hold_ms,
    mean_hold_ms,
    shape_problems,
    window_figures,
    wrk_mbit_per_s,
)


def _iperf3(bps: float, retransmits: int = 3) -> str:
    return json.dumps({
        "end": {
            "sum_sent": {"bits_per_second": bps * 1.01, "retransmits": retransmits},
            "sum_received": {"bits_per_second": bps},
        }
    })  # fmt: skip


def test_iperf3_figures() -> None:
    assert iperf3_mbit_per_s(_iperf3(54e6), reverse=True) == pytest.approx(54.0)
    assert iperf3_retransmits(_iperf3(1e6, 409)) == 409
    assert iperf3_retransmits("not json") is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nope", "not iperf3 JSON"),
        ("[]", "not an object"),
        (json.dumps({"error": "unable to connect"}), "unable to connect"),
        (json.dumps({"end": {}}), "bits_per_second"),
    ],
)
def test_iperf3_errors_are_clear(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        iperf3_mbit_per_s(text, reverse=False)


def test_wrk_transfer_rate() -> None:
    assert wrk_mbit_per_s("Requests/sec: 100\nTransfer/sec:      6.90MB\n") == pytest.approx(
        6.9 * 1024 * 1024 * 8 / 1e6
    )
    assert wrk_mbit_per_s("Transfer/sec:  512.00KB\n") == pytest.approx(512 * 1024 * 8 / 1e6)
    with pytest.raises(ValueError, match="Transfer/sec"):
        wrk_mbit_per_s("Requests/sec: 1\n")


def test_mean_hold_over_the_window() -> None:
    before = {"hold_time_counts": [1, 1], "hold_time_sum": 0.5}
    after = {"hold_time_counts": [3, 3], "hold_time_sum": 0.9}
    assert mean_hold_ms(before, after) == pytest.approx(100.0)
    assert mean_hold_ms({}, {}) is None


def test_window_figures_carry_the_issue_keys() -> None:
    before = {"released_frames": 10, "divergences": {"tcp_payload_mismatch": 2}}
    after = {"released_frames": 25, "divergences": {"tcp_payload_mismatch": 5, "x": 0}}
    f = window_figures(80.0, 7, before, after)
    assert f["mbit_per_s"] == 80.0 and f["checkpoints"] == 7 and f["mean_hold_ms"] is None
    assert f["released_frames"] == 15
    assert f["divergences"] == {"tcp_payload_mismatch": 3}


def _result() -> dict[str, object]:
    def f(v: float) -> dict[str, object]:
        return {"mbit_per_s": v, "checkpoints": 1, "mean_hold_ms": 2.0}

    return {
        "meta": {},
        "upload": {"unreplicated": f(600), "builtin": f(100), "colopp": f(90),
                   "colopp_prerelease": f(280), "colopp_prerelease_semiactive": f(310)},
        "download_iperf3": {"builtin": f(54), "colopp": f(80)},
    }  # fmt: skip


def test_targets_met_not_met_and_missing() -> None:
    targets = {t["target"]: t for t in evaluate_targets(_result())}
    assert targets["upload: (c) >= (b)"]["met"] is False
    assert targets["upload: (c) >= (b)"]["ratio"] == pytest.approx(0.9)
    assert targets["upload: (d) or (e) >= 0.5 x (a)"]["met"] is True  # (e) counts
    assert targets["download_iperf3: (c) >= (b)"]["met"] is True
    assert targets["download_static: (c) >= (b)"]["met"] is None
    text = format_targets(evaluate_targets(_result()))
    assert "upload: (c) >= (b): NOT met (ratio 0.90, bound 1.0)" in text
    assert "download_static: (c) >= (b): not measured" in text


def test_shape_and_table() -> None:
    result = _result()
    assert shape_problems(result) == []
    result["download_static"] = {"colopp": {"mbit_per_s": 1.0}}
    result["sideways"] = {}
    problems = shape_problems(result)
    assert "download_static.colopp: no checkpoints" in problems
    assert "unknown traffic 'sideways'" in problems
    table = format_table(_result(), ("builtin", "colopp"))
    assert "| download_iperf3 | 54.0 (1 ckpt, 2.0 ms hold) | 80.0 (1 ckpt, 2.0 ms hold) |" in table


def _intervals(megabytes: list[float], seconds: float = 0.5) -> str:
    rows = [{"sum": {"seconds": seconds, "bytes": mb * 1e6}} for mb in megabytes]
    return json.dumps({"intervals": rows})


def test_the_longest_stall_is_the_longest_run_of_near_empty_intervals() -> None:
    # Mean 4 MB per 0.5 s: under 0.4 MB is a stalled interval.
    text = _intervals([6, 6, 0.1, 6, 0, 0, 0.3, 6, 6, 5.6])
    assert iperf3_longest_stall_s(text) == 1.5
    assert iperf3_longest_stall_s(_intervals([5, 5, 5])) == 0.0
    assert iperf3_longest_stall_s("not json") is None
    assert iperf3_longest_stall_s(json.dumps({"intervals": []})) is None


def test_max_hold_is_the_top_bucket_that_grew_in_the_window() -> None:
    before = {"hold_time_counts": [5, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]}
    after = {"hold_time_counts": [9, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]}
    assert max_hold_ms(before, after) == 5.0  # the 0.5 s bucket did not grow
    after["hold_time_counts"][-1] = 1
    assert max_hold_ms(before, after) == 10_000.0
    assert max_hold_ms({}, {}) is None


def test_process_cpu_delta_per_host_and_role() -> None:
    from bench.bulk_stats import process_cpu_delta

    before = {"hostb": {"qemu": 10.0, "relay": 1.0}}
    after = {"hostb": {"qemu": 15.5, "relay": 3.25, "agent": 0.1}, "hosta": {"qemu": 2.0}}
    assert process_cpu_delta(before, after) == {
        "hostb": {"agent": 0.1, "qemu": 5.5, "relay": 2.25},
        "hosta": {"qemu": 2.0},
    }


def test_relay_delta_only_with_a_relay() -> None:
    from bench.bulk_stats import relay_delta

    assert relay_delta({}, {}) is None
    got = relay_delta({"client_frames": 5}, {"client_frames": 105, "gate_holds": 2})
    assert got is not None
    assert got["client_frames"] == 100
    assert got["gate_holds"] == 2
    assert got["receipt_frames"] == 0


def test_each_configuration_gets_a_fresh_state_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bench.bulk import ACCEL_CACHE, fresh_state_dir

    (tmp_path / ACCEL_CACHE).write_text('{"accel": "tcg"}')
    one = fresh_state_dir(tmp_path, "colopp_prerelease_semiactive")
    two = fresh_state_dir(tmp_path, "colopp_prerelease_semiactive")
    assert one != two and one.parent == two.parent == tmp_path
    assert (one / ACCEL_CACHE).read_text() == '{"accel": "tcg"}'  # no probe again
    assert list(one.iterdir()) == [one / ACCEL_CACHE]  # nothing of an earlier pair
    # Room for the agents' unix sockets below it (108 bytes with the real base).
    tail = "/hostb/demo/secondary/red1.sock"
    assert len("/var/lib/colopp/bench-bulk/" + one.name + tail) < 100
