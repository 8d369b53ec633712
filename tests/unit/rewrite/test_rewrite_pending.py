"""Young offsets not proven adopted at promotion travel *pending* (issue 18).

The primary died around a young connection's handshake. Either its SYN-ACK never reached
the client (the client retransmitted its SYN and took the promoted guest's ISN: no
translation) or it did and the client's ACK died with it (the client took the primary's
ISN: the offset applies). The record carries the offset with the client-visible ISN; the
next translator decides from the client's first acknowledgement.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from rewrite_frames import GUEST_KEY, tcp

from colopp.rewrite.segment import translate_client_input, translate_guest_output
from colopp.rewrite.table import MASK, OffsetTable
from colopp.rewrite.young import YoungOffsets

ISN = 1_000_000  # the primary's ISN, as the client saw it (if it did)
DELTA = 1_604_516  # the secondary's ISN minus the primary's (measured: ~100 ms of skew)


def _ack(frame: bytes) -> int:
    return int(struct.unpack_from(">I", frame, 14 + 20 + 8)[0])


def _seq(frame: bytes) -> int:
    return int(struct.unpack_from(">I", frame, 14 + 20 + 4)[0])


def _pending() -> OffsetTable:
    table = OffsetTable()
    table.set_pending(GUEST_KEY, DELTA, ISN, 0.0)
    return table


def test_client_that_took_the_primarys_isn_settles_the_offset() -> None:
    table = _pending()
    out = translate_client_input(tcp(5, ISN + 1, "PA", b"GET", from_guest=False), table, 1.0)
    assert _ack(out) == (ISN + 1 + DELTA) & MASK
    assert table.decided and table.get(GUEST_KEY) is not None
    assert table.get(GUEST_KEY).isn_client is None  # type: ignore[union-attr]
    reply = translate_guest_output(tcp(ISN + 1 + DELTA, 8, "PA", b"200"), table, 1.0)
    assert _seq(reply) == ISN + 1


def test_client_that_restarted_its_handshake_needs_no_translation() -> None:
    table = _pending()
    syn = tcp(4, 0, "S", from_guest=False)
    assert translate_client_input(syn, table, 1.0) is syn
    assert GUEST_KEY not in table and table.decided
    later = tcp(5, ISN + DELTA + 1, "A", from_guest=False)
    assert translate_client_input(later, OffsetTable(), 1.0) is later


def test_client_acking_the_promoted_guests_isn_drops_the_entry() -> None:
    table = _pending()
    frame = tcp(5, (ISN + DELTA + 1 + 300) & MASK, "A", from_guest=False)
    assert translate_client_input(frame, table, 1.0) is frame
    assert GUEST_KEY not in table


def test_guest_output_waits_untouched_until_the_client_decides() -> None:
    table = _pending()
    frame = tcp(ISN + DELTA + 1, 8, "PA", b"x")
    assert translate_guest_output(frame, table, 1.0) is frame
    assert table.get(GUEST_KEY) is not None and not table.decided


def test_pending_rows_survive_the_snapshot() -> None:
    table = OffsetTable.from_snapshot(_pending().snapshot())
    assert table.get(GUEST_KEY).isn_client == ISN  # type: ignore[union-attr]


def test_unproven_offset_is_carried_pending_and_proven_one_plainly() -> None:
    # Issue 18 regression (bench.churn, the connection opened at the kill, second case): the
    # client got the primary's SYN-ACK, its ACK died with the primary, no guest answer was
    # seen: the offset is not proven adopted, but the promoted guest translates it (its
    # filter-rewriter learned it from the retransmitted ACK). Dropping it broke the
    # connection at the next failover; it must travel pending and settle on that ACK.
    young = YoungOffsets()
    young.learned(GUEST_KEY, DELTA, 0, awaits_adoption=True, isn=ISN)
    other = (GUEST_KEY[0], 80, GUEST_KEY[2], 40001)
    young.learned(other, 7, 0, awaits_adoption=True, isn=5)
    young.adopted(other, 0)
    record = OffsetTable.from_snapshot(young.table_of_record(OffsetTable(), 0.0).snapshot())
    assert record.get(other).isn_client is None  # type: ignore[union-attr]
    out = translate_client_input(tcp(5, ISN + 1, "PA", b"PUT", from_guest=False), record, 1.0)
    assert _ack(out) == ISN + 1 + DELTA


@given(
    isn=st.integers(0, MASK),
    delta=st.integers(1 << 16, MASK - (1 << 16)),
    sent=st.integers(0, 1 << 15),
    took_primary=st.booleans(),
)
def test_the_decision_is_right_whenever_the_guest_sent_less_than_the_isn_gap(
    isn: int, delta: int, sent: int, took_primary: bool
) -> None:
    table = OffsetTable()
    table.set_pending(GUEST_KEY, delta, isn, 0.0)
    base = isn if took_primary else isn + delta
    frame = tcp(5, (base + 1 + sent) & MASK, "A", from_guest=False)
    out = translate_client_input(frame, table, 1.0)
    if took_primary:
        assert _ack(out) == (isn + 1 + sent + delta) & MASK
    else:
        assert out is frame and GUEST_KEY not in table
