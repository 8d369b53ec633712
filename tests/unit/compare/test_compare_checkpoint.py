"""Timeouts (fake clock), queue bounds, checkpoint_done and the pre-release seam."""

from __future__ import annotations

from compare_actions import checkpoints, released
from compare_frames import segments, tcp_frame, udp_frame

from colopp.compare import Comparator, CompareConfig, HeldFrame, PreRelease

DATA = bytes(range(256)) * 16
SEQ = 50_000
ACK = 900


def test_compare_timeout_with_fake_clock() -> None:
    c = Comparator(CompareConfig(compare_timeout=3.0))
    c.feed_primary(tcp_frame(SEQ, ACK, "AP", b"late"), 10.0)
    assert checkpoints(c.tick(12.9)) == []
    assert checkpoints(c.tick(13.1)) == ["compare_timeout"]
    assert checkpoints(c.tick(13.2)) == []  # already asked
    assert c.counters.divergences["compare_timeout"] == 1


def test_checkpoint_retry_when_checkpoint_never_completes() -> None:
    c = Comparator(CompareConfig(compare_timeout=1.0, checkpoint_retry=2.0))
    c.feed_primary(tcp_frame(SEQ, ACK, "AP", b"x"), 0.0)
    assert checkpoints(c.tick(1.5)) == ["compare_timeout"]
    assert checkpoints(c.tick(3.0)) == []
    assert checkpoints(c.tick(3.6)) == ["checkpoint_retry"]


def test_secondary_timeout() -> None:
    c = Comparator(CompareConfig(compare_timeout=1.0))
    c.feed_secondary(udp_frame(b"only the secondary said this"), 0.0)
    assert checkpoints(c.tick(0.5)) == []
    assert checkpoints(c.tick(1.6)) == ["secondary_timeout"]


def test_queue_overflow_requests_checkpoint_and_drops_nothing() -> None:
    c = Comparator(CompareConfig(max_queue_frames=10))
    frames = segments(DATA, [100], seq=SEQ, ack=ACK)[:11]
    out = []
    for f in frames:
        out += c.feed_primary(f, 0.0)
    assert checkpoints(out) == ["queue_overflow"]
    assert released(out) == []
    assert released(c.checkpoint_done(0.1)) == frames


def test_secondary_queue_overflow() -> None:
    c = Comparator(CompareConfig(max_queue_frames=5))
    out = []
    for i in range(7):
        out += c.feed_secondary(udp_frame(b"s%d" % i), 0.0)
    assert checkpoints(out) == ["queue_overflow"]
    assert c.counters.secondary_dropped == 2


def test_checkpoint_done_releases_held_in_order_and_discards_secondary() -> None:
    c = Comparator()
    p = segments(DATA, [1000], seq=SEQ, ack=ACK)
    u = udp_frame(b"dns answer")
    for f in [p[0], u, p[1], p[2]]:
        c.feed_primary(f, 0.0)
    # The secondary diverged on this connection: what it holds is not trusted.
    assert checkpoints(c.feed_secondary(tcp_frame(SEQ, ACK, "AP", b"Z" * 1000), 0.0)) != []
    c.feed_secondary(tcp_frame(SEQ + 3000, ACK, "AP", b"stale secondary bytes"), 0.0)
    out = c.checkpoint_done(0.5)
    assert released(out) == [p[0], u, p[1], p[2]]
    assert c.counters.held_frames == 0
    assert c.counters.held_secondary_bytes == 0
    # Comparison restarts after the primary's last byte; the stale bytes are gone.
    rest = segments(DATA[3000:], [500], seq=SEQ + 3000, ack=ACK)
    out = []
    for f in rest:
        out += c.feed_primary(f, 1.0)
    for f in segments(DATA[3000:], [800], seq=SEQ + 3000, ack=ACK):
        out += c.feed_secondary(f, 1.0)
    assert released(out) == rest
    assert checkpoints(out) == []


