"""The holder's state machine: deadlines, delayed answers, pauses, clock jumps (pure)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.arbiter.right import FENCE, FenceAction, RightState, ServeRight
from colopp.arbiter.timing import LeaseTiming
from colopp.errors import StateError

T = LeaseTiming()  # ttl 3, renew 0.5, fence budget 0.5, check 0.05, drift 1%


def held(at: float = 100.0, token: int = 7) -> ServeRight:
    right = ServeRight(T)
    right.granted(token, at)
    return right


def test_renewed_right_keeps_serving_and_unrenewed_one_fences_at_the_deadline() -> None:
    right = held()
    for k in range(1, 20):
        assert right.renewed(100.0 + 0.5 * k, 3, now=100.0 + 0.5 * k + 0.01) == ()
    last = 100.0 + 0.5 * 19
    assert right.may_release(last + T.fence_after - 0.001)
    assert right.tick(last + T.fence_after - 0.001) == ()
    assert right.tick(last + T.fence_after) == FENCE
    assert not right.may_release(last + T.fence_after)
    right.killed()
    assert [(a.value, b.value) for a, b, _ in right.transitions] == [
        ("idle", "holding"),
        ("holding", "fencing"),
        ("fencing", "fenced"),
    ]


def test_a_late_answer_counts_from_when_its_request_was_sent() -> None:
    right = held(at=0.0)
    # Sent at 0.5, answered 2.2 s later: the deadline moves to 0.5 + fence_after, not later.
    right.renewed(0.5, 3, now=2.7)
    assert right.fence_at == pytest.approx(0.5 + T.fence_after)


def test_an_old_answer_arriving_after_a_newer_one_changes_nothing() -> None:
    right = held(at=0.0)
    right.renewed(1.0, 3, now=1.1)
    right.renewed(0.5, 3, now=1.2)  # overtaken on the way
    assert right.renewed_sent_at == 1.0


def test_an_answer_after_the_deadline_cannot_revive_the_right() -> None:
    right = held(at=0.0)
    assert right.tick(T.fence_after + 1) == FENCE
    assert right.renewed(T.fence_after, 3, now=T.fence_after + 1.1) == ()
    assert right.state is RightState.FENCING


@pytest.mark.parametrize(("ttl", "why"), [(0, "lease gone"), (2, "less than 3s")])
def test_lease_gone_or_shortened_fences_at_once(ttl: int, why: str) -> None:
    right = held(at=0.0)
    assert right.renewed(0.5, ttl, now=0.6) == FENCE
    assert why in right.reason


def test_a_pause_past_the_deadline_fences_on_the_first_look_after_it() -> None:
    right = held(at=0.0)
    assert right.may_release(0.1)
    # The process was stopped for 10 s: the first tick fences, nothing is released.
    assert not right.may_release(10.1)
    assert right.tick(10.1) == FENCE


def test_a_clock_that_goes_backwards_fences() -> None:
    right = held(at=0.0)
    right.tick(1.0)
    assert not right.may_release(0.5)
    assert right.tick(0.5) == FENCE
    assert "backwards" in right.reason


def test_lost_key_fences_and_release_only_stops_output() -> None:
    right = held()
    assert right.lost("key taken") == FENCE
    other = held()
    assert other.release() == (FenceAction.STOP_OUTPUT,)
    assert other.state is RightState.RELEASED
    with pytest.raises(StateError):
        other.killed()


def test_bad_grants_are_refused() -> None:
    with pytest.raises(StateError, match="positive"):
        ServeRight(T).granted(0, 1.0)
    right = held()
    with pytest.raises(StateError, match="holding -> holding"):
        right.granted(9, 2.0)


# --- a model of the holder, etcd and the network, with clocks and pauses against us ----


@dataclass
class World:
    """Real time, a holder clock and an etcd clock running at different rates."""

    local_rate: float
    etcd_rate: float
    real: float = 0.0
    expiry: float = 0.0  # when etcd expires the lease (real time)

    def local(self) -> float:
        return 1000.0 + self.real * self.local_rate


steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0.001, T.check_period)),
        st.tuples(st.just("pause"), st.floats(0.0, 6.0)),
        st.tuples(
            st.just("renew"),
            st.floats(0.0, 2.0),  # to etcd
            st.floats(0.0, 2.0),  # back
            st.booleans(),  # the answer is lost
        ),
    ),
    max_size=80,
)
rates = st.floats(1 - T.drift, 1 + T.drift)


@settings(max_examples=300, deadline=None)
@given(steps=steps, local_rate=rates, etcd_rate=rates)
def test_output_is_never_released_once_the_lease_may_have_expired(
    steps: list[tuple[object, ...]], local_rate: float, etcd_rate: float
) -> None:
    w = World(local_rate, etcd_rate)
    right = ServeRight(T)
    right.granted(5, w.local())
    w.expiry = w.real + T.ttl / etcd_rate  # etcd granted on receipt, no earlier than sent
    answers: list[tuple[float, float, int]] = []  # (arrival real, sent local, ttl)
    fenced_real: float | None = None

    def advance(dt: float, looking: bool) -> None:
        nonlocal fenced_real
        target = w.real + dt
        while answers and answers[0][0] <= target:
            arrival, sent_local, ttl = heapq.heappop(answers)
            w.real = max(w.real, arrival)
            if right.renewed(sent_local, ttl, w.local()) and fenced_real is None:
                fenced_real = w.real
        w.real = target
        if looking:
            if right.may_release(w.local()):
                # The gate opens only while the lease is alive with the fence budget to spare.
                assert w.real + (T.fence_budget + T.check_period) / local_rate <= w.expiry
            if right.tick(w.local()) and fenced_real is None:
                fenced_real = w.real

    for step in steps:
        if step[0] == "tick":
            advance(float(step[1]), looking=True)  # type: ignore[arg-type]
        elif step[0] == "pause":
            advance(float(step[1]), looking=False)  # type: ignore[arg-type]
        else:
            _, to_etcd, back, lost = step
            sent_local = w.local()
            received = w.real + float(to_etcd)  # type: ignore[arg-type]
            alive = received < w.expiry
            if alive:
                w.expiry = max(w.expiry, received + T.ttl / etcd_rate)
            if not lost:
                heapq.heappush(
                    answers,
                    (received + float(back), sent_local, T.ttl if alive else 0),  # type: ignore[arg-type]
                )
    if fenced_real is not None and right.state is RightState.FENCING:
        right.killed()
    # Fencing began in time unless a pause hid the deadline from the holder.
    assert right.state in {RightState.HOLDING, RightState.FENCED}


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(0.001, T.check_period), min_size=1, max_size=200),
    local_rate=rates,
    etcd_rate=rates,
)
def test_a_holder_that_keeps_looking_fences_with_the_budget_to_spare(
    gaps: list[float], local_rate: float, etcd_rate: float
) -> None:
    w = World(local_rate, etcd_rate)
    right = ServeRight(T)
    right.granted(5, w.local())
    w.expiry = T.ttl / etcd_rate
    for gap in gaps:
        w.real += gap
        if right.tick(w.local()):
            # Stop output and kill now: done within the budget, before etcd can expire it.
            assert w.real + T.fence_budget / local_rate <= w.expiry
            return
    assert right.state is RightState.HOLDING


@pytest.mark.parametrize("ttl", [2, 3, 5, 10])
def test_worst_drift_corner_slow_holder_fast_etcd(ttl: int) -> None:
    """The holder's clock runs slow and etcd's fast, both at the bound, ticks as rare as allowed."""
    t = LeaseTiming(ttl=ttl, renew_interval=0.3, request_timeout=0.3)
    local_rate, etcd_rate = 1 - t.drift, 1 + t.drift
    w = World(local_rate, etcd_rate)
    right = ServeRight(t)
    right.granted(5, w.local())
    w.expiry = ttl / etcd_rate
    while not right.tick(w.local()):
        w.real += t.check_period / local_rate
    # Fencing began no later than one check period past its local deadline...
    assert w.local() - 1000.0 <= t.fence_after + t.check_period
    # ...and finishes (budget on the holder's clock) before etcd can hand the key over.
    assert w.real + t.fence_budget / local_rate <= w.expiry
