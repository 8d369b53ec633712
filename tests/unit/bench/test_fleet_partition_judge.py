"""bench.fleet's etcd partition verdict: the client's answers, not the sides' clocks."""

from __future__ import annotations

from bench.fleet_partition import verdict


def test_an_answer_from_the_isolated_side_after_the_other_served_is_dual() -> None:
    answers = [(9.0, "a"), (10.5, "a"), (12.0, "a"), (13.5, "b"), (13.6, "a"), (14.0, "b")]
    out = verdict(answers, 10.0, "a", "b")
    assert out["dual_primary_observed"] is True
    assert out["answers_isolated_after_other_served"] == 1
    assert out["answers_isolated_before_cut"] == 1
    assert out["answers_isolated_after_cut"] == 3


def test_the_isolated_side_silent_before_the_other_serves_is_not_dual() -> None:
    answers = [[9.0, "a"], [11.9, "a"], [13.5, "b"], [14.0, "b"]]  # as JSON gives them
    out = verdict(answers, 10.0, "a", "b")
    assert out["dual_primary_observed"] is False
    assert out["cut_to_last_isolated_answer_s"] == 1.9
    assert out["cut_to_first_other_answer_s"] == 3.5
    assert out["answers_other"] == 2


def test_answers_at_the_same_instant_count_as_dual() -> None:
    assert verdict([(13.5, "b"), (13.5, "a")], 10.0, "a", "b")["dual_primary_observed"] is True