def test_new_epoch_secondary_output_before_checkpoint_done_is_kept() -> None:
    # The secondary resumes from the checkpoint as soon as it has loaded it and may send
    # before the comparator learns the checkpoint ended: those bytes follow the primary's
    # last byte and must still match the primary's next output (else it waits forever).
    c = Comparator()
    p = segments(DATA, [1000], seq=SEQ, ack=ACK)
    c.feed_primary(p[0], 0.0)
    c.feed_secondary(tcp_frame(SEQ, ACK, "AP", DATA[:200]), 0.0)  # the old epoch, partly
    c.feed_secondary(tcp_frame(SEQ + 1000, ACK, "AP", DATA[1000:2000]), 0.05)  # new epoch
    assert released(c.checkpoint_done(0.1)) == [p[0]]
    assert c.counters.held_secondary_bytes == 1000
    out = c.feed_primary(p[1], 0.2)
    assert released(out) == [p[1]] and checkpoints(out) == []
    assert c.counters.held_frames == 0 and c.counters.held_secondary_bytes == 0


def test_frames_in_flight_across_checkpoint_are_not_divergence() -> None:
    c = Comparator()
    p = segments(DATA[:3000], [1000], seq=SEQ, ack=ACK)
    c.feed_primary(p[0], 0.0)
    c.feed_primary(p[1], 0.0)
    bad_stale = tcp_frame(SEQ, ACK, "AP", b"Z" * 1000)  # the old SVM's view, now obsolete
    assert checkpoints(c.feed_secondary(bad_stale, 0.0)) == ["tcp_payload_mismatch"]
    assert released(c.checkpoint_done(0.1)) == p[:2]
    # The old SVM's last frames arrive late; the primary retransmits one frame.
    out = c.feed_secondary(tcp_frame(SEQ + 1000, ACK, "AP", b"Y" * 1000), 0.2)
    out += c.feed_primary(p[1], 0.2)
    assert checkpoints(out) == []
    assert released(out) == [p[1]]
    out = c.feed_primary(p[2], 0.3) + c.feed_secondary(
        tcp_frame(SEQ + 2000, ACK, "AP", DATA[2000:3000]), 0.3
    )
    assert released(out) == [p[2]]
    assert checkpoints(out) == []


def test_next_divergence_after_checkpoint_asks_again() -> None:
    c = Comparator()
    c.feed_primary(tcp_frame(SEQ, ACK, "AP", b"a"), 0.0)
    assert checkpoints(c.feed_secondary(tcp_frame(SEQ, ACK, "AP", b"b"), 0.0)) != []
    c.checkpoint_done(0.1)
    c.feed_primary(tcp_frame(SEQ + 1, ACK, "AP", b"c"), 0.2)
    assert checkpoints(c.feed_secondary(tcp_frame(SEQ + 1, ACK, "AP", b"d"), 0.2)) == [
        "tcp_payload_mismatch"
    ]
    assert c.counters.checkpoints_requested == 2


def test_hold_time_histogram() -> None:
    c = Comparator()
    p = tcp_frame(SEQ, ACK, "AP", b"x")
    c.feed_primary(p, 1.0)
    c.feed_secondary(tcp_frame(SEQ, ACK, "AP", b"x"), 1.003)
    snap = c.snapshot()
    assert sum(snap["hold_time_counts"]) == 1
    assert snap["hold_time_counts"][3] == 1  # in (0.001, 0.005]


class PreReleaseEverything:
    def __init__(self) -> None:
        self.asked: list[HeldFrame] = []

    def may_pre_release(self, frame: HeldFrame, now: float) -> bool:
        self.asked.append(frame)
        return True


def test_pre_release_seam_sends_once_and_still_compares() -> None:
    policy = PreReleaseEverything()
    c = Comparator(policy=policy)
    # The absolute rule: nothing leaves early before the secondary acknowledged as much.
    assert c.feed_secondary(tcp_frame(SEQ, ACK, "A"), 0.0) == []
    p = tcp_frame(SEQ, ACK, "AP", b"early")
    out = c.feed_primary(p, 0.0)
    assert [f for a in out if isinstance(a, PreRelease) for f in a.frames] == [p]
    out = c.feed_secondary(tcp_frame(SEQ, ACK, "AP", b"early"), 0.1)
    assert released(out) == []  # not sent twice
    assert c.counters.matched_frames == 1
    p2 = tcp_frame(SEQ + 5, ACK, "AP", b"wrong")
    c.feed_primary(p2, 0.2)
    assert checkpoints(c.feed_secondary(tcp_frame(SEQ + 5, ACK, "AP", b"WRONG"), 0.2))
    assert released(c.checkpoint_done(0.3)) == []


D = DATA[:100]
T = b"T" * 100
N = b"N" * 100


