"""issue 21's etcd partition, judged by a client of both sides: a side cut off from the
etcd majority (but not from its clients) stops answering before the other side serves."""

from __future__ import annotations

from bench.fleet_partition import etcd_partition
from tests.integration.etcd_lab import need_etcd


def test_a_client_of_both_sides_never_sees_the_isolated_side_after_the_other_served(
    needs_root: None,
) -> None:
    need_etcd()
    out = etcd_partition(ttl=3, duration=12.0)
    # Not vacuous: the client heard the isolated side after the cut and the other side later.
    assert out["answers_isolated_after_cut"] > 0 and out["answers_other"] > 0
    assert out["dual_primary_observed"] is False, out
    assert out["cut_to_last_isolated_answer_s"] < out["cut_to_first_other_answer_s"]
    # The isolated side fenced before its lease could expire at etcd.
    assert out["cut_to_stop_output_s"] < out["ttl_s"]
    print(out)
