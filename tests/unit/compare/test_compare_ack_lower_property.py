"""ACK lowering, as a property (issue 15): whatever the order in which the client's requests,
the primary's and the secondary's answers and ACKs, and checkpoints come, no ACK leaving for
the client exceeds what the secondary acknowledged or the primary acknowledged before a
checkpoint; bare ACKs sit at the end of what the client was sent and only raise its ACK; and
once the secondary caught up, the client holds the primary's real ACK."""

from __future__ import annotations

from compare_frames import CLIENT, GUEST, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from test_compare_ack_lower import checksums_ok, fields

from colopp.compare import Action, Comparator, PreReleaseConfig, Release, build_policy
from colopp.compare.verdict import PreRelease

MASK = 0xFFFF_FFFF
C0 = 0xFFFF_FFC0  # both sequence spaces cross the 2**32 wrap
G0 = 0xFFFF_FF00
OPS = ("get", "put", "p_answer", "s_recv", "s_answer", "checkpoint")


def answer(i: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + b"%04d" % i


class Model:
    """One connection: what was sent both ways, and what the client may have been told."""

    def __init__(self) -> None:
        rules = frozenset({"retransmission", "ack_only", "http_read"})
        config = PreReleaseConfig(rules, ("/kv/",), lower_acks=True)
        policy = build_policy(config)
        assert policy is not None
        self.c = Comparator(policy=policy)
        self.requests: list[tuple[int, int]] = []  # (start, end), unwrapped client positions
        self.p_answered = self.s_answered = self.s_received = 0
        self.allowed = 0  # the highest ACK the client may be told (unwrapped)
        self.p_max_ack = 0
        self.client_ack = 0  # the highest ACK the client was told
        self.client_end = 0  # the end of the guest bytes the client was sent (unwrapped)
        self.bare_acks = 0
        self.check(self.c.feed_secondary(tcp_frame(G0, C0, "A"), 0.0), 0.0)
        self.check(self.c.feed_primary(tcp_frame(G0, C0, "A"), 0.0), 0.0)

    def sent_end(self) -> int:
        return self.requests[-1][1] if self.requests else 0

    def guest_pos(self, i: int) -> int:
        return sum(len(answer(j)) for j in range(i))

    def check(self, actions: list[Action], now: float) -> None:
        for action in actions:
            if not isinstance(action, Release | PreRelease):
                continue
            for frame in action.frames:
                pkt = fields(frame)
                assert checksums_ok(frame)
                ack = (pkt.ack - C0) & MASK
                assert ack <= self.allowed, (ack, self.allowed)
                start = (pkt.seq - G0) & MASK
                size = pkt.payload_end - pkt.payload_start
                if size == 0 and isinstance(action, PreRelease):
                    # A bare ACK of ours: at the end of what the client got, raising its ACK.
                    assert start == self.client_end and ack > self.client_ack
                    self.bare_acks += 1
                self.client_ack = max(self.client_ack, ack)
                self.client_end = max(self.client_end, start + size)

    def step(self, op: str, now: float) -> None:
        c = self.c
        if op in ("get", "put"):
            text = "GET /kv/a HTTP/1.1\r\n\r\n" if op == "get" else "PUT /kv/a HTTP/1.1\r\n"
            text += "" if op == "get" else "Content-Length: 1\r\n\r\nx"
            start = self.sent_end()
            self.requests.append((start, start + len(text)))
            frame = tcp_frame(
                (C0 + start) & MASK,
                G0,
                "AP",
                text.encode(),
                src=CLIENT,
                dst=GUEST,
                sport=40000,
                dport=80,
            )
            self.check(c.feed_client(frame, now), now)
        elif op == "p_answer" and self.p_answered < len(self.requests):
            ack = self.sent_end()  # the primary guest received every request sent so far
            self.p_max_ack = max(self.p_max_ack, ack)
            self.check(c.feed_primary(self._answer(self.p_answered, ack), now), now)
            self.p_answered += 1
        elif op == "s_recv" and self.s_received < len(self.requests):
            self.s_received += 1
            self._secondary(tcp_frame(G0 + self.guest_pos(self.s_answered), self._s_ack()), now)
        elif op == "s_answer" and self.s_answered < self.p_answered:
            self.s_received = max(self.s_received, self.s_answered + 1)
            self._secondary(self._answer(self.s_answered, self._s_ack()), now)
            self.s_answered += 1
        elif op == "checkpoint":
            c.checkpoint_started(now)
            self.allowed = max(self.allowed, self.p_max_ack)  # the secondary is the primary now
            self.check(c.checkpoint_done(now), now)
            self.s_answered, self.s_received = self.p_answered, len(self.requests)

    def _s_ack(self) -> int:
        return self.requests[self.s_received - 1][1] if self.s_received else 0

    def _secondary(self, frame: bytes, now: float) -> None:
        self.allowed = max(self.allowed, (fields(frame).ack - C0) & MASK)
        self.check(self.c.feed_secondary(frame, now), now)

    def _answer(self, i: int, ack: int) -> bytes:
        return tcp_frame((G0 + self.guest_pos(i)) & MASK, (C0 + ack) & MASK, "AP", answer(i))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(OPS), max_size=40))
def test_no_ack_beyond_the_secondary_and_the_real_one_in_the_end(ops: list[str]) -> None:
    model = Model()
    for n, op in enumerate(ops):
        model.step(op, 0.001 * (n + 1))
    # The secondary catches up with everything; then the client holds the real ACK.
    now = 1.0
    while model.p_answered < len(model.requests):
        model.step("p_answer", now)
    while model.s_answered < model.p_answered:
        model.step("s_answer", now)
    assert model.client_ack == model.p_max_ack
    k = model.c.counters
    assert k.prerelease_mismatches == 0 and k.held_frames == 0
    assert k.prerelease_bare_acks == model.bare_acks


def test_the_model_does_lower() -> None:
    model = Model()
    for op in ("get", "p_answer", "s_answer"):
        model.step(op, 0.01)
    k = model.c.counters
    assert (k.prerelease_ack_lowered, k.prerelease_bare_acks) == (1, 1)
