"""Entry lifecycle (FIN/RST both ways, expiry) and snapshots of the offset table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rewrite_frames import GUEST_KEY, tcp

from colopp.errors import ConfigError
from colopp.rewrite.segment import translate_client_input, translate_guest_output
from colopp.rewrite.table import ENDED_LINGER_S, IDLE_TIMEOUT_S, MASK, SYN_REUSE_IDLE_S, OffsetTable

DELTA = 1000


def _table() -> OffsetTable:
    table = OffsetTable()
    table.set_delta(GUEST_KEY, DELTA, now=0.0)
    return table


def _guest(
    table: OffsetTable, seq: int, ack: int, flags: str, now: float, data: bytes = b""
) -> None:
    translate_guest_output(tcp(seq + DELTA, ack, flags, data), table, now)


def _client(
    table: OffsetTable, seq: int, ack: int, flags: str, now: float, data: bytes = b""
) -> None:
    translate_client_input(tcp(seq, ack, flags, data, from_guest=False), table, now)


def test_idle_entry_lives_until_the_documented_idle_timeout() -> None:
    table = _table()
    assert IDLE_TIMEOUT_S >= 3 * 3600
    assert table.expire(IDLE_TIMEOUT_S - 1) == []
    _client(table, 1, 1, "A", now=IDLE_TIMEOUT_S - 1)
    assert table.expire(2 * IDLE_TIMEOUT_S - 2) == []
    assert table.expire(2 * IDLE_TIMEOUT_S) == [GUEST_KEY]


def test_fin_both_ways_acked_ends_after_linger() -> None:
    table = _table()
    _client(table, 500, 101, "FA", now=1.0)  # client closes: FIN at 500
    assert table.expire(1.0 + ENDED_LINGER_S) == []
    _guest(table, 101, 501, "FA", now=2.0)  # guest acks and closes: FIN at 101
    assert table.expire(2.0 + ENDED_LINGER_S) == []  # guest FIN not acked yet
    _client(table, 501, 102, "A", now=3.0)
    entry = table.get(GUEST_KEY)
    assert entry is not None and entry.ended
    assert table.expire(3.0 + ENDED_LINGER_S - 1) == []
    assert table.expire(3.0 + ENDED_LINGER_S) == [GUEST_KEY]


def test_half_close_keeps_translating() -> None:
    table = _table()
    _guest(table, 101, 500, "FA", now=1.0)
    _client(table, 500, 102, "A", now=2.0)
    assert table.expire(2.0 + 10 * ENDED_LINGER_S) == []
    assert GUEST_KEY in table


@pytest.mark.parametrize("from_guest", [True, False])
def test_rst_either_way_ends(from_guest: bool) -> None:
    table = _table()
    if from_guest:
        _guest(table, 101, 500, "R", now=1.0)
    else:
        _client(table, 500, 0, "R", now=1.0)
    assert table.expire(1.0 + ENDED_LINGER_S) == [GUEST_KEY]


def test_traffic_after_an_rst_revives() -> None:
    table = _table()
    _client(table, 500, 0, "R", now=1.0)
    _guest(table, 101, 500, "PA", now=2.0, data=b"x")
    assert table.expire(1.0 + ENDED_LINGER_S) == []


def test_new_syn_on_an_ended_tuple_drops_the_entry() -> None:
    table = _table()
    _client(table, 500, 0, "R", now=1.0)
    frame = tcp(9000, 0, "S", from_guest=False)
    assert translate_client_input(frame, table, 2.0) is frame
    assert GUEST_KEY not in table


def test_syn_retransmit_on_a_live_entry_keeps_it() -> None:
    table = _table()
    _client(table, 9000, 0, "S", now=1.0)
    assert table.delta(GUEST_KEY) == DELTA


keys = st.tuples(
    st.integers(0, MASK), st.integers(0, 65535), st.integers(0, MASK), st.integers(0, 65535)
)


@given(rows=st.dictionaries(keys, st.integers(1, MASK), max_size=20), now=st.floats(0, 1e9))
def test_snapshot_round_trips(rows: dict[tuple[int, int, int, int], int], now: float) -> None:
    table = OffsetTable()
    for key, delta in rows.items():
        table.set_delta(key, delta, now)
    again = OffsetTable.from_snapshot(table.snapshot())
    assert again.snapshot() == table.snapshot()


@pytest.mark.parametrize(
    "rows",
    [
        {},
        [1],
        [{"guest": [1, 2], "peer": [3, 4], "delta": 0, "last_seen": 0}],
        [{"guest": [1, 70000], "peer": [3, 4], "delta": 1, "last_seen": 0}],
        [{"guest": [1, 2], "peer": [3, 4], "delta": 1}],
        [{"guest": [1], "peer": [3, 4], "delta": 1, "last_seen": 0}],
        [{"guest": [1, 2], "peer": [3, 4], "delta": True, "last_seen": 0}],
    ],
)
def test_bad_snapshot_is_a_clear_config_error(rows: object) -> None:
    with pytest.raises(ConfigError):
        OffsetTable.from_snapshot(rows)


def test_copy_is_independent() -> None:
    table = _table()
    twin = table.copy()
    _client(table, 500, 0, "R", now=1.0)
    entry = twin.get(GUEST_KEY)
    assert entry is not None and not entry.ended


def test_new_syn_on_an_idle_tuple_is_a_new_connection() -> None:
    table = _table()
    _client(table, 9000, 0, "S", now=SYN_REUSE_IDLE_S)
    assert GUEST_KEY not in table
