"""Pure parts of the API: state mapping, refusals, restart reconciliation, the sampler."""

from __future__ import annotations

import pytest

from colopp.colo.state import PairState
from colopp_api.live.sampler import SamplerMemory, Tally, cpu_seconds_from_stat, digest
from colopp_api.states import Action, ApiState, from_pair, reconcile, refusal


def test_every_pair_state_maps_onto_an_api_state() -> None:
    assert {from_pair(s, reprotecting=False) for s in PairState} <= set(ApiState)
    assert from_pair(PairState.LAUNCHING, reprotecting=True) is ApiState.REPROTECTING
    assert from_pair(PairState.SYNCING, reprotecting=False) is ApiState.SYNCING
    assert from_pair(PairState.PROTECTED, reprotecting=True) is ApiState.PROTECTED


@pytest.mark.parametrize(
    ("action", "state", "stopped", "ok"),
    [
        (Action.FAILOVER, ApiState.PROTECTED, False, True),
        (Action.FAILOVER, ApiState.STARTING, False, False),
        (Action.SWITCHOVER, ApiState.FAILED_OVER, False, False),
        (Action.REPROTECT, ApiState.FAILED_OVER, False, True),
        (Action.REPROTECT, ApiState.UNPROTECTED, False, True),
        (Action.REPROTECT, ApiState.UNPROTECTED, True, False),
        (Action.UNPROTECT, ApiState.SYNCING, False, True),
        (Action.UNPROTECT, ApiState.UNPROTECTING, False, False),
        (Action.UNPROTECT, ApiState.UNPROTECTED, True, False),
        (Action.UNPROTECT, ApiState.ERROR, True, False),
        (Action.UNPROTECT, ApiState.ERROR, False, True),
    ],
)
def test_refusals_name_the_state(action: Action, state: ApiState, stopped: bool, ok: bool) -> None:
    why = refusal(action, state, stopped)
    assert (why is None) is ok
    if why is not None:
        assert state.value in why and action.value in why


def test_reconcile_after_a_restart() -> None:
    colo = ("primary", "secondary")
    assert reconcile(PairState.PROTECTED, (None, None), False, False)[0] is PairState.PROTECTED
    assert reconcile(PairState.SYNCING, colo, False, False)[0] is PairState.PROTECTED
    assert reconcile(PairState.SYNCING, (None, None), False, False)[0] is PairState.ERROR
    assert reconcile(PairState.LAUNCHING, (None, None), False, True)[0] is PairState.FAILED_OVER
    assert reconcile(PairState.FAILING_OVER, colo, True, False)[0] is PairState.FAILED_OVER
    assert reconcile(PairState.FAILING_OVER, colo, False, False)[0] is PairState.ERROR


def test_a_leader_killed_while_a_lost_secondary_was_failed_over_finds_the_primary_alone() -> None:
    """Found by bench.fleet: the replica that took the lead put such a pair in error (and
    tore the serving VM down), since only the recorded secondary was asked."""
    got = reconcile(PairState.FAILING_OVER, ("primary", None), False, False, primary_alone=True)
    assert got[0] is PairState.FAILED_OVER and "alone" in got[1]


def test_cpu_seconds_from_proc_stat() -> None:
    line = "1234 (qemu-system-x86 (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 99 1 2"
    assert cpu_seconds_from_stat(line, 100) == 3.0


def _status(
    count: int, pauses: list[float], divergences: dict[str, int] | None
) -> dict[str, object]:
    status: dict[str, object] = {
        "pid": 10,
        "vm_alive": True,
        "checkpoints": count,
        "checkpoint_pauses_ms": pauses,
        "last_checkpoint_at": 5.0,
    }
    if divergences is not None:
        status["comparator"] = {"counters": {"divergences": divergences, "matched_frames": 7}}
    return status


def test_digest_attributes_checkpoints_to_divergences_then_periodic() -> None:
    memory, tally = SamplerMemory(), Tally()
    digest(memory, tally, {"a": _status(2, [40, 41], {})}, ("a", "b"), 1.0, {})
    sample, events = digest(
        memory, tally, {"a": _status(5, [40, 41, 45, 46, 47], {"payload": 2})}, ("a", "b"), 2.0, {}
    )
    kinds = [(k, d.get("reason")) for _, k, d in events]
    assert kinds == [
        ("divergence", "payload"),
        ("checkpoint", "payload"),
        ("checkpoint", "payload"),
        ("checkpoint", "periodic"),
    ]
    assert sample["new_checkpoints"] == 3 and sample["checkpoint_pauses_ms"] == [45, 46, 47]
    assert sample["comparator"]["compared"] == 7
    assert tally.checkpoints == {"payload": 2, "periodic": 1}
    assert sum(tally.pause_counts) == 3 and tally.divergences == {"payload": 2}


def test_digest_builtin_comparator_and_new_primary() -> None:
    memory, tally = SamplerMemory(), Tally()
    digest(memory, tally, {"a": _status(3, [1, 2, 3], None)}, ("a", None), 1.0, {})
    _, events = digest(memory, tally, {"a": _status(4, [1, 2, 3, 4], None)}, ("a", None), 2.0, {})
    assert [d["reason"] for _, k, d in events if k == "checkpoint"] == ["colo-compare"]
    # A host seen for the first time (after a failover) sets the baseline: no burst.
    _, events = digest(memory, tally, {"b": _status(9, [1], None)}, ("b", None), 3.0, {})
    assert events == []


def test_digest_reports_pass_through_by_ethertype() -> None:
    status = _status(1, [40], {})
    counters = {
        "passthrough_frames": 5,
        "passthrough_ipv6_control": 2,
        "passthrough_by_ethertype": {"0x0806": 3, "bogus": "x"},
    }
    status["comparator"] = {"counters": counters}
    tally = Tally()
    sample, _ = digest(SamplerMemory(), tally, {"a": status}, ("a", "b"), 1.0, {})
    assert sample["comparator"]["passthrough"] == 5
    assert sample["comparator"]["passthrough_ipv6_control"] == 2
    assert sample["comparator"]["passthrough_by_ethertype"] == {"0x0806": 3}
    assert tally.comparator["passthrough_by_ethertype"] == {"0x0806": 3}
