"""bench.fleet's failed requests: each placed on its protection's timeline, in or out of the
documented failover window."""

from __future__ import annotations

from bench.fleet_window import Timeline, classify, phase_of, sent_times, summary, timeline

CUT = 1000.0


def state(t: float, target: str) -> dict[str, object]:
    return {"t": CUT + t, "type": "state", "data": {"target": target}}


def test_the_timeline_takes_the_first_failed_over_then_protected_after_the_cut() -> None:
    events = [
        state(-30, "protected"),  # before the cut: ignored
        state(2, "failing_over"),
        {"t": CUT + 3, "type": "failover", "data": {}},
        state(9.5, "failed_over"),
        state(12, "launching"),
        state(20, "protected"),
        state(40, "failed_over"),  # a later incident: not this one's
    ]
    assert timeline(events, CUT, "primary") == Timeline("primary", 9.5, 20.0)
    assert timeline([state(3, "failing_over")], CUT, "secondary") == Timeline(
        "secondary", None, None
    )
    # A replica that took the lead found it failed over, then re-protected it.
    found = [{"t": CUT + 10, "type": "reattached", "data": {"state": "failed_over"}}]
    assert timeline([*found, state(25, "protected")], CUT, "secondary") == Timeline(
        "secondary", 10.0, 25.0
    )


def test_phases_follow_the_timeline() -> None:
    line = Timeline("primary", 9.5, 20.0)
    assert [phase_of(t, line) for t in (-1, 0, 9.4, 9.5, 19.9, 20, 50)] == [
        "before_cut",
        "failover",
        "failover",
        "reprotection",
        "reprotection",
        "after",
        "after",
    ]
    assert phase_of(5, Timeline(None, None, None)) == "after"
    assert phase_of(5, Timeline("primary", None, None)) == "failover"  # never served again


def test_only_a_lost_primary_s_requests_sent_before_it_served_again_are_in_the_window() -> None:
    lost_primary = Timeline("primary", 9.5, 20.0)
    failures = [
        (CUT + 14.0, "TimeoutError: timed out"),  # sent at -1: in flight at the cut
        (CUT + 16.0, "TimeoutError: timed out"),  # sent at 1: in the failover
        (CUT + 12.0, "RuntimeError: PUT c0-9 -> 503"),  # untraced, failed after served
        (CUT - 2.0, "ConnectionResetError: reset"),  # before the cut
    ]
    placed = classify("vm0", failures, [-1.0, 1.0, None, None], CUT, lost_primary)
    assert [(f.phase, f.in_window) for f in placed] == [
        ("failover", True),
        ("failover", True),
        ("reprotection", False),
        ("before_cut", False),
    ]
    lost_secondary = Timeline("secondary", 3.0, 15.0)
    (kept,) = classify("vm1", [(CUT + 1, "TimeoutError: x")], [0.5], CUT, lost_secondary)
    assert (kept.phase, kept.in_window) == ("failover", False)  # its primary kept serving
    (other,) = classify(
        "vm2", [(CUT + 1, "TimeoutError: x")], [0.5], CUT, Timeline(None, None, None)
    )
    assert not other.in_window
    out = summary([*placed, kept, other], {"vm0": lost_primary})
    assert out["requests_failed_in_window"] == 2
    assert out["requests_failed_outside_window"] == 4
    assert out["failures"][0]["sent_s"] == -1.0
    assert out["timelines_s"]["vm0"]["served_again"] == 9.5


def test_sent_times_match_the_trace_entry_that_failed_with_that_error() -> None:
    trace = [
        [0, "PUT", CUT - 1.0, CUT + 14.0, "TimeoutError"],
        [1, "GET", CUT + 0.5, CUT + 0.6, "ok"],
        [1, "GET", CUT + 1.0, CUT + 16.0, "TimeoutError"],
        [2, "POST", CUT + 3.0, CUT + 16.1, "ConnectionResetError"],
    ]
    failures = [
        (CUT + 16.001, "TimeoutError: timed out"),
        (CUT + 14.002, "TimeoutError: timed out"),
        (CUT + 16.1, "ConnectionResetError: reset"),
        (CUT + 30.0, "RuntimeError: PUT -> 503"),  # not an exception of the request
    ]
    assert sent_times(trace, failures, CUT) == [1.0, -1.0, 3.0, None]
