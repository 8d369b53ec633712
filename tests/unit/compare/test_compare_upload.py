"""Uploads through the comparator (issue #22): the guest's bare ACKs wait for the secondary's.

What stalled uploads for 2-3 s: the secondary's guest missed a client segment (past its own
receive window, smaller than the primary's when its receiver runs behind), so its ACK stood
still while the primary's advanced. Every primary ACK waited behind the first one, the client
got no acknowledgement at all, retransmitted only on its timeout (one segment, doubling
timeouts) and the upload stood still until the next periodic checkpoint (2 s) or the compare
timeout (3 s). Now a primary ACK that waited ``ack_wait`` (100 ms) only for the secondary's
ACK asks a checkpoint: the checkpointed secondary has the primary's bytes.
"""

from __future__ import annotations

import pytest
from compare_actions import checkpoints, released
from compare_frames import CLIENT, GUEST, tcp_frame

from colopp.compare import Comparator, CompareConfig
from colopp.errors import ConfigError

SEQ = 5_000  # the guest's sequence number: it sends nothing but ACKs
CLIENT_SEQ = 1_000_000
MSS = 1448


def _ack(ack: int, payload: bytes = b"") -> bytes:
    return tcp_frame(SEQ, ack, "AP" if payload else "A", payload)


def _synced(c: Comparator) -> None:
    out = c.feed_primary(_ack(CLIENT_SEQ), 0.0)
    out += c.feed_secondary(_ack(CLIENT_SEQ), 0.0)
    assert len(released(out)) == 1


def test_an_ack_the_secondary_never_matches_asks_a_checkpoint_after_ack_wait() -> None:
    c = Comparator()
    _synced(c)
    ahead = [_ack(CLIENT_SEQ + n * 2 * MSS) for n in range(1, 4)]
    for n, frame in enumerate(ahead):
        assert c.feed_primary(frame, 0.2 + n * 0.01) == []
    # The secondary missed the segment at CLIENT_SEQ: duplicate ACKs for what came after.
    for n in range(3):
        assert c.feed_secondary(_ack(CLIENT_SEQ), 0.21 + n * 0.01) == []
    assert checkpoints(c.tick(0.29)) == []
    # Before the fix: nothing until the compare timeout, 3 s later.
    assert checkpoints(c.tick(0.31)) == ["secondary_ack_wait"]
    assert c.counters.divergences["secondary_ack_wait"] == 1
    assert released(c.checkpoint_done(0.36)) == ahead


def test_a_secondary_that_is_only_slow_gets_no_ack_wait_checkpoint() -> None:
    # No duplicate ACK: it has not processed the client's segments yet (the compare
    # timeout, or max_lag for a semi-active secondary, is for that).
    c = Comparator()
    _synced(c)
    assert c.feed_primary(_ack(CLIENT_SEQ + 2 * MSS), 0.2) == []
    assert c.feed_secondary(_ack(CLIENT_SEQ), 0.21) == []  # one: a window update, say
    assert checkpoints(c.tick(0.5)) == []


def test_a_secondary_ack_within_ack_wait_releases_without_a_checkpoint() -> None:
    c = Comparator()
    _synced(c)
    held = _ack(CLIENT_SEQ + 2 * MSS)
    assert c.feed_primary(held, 0.2) == []
    assert checkpoints(c.tick(0.25)) == []
    out = c.feed_secondary(_ack(CLIENT_SEQ + 2 * MSS), 0.28)
    assert released(out) == [held]
    assert checkpoints(c.tick(0.4)) == []
    assert c.counters.checkpoints_requested == 0


def test_ack_wait_off_leaves_it_to_the_compare_timeout() -> None:
    c = Comparator(CompareConfig(ack_wait=None))
    _synced(c)
    assert c.feed_primary(_ack(CLIENT_SEQ + 2 * MSS), 0.2) == []
    for n in range(3):
        assert c.feed_secondary(_ack(CLIENT_SEQ), 0.21 + n * 0.01) == []
    assert checkpoints(c.tick(0.5)) == []
    assert checkpoints(c.tick(3.3)) == ["compare_timeout"]


def test_a_segment_waiting_for_payload_is_not_an_ack_wait() -> None:
    # Guest data the secondary has not sent yet: the compare timeout (or the gap rule)
    # decides, not ack_wait.
    c = Comparator()
    _synced(c)
    data = tcp_frame(SEQ, CLIENT_SEQ + 2 * MSS, "AP", b"x" * 100)
    assert c.feed_primary(data, 0.2) == []
    assert checkpoints(c.tick(0.5)) == []


def test_only_the_connection_whose_ack_waits_counts() -> None:
    # Another connection's traffic does not hide the waiting one: its head is the oldest.
    c = Comparator()
    _synced(c)
    waiting = _ack(CLIENT_SEQ + 2 * MSS)
    assert c.feed_primary(waiting, 0.2) == []
    c.feed_secondary(_ack(CLIENT_SEQ), 0.21)
    c.feed_secondary(_ack(CLIENT_SEQ), 0.22)
    other = tcp_frame(9_000, 77, "A", src=GUEST, dst=CLIENT, dport=40001)
    c.feed_primary(other, 0.25)
    c.feed_secondary(other, 0.25)
    assert checkpoints(c.tick(0.31)) == ["secondary_ack_wait"]


@pytest.mark.parametrize("wait", [0.0, -1.0, 4.0])
def test_ack_wait_must_be_positive_and_below_the_compare_timeout(wait: float) -> None:
    with pytest.raises(ConfigError, match="ack_wait"):
        CompareConfig(ack_wait=wait)


def test_ack_wait_reaches_the_comparator_from_its_command_line() -> None:
    from colopp.compare.__main__ import options_from_args

    base = ["--primary-in", "unix:/p", "--secondary-in", "unix:/s", "--outdev", "unix:/o"]
    assert options_from_args(base).config.ack_wait == 0.1
    assert options_from_args([*base, "--ack-wait-ms", "150"]).config.ack_wait == 0.15
    assert options_from_args([*base, "--ack-wait-ms", "0"]).config.ack_wait is None


def test_a_secondary_reset_the_primary_does_not_share_asks_a_checkpoint_after_ack_wait() -> None:
    # Issue 18: the secondary's filter-rewriter saw a handshake straddle a checkpoint and
    # shifts the client's ACK by minus the primary's ISN; its guest answers with an RST
    # (sequence 1) and never acknowledges. Before the fix: nothing until the compare
    # timeout (3 s), a window in which a failover keeps the shift and the connection hangs.
    c = Comparator()
    _synced(c)
    held = _ack(CLIENT_SEQ + 66)
    assert c.feed_primary(held, 0.2) == []
    assert c.feed_secondary(tcp_frame(1, 0, "R"), 0.21) == []
    assert checkpoints(c.tick(0.29)) == []
    assert checkpoints(c.tick(0.31)) == ["secondary_ack_wait"]
    assert released(c.checkpoint_done(0.4)) == [held]
