"""bench.pair's drift check: the first configuration's closed loop at the start against its
repeat at the end of the run."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.pair_figures import drift, format_report


def test_drift_is_the_repeat_over_the_first() -> None:
    first = {"read_mostly": {"rps": 1363.0}, "redis_read_mostly": {"rps": 5611.0}}
    repeat = {"read_mostly": {"rps": 2543.0}, "redis_read_mostly": {"rps": 5611.0}}
    out = drift(first, repeat)
    assert out["read_mostly"] == {"first_rps": 1363.0, "repeat_rps": 2543.0, "ratio": 2543 / 1363}
    assert out["redis_read_mostly"]["ratio"] == 1.0


def test_a_mix_without_a_first_rate_is_left_out() -> None:
    # A first window that failed (None) or measured 0 req/s gives no ratio, not a crash.
    out = drift(
        {"read_mostly": None, "write_heavy": {"rps": 0}},
        {"read_mostly": {"rps": 5}, "write_heavy": {"rps": 3}},
    )
    assert out == {}


@given(st.floats(1, 1e6), st.floats(0, 1e6))
def test_ratio_times_first_is_the_repeat(first: float, again: float) -> None:
    d = drift({"m": {"rps": first}}, {"m": {"rps": again}})["m"]
    assert abs(d["ratio"] * first - again) <= 1e-9 * max(1.0, again)


def test_the_report_names_the_drift() -> None:
    result = {
        "meta": {"repeated_config": "unreplicated"},
        "drift": drift({"read_mostly": {"rps": 1000.0}}, {"read_mostly": {"rps": 800.0}}),
    }
    report = format_report(result)
    assert "drift, read_mostly closed loop, unreplicated" in report
    assert "1000 then 800 req/s (0.80x)" in report
