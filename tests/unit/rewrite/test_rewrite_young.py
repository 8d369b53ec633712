"""Young offsets: live in filter-rewriter exactly until the secondary loads a checkpoint."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from colopp.rewrite.table import OffsetTable
from colopp.rewrite.young import YoungOffsets

A = (1, 80, 2, 1000)
B = (1, 80, 2, 1001)


def test_entries_die_at_the_next_loaded_checkpoint() -> None:
    young = YoungOffsets()
    young.learned(A, 7, epoch=0)
    assert young.live() == {A: 7}
    young.checkpoint_loaded()
    young.learned(B, 9, epoch=1)
    assert young.live() == {B: 9}


def test_learned_late_for_an_already_loaded_checkpoint_is_dead() -> None:
    young = YoungOffsets()
    young.checkpoint_loaded()  # the secondary loaded checkpoint 1 ...
    young.learned(A, 7, epoch=0)  # ... before the comparator's epoch-0 message arrived
    assert young.live() == {}


def test_zero_delta_is_not_an_entry() -> None:
    young = YoungOffsets()
    young.learned(A, 0, epoch=0)
    assert len(young) == 0


@given(loaded=st.integers(0, 5), epochs=st.lists(st.integers(0, 6), max_size=10))
def test_table_of_record_is_inherited_plus_live(loaded: int, epochs: list[int]) -> None:
    inherited = OffsetTable()
    inherited.set_delta((9, 9, 9, 9), 3, 0.0)
    young = YoungOffsets()
    for _ in range(loaded):
        young.checkpoint_loaded()
    for port, epoch in enumerate(epochs):
        young.learned((1, 80, 2, port), port + 1, epoch)
    table = young.table_of_record(inherited, 0.0)
    assert table.delta((9, 9, 9, 9)) == 3
    for port, epoch in enumerate(epochs):
        want = port + 1 if epoch >= loaded else 0
        assert table.delta((1, 80, 2, port)) == want
    assert len(inherited) == 1


def test_promotion_drops_offsets_older_than_the_secondarys_own_last_load() -> None:
    # Issue 18 regression: the secondary loaded a checkpoint (its filter-rewriter zeroed
    # every offset), then the primary died before the comparator's "completed" message
    # arrived. The connections run in the client's sequence space now: no record entry.
    young = YoungOffsets()
    young.learned(A, 7, epoch=3, arrived=100.0)
    young.learned(B, 9, epoch=3, arrived=100.4)
    last_load = 100.2  # QEMU's RESUME after loading checkpoint 4; "completed 4" never came
    assert young.live() == {A: 7, B: 9}  # the comparator's count alone keeps both
    assert young.live(last_load) == {B: 9}  # B opened after that load: still young
    table = young.table_of_record(OffsetTable(), 0.0, last_load)
    assert table.delta(A) == 0 and table.delta(B) == 9


def test_no_load_on_record_keeps_every_live_offset() -> None:
    young = YoungOffsets()
    young.learned(A, 7, epoch=0, arrived=5.0)
    assert young.table_of_record(OffsetTable(), 0.0, None).delta(A) == 7


def test_census_says_why_each_offset_is_carried_or_dropped() -> None:
    young = YoungOffsets()
    young.learned(A, 7, epoch=0, arrived=1.0)  # voided by the load the primary reported
    young.completed(1)
    young.learned(B, 9, epoch=1, arrived=2.0)  # voided by a load only the secondary saw
    young.learned((1, 80, 2, 1002), 5, epoch=1, arrived=4.0)
    assert young.census(last_load=3.0) == {
        "young": 2,
        "carried": 1,
        "dropped_epoch": 0,
        "dropped_load": 1,
        "pending": 0,
        "dropped_unadopted": 0,
    }
    young.learned(A, 7, epoch=0, arrived=5.0)  # a late message of an old epoch
    assert young.census(last_load=3.0)["dropped_epoch"] == 1
    assert young.census()["carried"] == 2


def test_an_unproven_offset_without_its_isn_stays_out_of_the_record() -> None:
    # Issue 18 regression (bench.churn's connection opened at the kill): the secondary host
    # acknowledged the offset, the primary died before its SYN-ACK reached the client, the
    # client retransmitted its SYN to the promoted guest and took *its* ISN. No output of
    # the connection ever proved adoption: the record must not translate it (with the
    # client's ISN known it travels pending instead: test_rewrite_pending.py).
    young = YoungOffsets()
    young.learned(A, 7, epoch=0, arrived=1.0, awaits_adoption=True)
    young.learned(B, 9, epoch=0, arrived=1.0, awaits_adoption=True)
    young.adopted(B, 0)  # B's guest answered its client: the client took the primary's ISN
    assert young.live() == {B: 9}
    assert young.table_of_record(OffsetTable(), 0.0).delta(A) == 0
    assert young.census()["dropped_unadopted"] == 1


def test_adoption_of_another_epoch_or_key_changes_nothing() -> None:
    young = YoungOffsets()
    young.learned(A, 7, epoch=2, awaits_adoption=True)
    young.adopted(A, 1)
    young.adopted(B, 2)
    assert young.live() == {} and A in young and B not in young


@given(
    st.lists(st.tuples(st.sampled_from(["learn", "adopt", "load"]), st.integers(0, 3)), max_size=30)
)
def test_record_holds_exactly_the_adopted_offsets_of_live_epochs(
    ops: list[tuple[str, int]],
) -> None:
    """Model: the record is {key: delta} of offsets learned in an epoch not yet loaded over
    and adopted in that same incarnation (a new learn of the key needs a new adoption)."""
    young = YoungOffsets()
    epoch = 0
    model: dict[int, tuple[int, int, bool]] = {}  # port -> (delta, epoch, adopted)
    for op, port in ops:
        key = (1, 80, 2, port)
        if op == "learn":
            young.learned(key, port + 1, epoch, awaits_adoption=True)
            model[port] = (port + 1, epoch, False)
        elif op == "adopt":
            young.adopted(key, epoch)
            if port in model and model[port][1] == epoch:
                model[port] = (model[port][0], epoch, True)
        else:
            epoch += 1
            young.checkpoint_loaded()
            model = {p: v for p, v in model.items() if v[1] >= epoch}
    want = {(1, 80, 2, p): d for p, (d, e, adopted) in model.items() if adopted and e >= epoch}
    assert young.live() == want
