"""The young learner across a checkpoint, for any ISNs and any order of the openings after it.

Whichever guest answered a SYN before the primary's STOP decides what the load left: the
primary's answer is in the snapshot (both guests hold its ISN: nothing to learn), the
secondary's alone died with the load (only a fresh pair after it is a young offset).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from colopp.compare.seq import MASK
from colopp.compare.young_learn import IsnLearner

KEY = (1, 80, 2, 40000)
isns = st.integers(min_value=0, max_value=MASK)
after = st.lists(st.sampled_from(["p", "stale", "fresh"]), max_size=8)


@given(p=isns, stale=isns, fresh=isns, events=after)
def test_only_a_fresh_pair_after_a_secondary_half_is_learned(
    p: int, stale: int, fresh: int, events: list[str]
) -> None:
    learner = IsnLearner()
    assert learner.secondary_isn(KEY, stale) is None
    learner.clear()
    learned = []
    for event in events:
        if event == "p":
            out = learner.primary_isn(KEY, p)
        else:
            out = learner.secondary_isn(KEY, stale if event == "stale" else fresh)
        if out is not None:
            learned.append(out)
    for out in learned:
        # A pair always spans one primary and one secondary opening after the load, never
        # the voided ISN (a fresh ISN equal to the stale one is taken as stale: ignored).
        assert out.delta == (fresh - p) & MASK and out.isn_client == p and fresh != stale
    assert bool(learned) == ("p" in events and "fresh" in events and fresh != stale)


@given(p=isns, s=isns, events=after)
def test_nothing_is_learned_after_a_primary_half(p: int, s: int, events: list[str]) -> None:
    learner = IsnLearner()
    assert learner.primary_isn(KEY, p) is None
    learner.clear()
    for event in events:
        if event == "p":
            assert learner.primary_isn(KEY, p) is None
        else:
            assert learner.secondary_isn(KEY, s) is None
