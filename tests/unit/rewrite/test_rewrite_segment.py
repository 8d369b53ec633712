"""Frame rewriting through an offset table: fields, checksums, the untouched hot path."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from rewrite_frames import GUEST_KEY, checksum_ok, fields, sack, tcp

from colopp.rewrite.segment import translate_client_input, translate_guest_output
from colopp.rewrite.table import MASK, OffsetTable

u32 = st.integers(0, MASK)
nonzero = st.integers(1, MASK)
payloads = st.binary(max_size=64)


def _table(delta: int) -> OffsetTable:
    table = OffsetTable()
    table.set_delta(GUEST_KEY, delta, now=0.0)
    return table


@given(seq=u32, ack=u32, delta=nonzero, payload=payloads, vnet=st.sampled_from([b"", b"\0" * 12]))
def test_guest_output_seq_lowered_by_delta_with_valid_checksum(
    seq: int, ack: int, delta: int, payload: bytes, vnet: bytes
) -> None:
    frame = tcp(seq, ack, "PA", payload, vnet=vnet)
    out = translate_guest_output(frame, _table(delta), 1.0, len(vnet))
    assert fields(out, len(vnet)) == ((seq - delta) & MASK, ack, 0x18)
    assert checksum_ok(out, len(vnet))
    assert out[-len(payload) or len(out) :] == frame[-len(payload) or len(frame) :]


@given(
    seq=u32,
    ack=u32,
    delta=nonzero,
    edges=st.lists(u32, min_size=2, max_size=8).filter(lambda e: len(e) % 2 == 0),
    lead=st.sampled_from([b"\x01\x01", b"", b"\x01"]),
)
def test_client_input_ack_and_sack_raised_by_delta(
    seq: int, ack: int, delta: int, edges: list[int], lead: bytes
) -> None:
    frame = tcp(seq, ack, "A", from_guest=False, options=sack(*edges, lead=lead))
    out = translate_client_input(frame, _table(delta), 1.0)
    assert fields(out) == (seq, (ack + delta) & MASK, 0x10)
    assert checksum_ok(out)
    start = 14 + 20 + 20 + len(lead) + 2
    got = struct.unpack_from(f">{len(edges)}I", out, start)
    assert list(got) == [(e + delta) & MASK for e in edges]


@given(seq=u32, ack=u32, delta=nonzero, payload=payloads)
def test_guest_then_inverse_is_identity(seq: int, ack: int, delta: int, payload: bytes) -> None:
    frame = tcp(seq, ack, "PA", payload)
    there = translate_guest_output(frame, _table(delta), 1.0)
    back = translate_guest_output(there, _table((-delta) & MASK), 1.0)
    assert back == frame or (fields(back) == fields(frame) and checksum_ok(back))


def test_unknown_connection_and_empty_table_pass_the_same_object() -> None:
    frame = tcp(1, 2, "A")
    assert translate_guest_output(frame, OffsetTable(), 0.0) is frame
    assert translate_client_input(frame, OffsetTable(), 0.0) is frame
    other = OffsetTable()
    other.set_delta((1, 2, 3, 4), 5, 0.0)
    assert translate_guest_output(frame, other, 0.0) is frame
    assert translate_client_input(tcp(1, 2, from_guest=False), other, 0.0) is not None


def test_zero_delta_is_no_entry() -> None:
    table = _table(0)
    assert not table


def test_client_syn_without_ack_does_not_touch_ack() -> None:
    frame = tcp(100, 0, "S", from_guest=False)
    out = translate_client_input(frame, _table(7), 0.0)
    assert fields(out) == (100, 0, 0x02)
    assert checksum_ok(out)


@given(garbage=st.binary(max_size=80), cut=st.integers(0, 60))
def test_never_raises_on_garbage_or_truncated(garbage: bytes, cut: int) -> None:
    table = _table(9)
    for frame in (garbage, tcp(1, 2, "A")[:cut], tcp(1, 2, "A", from_guest=False)[:cut]):
        translate_guest_output(frame, table, 0.0)
        translate_client_input(frame, table, 0.0)


def test_bad_sack_option_lengths_are_left_alone() -> None:
    frame = tcp(5, 6, "A", from_guest=False, options=b"\x05\x07abcde")
    out = translate_client_input(frame, _table(1), 0.0)
    assert fields(out) == (5, 7, 0x10)
    assert checksum_ok(out)


def _offloaded(frame: bytes) -> bytes:
    """``frame`` (12 bytes of virtio-net header first) as a device would get it with
    checksum offload: NEEDS_CSUM, the field holding only the pseudo-header's sum."""
    out = bytearray(frame)
    out[0] = 1
    ip = 12 + 14
    src, dst = struct.unpack_from(">II", out, ip + 12)
    length = struct.unpack_from(">H", out, ip + 2)[0] - 20
    acc = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 6 + length
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    struct.pack_into(">H", out, ip + 20 + 16, acc)
    return bytes(out)


def _completed(frame: bytes) -> bytes:
    """What the device sends: the checksum summed over the TCP bytes, field included."""
    out = bytearray(frame)
    ip = 12 + 14
    l4, end = ip + 20, ip + struct.unpack_from(">H", out, ip + 2)[0]
    data = bytes(out[l4:end]) + (b"\0" if (end - l4) % 2 else b"")
    acc = sum(struct.unpack(f">{len(data) // 2}H", data))
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    struct.pack_into(">H", out, l4 + 16, ~acc & 0xFFFF)
    return bytes(out)


@given(
    seq=u32,
    ack=u32,
    delta=nonzero,
    payload=payloads,
    edges=st.lists(u32, max_size=4).filter(lambda e: len(e) % 2 == 0),
    lead=st.sampled_from([b"\x01\x01", b"\x01"]),
)
def test_a_checksum_left_to_the_device_stays_right_after_the_rewrite(
    seq: int, ack: int, delta: int, payload: bytes, edges: list[int], lead: bytes
) -> None:
    vnet = b"\0" * 12
    out = translate_guest_output(
        _offloaded(tcp(seq, ack, "PA", payload, vnet=vnet)), _table(delta), 1.0, 12
    )
    assert fields(out, 12) == ((seq - delta) & MASK, ack, 0x18)
    assert checksum_ok(_completed(out), 12)
    options = sack(*edges, lead=lead) if edges else b""
    frame = _offloaded(tcp(seq, ack, "A", payload, from_guest=False, options=options, vnet=vnet))
    back = translate_client_input(frame, _table(delta), 1.0, 12)
    assert fields(back, 12) == (seq, (ack + delta) & MASK, 0x10)
    assert checksum_ok(_completed(back), 12)
