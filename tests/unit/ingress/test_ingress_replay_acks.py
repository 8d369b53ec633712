"""The replay at failover after the relay lowered ACKs (issue #22, the demo hang).

With ACK lowering, a lagging secondary takes the client's requests at once (their ACKs
lowered to what it sent) and acknowledges them: the log is empty at the failover. The
promoted guest then still owes the client answers the dead primary gave, and its send
window is full of answers the client acknowledged long ago, through the primary: Linux
discards every client segment whose ACK runs past its ``snd_nxt``, so nothing acknowledges
them, the guest stalls, and the client's next request (its ACK as far) is discarded too.
Before the fix the replay ended at once (nothing logged) and the demo's client requests
hung past 15 s. The relay hands the ACKs it owed to the replay, which gives the promoted
guest the client's acknowledgements as its output reaches them.
"""

from __future__ import annotations

import asyncio

from compare_frames import tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ingress_fastpath import _frames, _relay
from test_ingress_replay_lag import ANS, ISN_C, ISN_G, REQ, _request

from colopp.compare.framing import encode_frames
from colopp.compare.packet import ACK, Packet, parse_frame
from colopp.ingress.replay import FIRST_PAUSE_S, Replayer


class WindowedGuest:
    """A guest that answers each request it took in order with one frame, at most
    ``window`` answers past what it saw acknowledged; a segment whose ACK runs past what it
    sent is discarded with its payload (Linux: "ACK of unsent data")."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.received = 0  # requests taken in order
        self.sent = 0  # answers sent
        self.acked = 0  # answers acknowledged
        self.out: list[bytes] = []

    def take(self, frame: bytes) -> None:
        pkt = parse_frame(frame)
        assert isinstance(pkt, Packet)
        if pkt.flags & ACK:
            acked = pkt.ack - ISN_G
            if acked > self.sent * ANS:
                return
            self.acked = max(self.acked, acked // ANS)
        size = pkt.payload_end - pkt.payload_start
        if size and pkt.seq - ISN_C == self.received * REQ:
            self.received += 1

    def work(self, most: int | None = None) -> None:
        """Answer what it can (``most``: a throttled CPU's share)."""
        budget = most if most is not None else 1 << 30
        while self.sent < self.received and self.sent < self.acked + self.window and budget:
            budget -= 1
            self.sent += 1
            seq = ISN_G + (self.sent - 1) * ANS
            self.out.append(tcp_frame(seq, ISN_C + self.received * REQ, "AP", b"A" * ANS))


def _failover_after(total: int, window: int, pace: int) -> tuple[WindowedGuest, Replayer, float]:
    """``total`` requests through a lowering relay to a secondary that answers ``pace``
    per request (CPU-throttled, it falls behind), then a failover and the replay."""
    guest = WindowedGuest(window)
    replayer: Replayer | None = None

    async def before() -> None:
        relay, sides = _relay(lowering=True)
        # The connection is up: the guest's first ACK, nothing sent yet.
        sides["red1"].data_received(encode_frames([tcp_frame(ISN_G, ISN_C, "A")]))
        taken = 0
        for i in range(total):
            sides["mirror"].data_received(encode_frames([_request(i)]))
            got = _frames(sides["red0"])
            for frame in got[taken:]:
                guest.take(frame)
            taken = len(got)
            guest.work(pace)
            sides["red1"].data_received(encode_frames(guest.out))
            guest.out.clear()
            got = _frames(sides["red0"])  # owed ACKs the guest's output released
            for frame in got[taken:]:
                guest.take(frame)
            taken = len(got)
        relay.promote()
        nonlocal replayer
        replayer = Replayer(relay.log, guest.take, now=0.0, deadline_s=60.0)

    asyncio.run(before())
    assert replayer is not None
    now = 0.0
    at = replayer.tick(now)
    guest.work()
    while at is not None and now < 60.0:
        while guest.out:  # the promoted guest's frames, as the tap socket reads them
            out, guest.out = guest.out, []
            for frame in out:
                replayer.guest_frame(frame)
            replayer.push(now)
            guest.work()
        now = max(now + 0.001, at)
        at = replayer.tick(now)
        guest.work()
    return guest, replayer, now


def test_a_lagging_guest_whose_requests_were_all_taken_answers_them_all_after_failover() -> None:
    guest, _, finished = _failover_after(total=200, window=10, pace=0)
    assert guest.received == 200  # lowering: every request reached it before the failover
    assert guest.sent == 200  # before the fix: 10 (its window), then nothing, ever
    assert finished <= 2 * FIRST_PAUSE_S


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(1, 120),
    window=st.integers(1, 12),
    pace=st.integers(0, 2),
)
def test_the_promoted_guest_catches_up_whatever_its_lag_and_window(
    total: int, window: int, pace: int
) -> None:
    guest, replayer, finished = _failover_after(total, window, pace)
    assert guest.sent == guest.received == total
    assert replayer.log.settled() and not replayer.log.owed_acks
    assert finished <= 2 * FIRST_PAUSE_S


def test_an_owed_ack_is_given_as_far_as_the_output_reaches_and_dropped_on_a_reset() -> None:
    async def run() -> None:
        relay, sides = _relay(lowering=True)
        sides["red1"].data_received(encode_frames([tcp_frame(ISN_G, ISN_C, "AP", b"A" * ANS)]))
        sides["mirror"].data_received(encode_frames([_request(5)]))  # acknowledges 5 answers
        relay.promote()
        (owed,) = relay.log.owed_acks.values()
        assert (owed.ack, owed.sent_end) == (ISN_G + 5 * ANS, ISN_G + ANS)
        sent: list[bytes] = []
        replayer = Replayer(relay.log, sent.append, now=0.0)
        replayer.tick(0.0)
        pkts = [p for p in map(parse_frame, sent) if isinstance(p, Packet)]
        # The logged request (optimistically: nothing seen from the guest yet), then the
        # owed ACK as far as the relay saw the guest send.
        assert [(p.flags, p.ack) for p in pkts] == [
            (ACK | 0x08, ISN_G + 5 * ANS),
            (ACK, ISN_G + ANS),
        ]
        replayer.guest_frame(tcp_frame(ISN_G + ANS, ISN_C + 6 * REQ, "AP", b"A" * ANS))
        assert replayer.push(0.01) == 1
        last = parse_frame(sent[-1])
        assert isinstance(last, Packet) and last.ack == ISN_G + 2 * ANS
        assert last.seq == ISN_C + 6 * REQ  # past the client's newest request
        replayer.guest_frame(tcp_frame(ISN_G + 2 * ANS, ISN_C + 6 * REQ, "R"))
        assert not relay.log.owed_acks
        assert replayer.tick(1.0) is None  # settled: nothing logged, nothing owed

    asyncio.run(run())
