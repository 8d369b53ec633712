"""The replay at failover to a promoted guest that lags the dead primary (issue #18/#22).

Session 9's demo failure, from a capture: the semi-active secondary was 1.2 s (360
requests) behind on a keep-alive connection whose answers had all left early; the replay
sent the log's 360 requests at once, the guest (Linux drops a segment whose ACK runs past
its ``snd_nxt``) took only the first, and each later one waited for the next round at
doubling pauses capped at 1 s: the client's request hung past its 15 s timeout. The
replayer now hands each request over as soon as the guest's answer covers its ACK.
"""

from __future__ import annotations

from compare_frames import CLIENT, GUEST, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare.packet import Packet, parse_frame
from colopp.ingress.log import ClientLog
from colopp.ingress.replay import FIRST_PAUSE_S, Replayer

ISN_C, ISN_G, REQ, ANS = 1_000_000, 5_000, 72, 94


def _request(i: int) -> bytes:
    """The client's request ``i``: it acknowledges the answers to requests 0..i-1."""
    return tcp_frame(
        ISN_C + i * REQ,
        ISN_G + i * ANS,
        "AP",
        b"G" * REQ,
        src=CLIENT,
        dst=GUEST,
        sport=40000,
        dport=80,
    )


class LaggingGuest:
    """A guest that answered ``done`` requests. A segment arriving while its ACK runs past
    what the guest sent is discarded with its payload; a request taken in order is
    answered later, at :meth:`work` (one answer frame, carrying the ACK)."""

    def __init__(self, done: int) -> None:
        self.done = done  # answered
        self.received = done  # taken in order (rcv_nxt)
        self.out: list[bytes] = []

    def take(self, frame: bytes) -> None:
        pkt = parse_frame(frame)
        assert isinstance(pkt, Packet)
        if pkt.ack - ISN_G > self.done * ANS:
            return  # "ACK of unsent data"
        if pkt.seq - ISN_C == self.received * REQ:
            self.received += 1

    def work(self) -> None:
        while self.done < self.received:
            self.done += 1
            seq = ISN_G + (self.done - 1) * ANS
            self.out.append(tcp_frame(seq, ISN_C + self.done * REQ, "AP", b"A" * ANS))


def _run(lag: int, total: int) -> tuple[Replayer, LaggingGuest, float]:
    log = ClientLog()
    for i in range(total):
        log.client_frame(_request(i))
    guest = LaggingGuest(total - lag)
    # What the guest acknowledged before the failover frees the log.
    log.guest_frame(tcp_frame(ISN_G, ISN_C + (total - lag) * REQ, "A"))
    replayer = Replayer(log, guest.take, now=0.0, deadline_s=60.0)
    now = 0.0
    at = replayer.tick(now)
    while at is not None and now < 60.0:
        guest.work()
        while guest.out:  # the guest's frames, as the tap socket reads them
            for frame in guest.out[:]:
                guest.out.remove(frame)
                replayer.guest_frame(frame)
            replayer.push(now)
            guest.work()
        now = max(now + 0.001, at)
        at = replayer.tick(now)
    return replayer, guest, now


def test_a_guest_360_requests_behind_catches_up_at_once_not_one_request_per_round() -> None:
    replayer, guest, finished = _run(lag=360, total=400)
    assert guest.done == 400
    assert replayer.log.settled()
    assert finished <= 2 * FIRST_PAUSE_S  # before: 360 rounds, up to 1 s apart (minutes)
    assert replayer.pushed >= 359


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 80), lag_fraction=st.floats(0, 1))
def test_the_replay_settles_whatever_the_lag(total: int, lag_fraction: float) -> None:
    lag = round(total * lag_fraction)
    replayer, guest, finished = _run(lag=lag, total=total)
    assert guest.done == total
    assert replayer.log.settled()
    assert finished <= 2 * FIRST_PAUSE_S


def test_a_frame_the_guest_cannot_take_yet_is_not_sent_before_its_ack_is_covered() -> None:
    log = ClientLog()
    for i in range(3):
        log.client_frame(_request(i))
    sent: list[bytes] = []
    replayer = Replayer(log, sent.append, now=0.0)
    replayer.guest_frame(tcp_frame(ISN_G, ISN_C, "A"))  # the guest sent nothing yet
    replayer.tick(0.0)
    assert sent == [_request(0)]  # request 1 acknowledges answer 0, not sent yet
    assert replayer.push(0.001) == 0
    replayer.guest_frame(tcp_frame(ISN_G, ISN_C + REQ, "AP", b"A" * ANS))
    assert replayer.push(0.002) == 1 and sent[-1] == _request(1)


def test_each_logged_frame_is_parsed_once_however_many_pushes() -> None:
    """A bulk upload's log at failover (thousands of frames, the guest acknowledging a few
    at a time): each push walks only the connection whose output moved and parses nothing
    twice (walking and parsing the whole log per push was quadratic: 1.2 s of CPU for 3000
    frames, minutes at the log's 64 MiB bound)."""
    log = ClientLog()
    total = 3000
    for i in range(total):
        payload = b"u" * 1448
        log.client_frame(
            tcp_frame(
                ISN_C + i * 1448, ISN_G, "A", payload, src=CLIENT, dst=GUEST, sport=40000, dport=80
            )
        )
    sent: list[bytes] = []
    replayer = Replayer(log, sent.append, now=0.0)
    replayer.tick(0.0)
    for i in range(0, total, 10):
        replayer.guest_frame(tcp_frame(ISN_G, ISN_C + (i + 10) * 1448, "A"))
        replayer.push(0.001)
    assert replayer.log.settled()
    assert replayer.parsed_frames == total
    assert len(sent) < 2 * total  # round 1 optimistic, then each frame once more at most
