"""Any number of checkpoints, failovers, re-protections and switchovers in a row: every live
connection is translated by whichever guest serves it into the sequence space its client saw.

The model: each guest instance has its own ISN per connection; a checkpoint or a
re-protection copies the serving guest's state to the secondary; the learner sees both
guests' ISNs when a connection opens while the pair is protected.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rewrite_frames import CLIENT, GUEST, checksum_ok, fields, tcp

from colopp.compare.young_learn import IsnLearner, Learned
from colopp.errors import StateError
from colopp.rewrite.lifecycle import PairTables, Side
from colopp.rewrite.segment import translate_client_input, translate_guest_output
from colopp.rewrite.table import MASK, ConnKey

EVENTS = st.lists(
    st.sampled_from(["open", "open", "checkpoint", "fail_p", "fail_s", "switchover"]),
    max_size=40,
)


class Model:
    def __init__(self, isns: st.DataObject) -> None:
        self.data = isns
        self.tables = PairTables()
        self.learner = IsnLearner()
        self.primary: dict[ConnKey, int] = {}  # guest ISN per connection (its own space)
        self.secondary: dict[ConnKey, int] | None = {}
        self.client_isn: dict[ConnKey, int] = {}
        self.ports = itertools.count(1024)

    def isn(self) -> int:
        return self.data.draw(st.integers(0, MASK))

    def open(self) -> None:
        key = (GUEST, 80, CLIENT, next(self.ports))
        p_isn = self.isn()
        self.primary[key] = p_isn
        p_client = (p_isn - self.tables.primary.delta(key)) & MASK
        self.client_isn[key] = p_client
        assert self.learner.primary_isn(key, p_client) is None
        if self.secondary is not None:
            s_isn = self.isn()
            self.secondary[key] = s_isn
            learned = self.learner.secondary_isn(key, s_isn)
            assert learned == Learned(key, (s_isn - p_client) & MASK)
            self.tables.learned(learned, 0.0)

    def step(self, event: str) -> None:
        if event == "open":
            self.open()
        elif event == "checkpoint" and self.secondary is not None:
            self.secondary = dict(self.primary)
            self.tables.checkpoint()
            self.learner.clear()
        elif event == "fail_p" and self.secondary is not None:  # primary dies, then re-protect
            self.primary = self.secondary
            self.tables.failover(Side.SECONDARY)
            self.secondary = dict(self.primary)
            self.tables.reprotect()
        elif event == "fail_s" and self.secondary is not None:  # secondary dies, re-protect
            self.tables.failover(Side.PRIMARY)
            self.secondary = dict(self.primary)
            self.tables.reprotect()
        elif event == "switchover" and self.secondary is not None:
            self.primary = self.secondary
            self.secondary = dict(self.primary)
            self.tables.switchover()

    def check(self) -> None:
        for key, client_isn in self.client_isn.items():
            port = key[3]
            guest_seq = (self.primary[key] + 1) & MASK
            frame = tcp(guest_seq, 7, "PA", b"hi", port_client=port)
            out = translate_guest_output(frame, self.tables.primary, 0.0)
            assert fields(out)[0] == (client_isn + 1) & MASK
            assert checksum_ok(out)
            reply = tcp(7, (client_isn + 3) & MASK, "A", from_guest=False, port_client=port)
            into = translate_client_input(reply, self.tables.primary, 0.0)
            assert fields(into)[1] == (self.primary[key] + 3) & MASK
            if self.secondary is not None and self.tables.secondary is not None:
                assert (self.secondary[key] - self.tables.secondary.delta(key)) & MASK == client_isn


@settings(max_examples=60, deadline=None)
@given(events=EVENTS, data=st.data())
def test_every_connection_survives_every_event_sequence(
    events: list[str], data: st.DataObject
) -> None:
    model = Model(data)
    for event in events:
        model.step(event)
        model.check()


def test_four_primary_failovers_in_a_row_with_young_connections() -> None:
    isns = iter(range(10_000, 10_000_000, 7919))

    class Fixed:
        def draw(self, _strategy: object) -> int:
            return next(isns)

    model = Model(Fixed())  # type: ignore[arg-type]
    for _ in range(4):
        model.open()  # opened since the last checkpoint, just before the failover
        model.step("fail_p")
        model.check()
    assert len(model.tables.primary) == 4


def test_learned_without_a_secondary_is_a_state_error() -> None:
    tables = PairTables()
    tables.failover(Side.PRIMARY)
    with pytest.raises(StateError):
        tables.learned(Learned((1, 2, 3, 4), 5), 0.0)
    with pytest.raises(StateError):
        tables.failover(Side.SECONDARY)


def test_learner_pending_is_bounded() -> None:
    learner = IsnLearner(max_pending=3)
    for port in range(10):
        learner.primary_isn((1, 80, 2, port), port)
    assert len(learner) == 3
    assert learner.secondary_isn((1, 80, 2, 0), 5) is None  # oldest was dropped
    assert learner.secondary_isn((1, 80, 2, 9), 20) == Learned((1, 80, 2, 9), 11)