def epoch_with_stale_secondary_tail(c: Comparator, stop: bool) -> None:
    """Both sent [0,100) = D; the secondary also [100,200) = T; then a checkpoint."""
    out = c.feed_primary(tcp_frame(SEQ, ACK, "AP", D), 0.0)
    out += c.feed_secondary(tcp_frame(SEQ, ACK, "AP", D), 0.0)
    out += c.feed_secondary(tcp_frame(SEQ + 100, ACK, "AP", T), 0.0)
    assert len(released(out)) == 1
    if stop:
        c.checkpoint_started(0.1)
    c.checkpoint_done(0.2)


def test_stale_secondary_bytes_never_meet_new_epoch_primary_output() -> None:
    """Bug 2: T was the old epoch's output; the new epoch's secondary says N."""
    for stop in (True, False):
        c = Comparator()
        epoch_with_stale_secondary_tail(c, stop)
        out = c.feed_primary(tcp_frame(SEQ + 100, ACK, "AP", T), 0.3)
        out += c.feed_secondary(tcp_frame(SEQ + 100, ACK, "AP", N), 0.3)
        assert released(out) == [], stop
        assert checkpoints(out) == ["tcp_payload_mismatch"], stop


def test_equal_new_epoch_streams_after_stale_bytes_need_no_checkpoint() -> None:
    for stop in (True, False):
        c = Comparator()
        epoch_with_stale_secondary_tail(c, stop)
        p = tcp_frame(SEQ + 100, ACK, "AP", N)
        out = c.feed_primary(p, 0.3) + c.feed_secondary(tcp_frame(SEQ + 100, ACK, "AP", N), 0.3)
        assert released(out) == [p], stop
        assert checkpoints(out) == [], stop


def test_new_epoch_bytes_between_stop_and_resume_are_kept_and_stale_ones_not() -> None:
    """The exact rule: what the secondary sent before the primary's STOP is the old epoch's,
    what it sent after is the new epoch's, at the same positions."""
    c = Comparator()
    out = c.feed_primary(tcp_frame(SEQ, ACK, "AP", D), 0.0)
    out += c.feed_secondary(tcp_frame(SEQ, ACK, "AP", D), 0.0)
    out += c.feed_secondary(tcp_frame(SEQ + 100, ACK, "AP", T), 0.0)  # old epoch
    c.checkpoint_started(0.1)
    c.feed_secondary(tcp_frame(SEQ + 100, ACK, "AP", N), 0.15)  # new epoch, before RESUME
    c.checkpoint_done(0.2)
    p = tcp_frame(SEQ + 100, ACK, "AP", N)
    out = c.feed_primary(p, 0.3)
    assert released(out) == [p]
    assert checkpoints(out) == []
    assert c.counters.held_secondary_bytes == 0


def test_old_epoch_secondary_ack_does_not_survive_a_checkpoint() -> None:
    """Bug 2's sibling for ACKs: the old secondary acknowledged client bytes the new one
    may never have received; the ACK rule must wait for the new epoch's own ACK."""
    for stop in (True, False):
        c = Comparator()
        c.feed_primary(tcp_frame(SEQ, ACK, "AP", D), 0.0)
        assert released(c.feed_secondary(tcp_frame(SEQ, ACK + 50, "AP", D), 0.0))
        if stop:
            c.checkpoint_started(0.1)
        c.checkpoint_done(0.2)
        p = tcp_frame(SEQ + 100, ACK + 50, "AP", N)
        out = c.feed_primary(p, 0.3) + c.feed_secondary(tcp_frame(SEQ + 100, ACK, "AP", N), 0.3)
        assert released(out) == [], stop
        assert released(c.feed_secondary(tcp_frame(SEQ + 200, ACK + 50, "A"), 0.4)) == [p]


def test_datagrams_between_stop_and_resume_are_the_next_epochs() -> None:
    c = Comparator()
    c.feed_secondary(udp_frame(b"old epoch, never matched"), 0.0)
    c.checkpoint_started(0.1)
    c.feed_secondary(udp_frame(b"new epoch"), 0.15)
    c.checkpoint_done(0.2)
    p = udp_frame(b"new epoch")
    out = c.feed_primary(p, 0.3)
    assert released(out) == [p]
    assert checkpoints(out) == []
    assert c.counters.held_secondary_frames == 0
