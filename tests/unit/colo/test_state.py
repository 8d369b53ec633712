import pytest

from colopp.colo.state import PairLifecycle, PairState, allowed
from colopp.errors import StateError


def test_protect_failover_stop_records_the_exact_path() -> None:
    seen = []
    life = PairLifecycle(clock=lambda: 1.0, on_change=seen.append)
    for target in (
        PairState.LAUNCHING,
        PairState.SYNCING,
        PairState.PROTECTED,
        PairState.FAILING_OVER,
        PairState.FAILED_OVER,
        PairState.STOPPING,
        PairState.STOPPED,
    ):
        life.move(target)
    assert life.path() == [
        PairState.NEW,
        PairState.LAUNCHING,
        PairState.SYNCING,
        PairState.PROTECTED,
        PairState.FAILING_OVER,
        PairState.FAILED_OVER,
        PairState.STOPPING,
        PairState.STOPPED,
    ]
    assert len(seen) == 7


def test_failover_is_refused_unless_protected() -> None:
    life = PairLifecycle()
    life.move(PairState.LAUNCHING)
    with pytest.raises(StateError, match="from launching to failing_over"):
        life.move(PairState.FAILING_OVER)
    with pytest.raises(StateError, match="pair is launching"):
        life.require(PairState.PROTECTED)


def test_stopped_is_final_and_error_only_stops() -> None:
    assert not any(allowed(PairState.STOPPED, s) for s in PairState)
    assert [s for s in PairState if allowed(PairState.ERROR, s)] == [PairState.STOPPING]


def test_every_state_can_reach_stopped() -> None:
    for state in PairState:
        seen, todo = {state}, [state]
        while todo:
            here = todo.pop()
            for nxt in PairState:
                if allowed(here, nxt) and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert PairState.STOPPED in seen, state
