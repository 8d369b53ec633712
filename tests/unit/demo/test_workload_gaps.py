"""The workload's window gap: the longest time without a success across a window."""

from __future__ import annotations

import pytest

from colopp.demo.workload import max_gap_between


def test_gap_spans_from_last_success_before_to_first_after() -> None:
    done = [1.0, 1.1, 2.0, 2.05, 3.0]
    assert max_gap_between(done, 1.5, 2.5) == pytest.approx(950.0)  # 2.05 -> 3.0
    assert max_gap_between(done, 1.5, 2.01) == pytest.approx(900.0)  # 1.1 -> 2.0
    assert max_gap_between(done, 2.01, 2.02) == pytest.approx(50.0)  # 2.0 -> 2.05


def test_no_success_after_the_window_is_unknown() -> None:
    assert max_gap_between([1.0], 1.5, 2.0) is None


def test_no_success_before_counts_from_the_window_start() -> None:
    assert max_gap_between([2.0, 2.1], 1.5, 2.05) == pytest.approx(500.0)


def test_each_failure_is_recorded_with_its_time_and_error() -> None:
    import time

    from colopp.demo.workload import Tally

    tally = Tally()
    before = time.time()
    tally.failure(TimeoutError("timed out"), reset=False)
    tally.failure(ConnectionResetError("reset"), reset=True)
    assert [e for _, e in tally.failures] == [
        "TimeoutError: timed out",
        "ConnectionResetError: reset",
    ]
    assert all(before <= t <= time.time() for t, _ in tally.failures)
    assert tally.failed == 2 and tally.resets == 1
