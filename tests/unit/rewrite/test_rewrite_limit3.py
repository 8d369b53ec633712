"""Limit (3), filter-rewriter's garbage offset (docs/rewrite.md, cause 4 and "Limit (3)
closed"): a handshake whose client ACK reaches the secondary after a checkpoint load. The
promoted side switches ``rew0`` off and its translator applies the table of record alone,
so the record must map each young connection into the space the promoted guest really
holds it in: the secondary's own ISN if its SYN-ACK came after the last load, else the
primary's (the loaded copy's)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rewrite_frames import GUEST_KEY, fields, tcp

from colopp.colo.sequence import DEVICE_NOT_FOUND, GENERIC_ERROR
from colopp.rewrite.rewriter_learn import RewriterLearner
from colopp.rewrite.segment import translate_client_input, translate_guest_output
from colopp.rewrite.splice import (
    chardev_steps,
    filter_steps,
    rewriter_off_steps,
    splice_steps,
)
from colopp.rewrite.table import MASK, OffsetTable
from colopp.rewrite.young import YoungOffsets

ISN = st.integers(0, MASK)
# Where a checkpoint load falls: before the secondary's SYN-ACK, between it and the
# client's ACK (the garbage case), after the ACK, or nowhere.
LOAD = st.sampled_from(["before_synack", "before_ack", "after_ack", "none"])


def _promoted_record(
    primary_isn: int, secondary_isn: int, load: str, resend: bool
) -> tuple[OffsetTable, int]:
    """Feed the learner one handshake around a load; the promoted side's record and the ISN
    its guest then holds the connection with."""
    learner, young = RewriterLearner(), YoungOffsets()
    times = {"syn": 1.0, "synack": 2.0, "ack": 3.0}
    stamp = {"before_synack": 1.5, "before_ack": 2.5, "after_ack": 3.5}.get(load)
    events = sorted([*times.items(), *([("load", stamp)] if stamp else [])], key=lambda e: e[1])
    # The loaded guest is the primary's copy: its request socket carries the primary's ISN,
    # and a retransmitted SYN-ACK (``resend``, just after the load) carries that ISN too.
    guest_isn = primary_isn if load in ("before_ack", "after_ack") else secondary_isn
    for what, at in events:
        if what == "syn":
            learner.client_frame(tcp(7, 0, "S", from_guest=False), 0, at)
        elif what == "synack":
            learner.guest_frame(tcp(secondary_isn, 8, "SA"), 0, at)
        elif what == "ack":
            got = learner.client_frame(
                tcp(8, (primary_isn + 1) & MASK, "A", from_guest=False), 0, at
            )
            if got is not None:
                young.learned(got.learned.key, got.learned.delta, 0, got.at)
        else:
            learner.checkpoint_loaded(at)
            young.loaded_at(at)
            if resend and load == "before_ack":
                learner.guest_frame(tcp(primary_isn, 8, "SA"), 0, at + 0.1)
    record = young.table_of_record(OffsetTable(), 10.0, stamp)
    return record, guest_isn


@settings(max_examples=300, deadline=None)
@given(ISN, ISN, LOAD, st.booleans())
def test_the_promoted_guest_sees_its_own_space_with_the_record_alone(
    primary_isn: int, secondary_isn: int, load: str, resend: bool
) -> None:
    record, guest_isn = _promoted_record(primary_isn, secondary_isn, load, resend)
    # The client acknowledges the primary's SYN-ACK and 100 bytes; rew0 is off.
    ack = (primary_isn + 101) & MASK
    into = translate_client_input(tcp(500, ack, "PA", b"x", from_guest=False), record, 11.0)
    assert fields(into)[1] == (guest_isn + 101) & MASK
    out = translate_guest_output(tcp((guest_isn + 101) & MASK, 501, "PA", b"y"), record, 11.0)
    assert fields(out)[0] == ack


def test_the_straddling_handshake_of_the_builtin_f4_repeat_is_not_shifted() -> None:
    """Port 38254 of bench/results-churn-builtin-f4b.json: the record carried delta
    3743820537 = -(ack - 1); now it carries nothing and the guest gets the client's ack."""
    isn = (-3743820537) & MASK
    record, guest_isn = _promoted_record(isn, 123456789, "before_ack", resend=False)
    assert GUEST_KEY not in record and guest_isn == isn


def test_promotion_switches_the_rewriter_off_tolerating_a_side_without_one() -> None:
    (step,) = rewriter_off_steps()
    assert step.command == "qom-set"
    assert step.arguments == {"path": "/objects/rew0", "property": "status", "value": "off"}
    assert set(step.tolerate) == {GENERIC_ERROR, DEVICE_NOT_FOUND}


def test_splicing_is_chardevs_then_filters(tmp_path: Path) -> None:
    run_dir = tmp_path
    whole = splice_steps(run_dir, before="rew0", vnet_hdr=True)
    assert whole == chardev_steps(run_dir) + filter_steps(before="rew0", vnet_hdr=True)
    assert [s.command for s in chardev_steps(run_dir)] == ["chardev-add"] * 4
    assert all(s.arguments["position"] == "id=rew0" for s in filter_steps(before="rew0"))
