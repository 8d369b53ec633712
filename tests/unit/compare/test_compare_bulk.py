"""Bulk streams across checkpoints (issue #22): what stalled ``iperf3 -R`` through colopp.

Measured on a lab pair (10 s of ``iperf3 -R``): after a checkpoint the secondary resumes and
fills its whole window at once; more than 256 of those segments arrived between STOP and
RESUME and the rest were dropped, leaving a hole in the secondary's stream. The primary's
next segment then waited on bytes the secondary sends again only on a retransmission
timeout, and nothing else moved until the next periodic checkpoint, 2 s later.
"""

from __future__ import annotations

import random

import pytest
from compare_actions import checkpoints, released
from compare_frames import segments, tcp_frame

from colopp.compare import (
    Comparator,
    CompareConfig,
    PreReleaseConfig,
    PreReleasePolicy,
    build_policy,
    core,
)

SEQ = 70_000
ACK = 900
MSS = 1448


def _bulk(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _synced(c: Comparator, data: bytes) -> None:
    """One segment compared and released: the connection is known and in step."""
    out = c.feed_primary(tcp_frame(SEQ, ACK, "AP", data[:MSS]), 0.0)
    out += c.feed_secondary(tcp_frame(SEQ, ACK, "AP", data[:MSS]), 0.0)
    assert len(released(out)) == 1


def test_a_whole_window_sent_between_stop_and_resume_is_kept() -> None:
    data = _bulk(MSS * 401, 1)
    c = Comparator()
    _synced(c, data)
    c.checkpoint_started(0.1)
    # The secondary resumed first and sent 400 segments (580 KB) before RESUME was seen.
    window = segments(data[MSS:], [MSS], seq=SEQ + MSS, ack=ACK)
    for f in window:
        c.feed_secondary(f, 0.12)
    c.checkpoint_done(0.15)
    assert c.counters.secondary_dropped == 0
    out = []
    for f in window:
        out += c.feed_primary(f, 0.2)
    assert released(out) == window
    assert checkpoints(out) == []


def test_the_next_epoch_is_still_bounded_by_the_queue_limits() -> None:
    data = _bulk(MSS * 50, 2)
    c = Comparator(CompareConfig(max_queue_frames=20))
    _synced(c, data)
    c.checkpoint_started(0.1)
    out = []
    for f in segments(data[MSS:], [MSS], seq=SEQ + MSS, ack=ACK):
        out += c.feed_secondary(f, 0.12)
    assert c.counters.held_secondary_frames == 20
    assert c.counters.secondary_dropped == 29
    assert checkpoints(out) == ["queue_overflow"]


def test_primary_output_the_secondary_skipped_asks_a_checkpoint_at_once() -> None:
    # Primary output still in flight at the checkpoint: the checkpointed secondary counts
    # it as sent and goes on after it. Before the fix this waited for the compare timeout
    # (or the next periodic checkpoint).
    data = _bulk(MSS * 4, 3)
    c = Comparator()
    _synced(c, data)
    c.checkpoint_started(0.1)
    c.checkpoint_done(0.15)
    later = tcp_frame(SEQ + 2 * MSS, ACK, "AP", data[2 * MSS : 3 * MSS])
    assert c.feed_secondary(later, 0.16) == []
    in_flight = tcp_frame(SEQ + MSS, ACK, "AP", data[MSS : 2 * MSS])
    assert checkpoints(c.feed_primary(in_flight, 0.17)) == []
    assert checkpoints(c.tick(0.18)) == []  # the secondary may still reorder a little
    assert checkpoints(c.tick(0.2)) == ["secondary_gap"]
    assert c.counters.divergences["secondary_gap"] == 1
    assert released(c.checkpoint_done(0.25)) == [in_flight]


def test_a_gap_behind_the_waiting_head_asks_when_the_secondary_skips() -> None:
    # The primary's head waits first; the secondary then sends past it (a segment of its
    # own was dropped): same stall, found from the secondary's side.
    data = _bulk(MSS * 4, 4)
    c = Comparator()
    _synced(c, data)
    head = tcp_frame(SEQ + MSS, ACK, "AP", data[MSS : 2 * MSS])
    assert c.feed_primary(head, 0.2) == []
    out = c.feed_secondary(tcp_frame(SEQ + 2 * MSS, ACK, "AP", data[2 * MSS : 3 * MSS]), 0.3)
    assert checkpoints(out) == ["secondary_gap"]


def test_a_reordered_secondary_fills_its_gap_within_the_grace() -> None:
    data = _bulk(MSS * 4, 7)
    c = Comparator()
    _synced(c, data)
    head = tcp_frame(SEQ + MSS, ACK, "AP", data[MSS : 2 * MSS])
    out = c.feed_primary(head, 0.2)
    out += c.feed_secondary(tcp_frame(SEQ + 2 * MSS, ACK, "AP", data[2 * MSS : 3 * MSS]), 0.2)
    out += c.feed_secondary(tcp_frame(SEQ + MSS, ACK, "AP", data[MSS : 2 * MSS]), 0.21)
    out += c.tick(0.3)
    assert released(out) == [head]
    assert checkpoints(out) == []


def test_secondary_bytes_ahead_of_a_primary_that_is_ahead_too_are_no_gap() -> None:
    # The secondary runs ahead of the primary with nothing skipped: no checkpoint.
    data = _bulk(MSS * 6, 5)
    c = Comparator()
    _synced(c, data)
    out = []
    for f in segments(data[MSS:], [MSS], seq=SEQ + MSS, ack=ACK):
        out += c.feed_secondary(f, 0.1)
    for f in segments(data[MSS:], [1000], seq=SEQ + MSS, ack=ACK):
        out += c.feed_primary(f, 0.2)
    assert checkpoints(out) == []
    assert c.counters.held_frames == 0 and c.counters.held_secondary_bytes == 0


def test_primary_segment_out_of_order_waits_without_a_checkpoint() -> None:
    # A gap in the primary's bytes is the primary's own (its retransmission will come):
    # never a reason to checkpoint.
    data = _bulk(MSS * 4, 6)
    c = Comparator()
    _synced(c, data)
    out = c.feed_secondary(tcp_frame(SEQ + 2 * MSS, ACK, "AP", data[2 * MSS : 3 * MSS]), 0.1)
    out += c.feed_primary(tcp_frame(SEQ + 2 * MSS, ACK, "AP", data[2 * MSS : 3 * MSS]), 0.2)
    assert checkpoints(out) == []


def test_a_diverged_connection_stores_no_more_secondary_bytes() -> None:
    # They would all be discarded at the checkpoint; a bulk sender filled the out-of-order
    # map and counted hundreds of drops per second meanwhile.
    data = _bulk(MSS * 400, 8)
    c = Comparator()
    _synced(c, data)
    c.feed_primary(tcp_frame(SEQ + MSS, ACK, "AP", b"x" * MSS), 0.1)
    out = c.feed_secondary(tcp_frame(SEQ + MSS, ACK, "AP", data[MSS : 2 * MSS]), 0.1)
    assert checkpoints(out) == ["tcp_payload_mismatch"]
    rest = segments(data[2 * MSS :], [MSS], seq=SEQ + 2 * MSS, ack=ACK)
    for f in rest[1:]:  # one segment skipped: the rest would wait past a gap
        c.feed_secondary(f, 0.12)
    assert c.counters.secondary_dropped == 0
    assert c.counters.held_secondary_bytes == MSS  # only the segment that differed
    c.checkpoint_done(0.2)
    p = tcp_frame(SEQ + 2 * MSS, ACK, "AP", data[2 * MSS : 3 * MSS])
    out = c.feed_primary(p, 0.3) + c.feed_secondary(p, 0.3)
    assert released(out) == [p]


def _policy() -> PreReleasePolicy:
    policy = build_policy(PreReleaseConfig(rules=frozenset({"ack_only", "retransmission"})))
    assert policy is not None
    return policy


def test_with_a_policy_matched_primary_segments_skip_the_full_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (d) downloaded a 64 KiB value at a third of (c)'s rate: with pre-release on, every
    # primary frame took the general path (full parse, a HeldFrame, pump) although a bulk
    # secondary runs ahead and each segment matches on arrival.
    data = _bulk(MSS * 40, 9)
    c = Comparator(policy=_policy())
    _synced(c, data)
    calls = []
    real = core.parse_frame
    monkeypatch.setattr(core, "parse_frame", lambda *a: calls.append(1) or real(*a))
    rest = segments(data[MSS:], [MSS], seq=SEQ + MSS, ack=ACK)
    out = []
    for f in rest:
        out += c.feed_secondary(f, 0.1)
    calls.clear()
    before = c.counters.matched_on_arrival
    for f in rest:
        out += c.feed_primary(f, 0.2)
    assert released(out) == rest
    assert calls == []
    assert c.counters.matched_on_arrival - before == len(rest)  # as the general path counts


def test_with_a_policy_fast_and_general_primary_paths_agree() -> None:
    data = _bulk(MSS * 30, 10)
    runs = []
    for fast in (True, False):
        c = Comparator(policy=_policy(), fast_path=fast)
        _synced(c, data)
        out = []
        p = segments(data[MSS:], [MSS], seq=SEQ + MSS, ack=ACK)
        s = segments(data[MSS:], [1000, 2000], seq=SEQ + MSS, ack=ACK)
        for i in range(len(p)):  # interleaved: some wait, some match on arrival
            out += c.feed_primary(p[i], 0.1 + i / 100)
            if i < len(s):
                out += c.feed_secondary(s[i], 0.1 + i / 100)
        out += c.feed_primary(tcp_frame(SEQ + MSS * 30, ACK, "A"), 0.5)
        snap = c.counters.snapshot()
        runs.append((
            [(type(a).__name__, getattr(a, "frames", None)) for a in out],
            {k: v for k, v in snap.items() if k not in ("hold_time_sum", "hold_time_counts")},
        ))  # fmt: skip
    assert runs[0] == runs[1]
