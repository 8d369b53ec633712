"""The client copy read in batches (``Comparator.feed_clients``): a lost connection's
segments are counted in runs without a copy, everything else frame by frame; fed the same
client reads, primary answers, secondary answers and checkpoints, it releases, pre-releases,
checkpoints and counts exactly what :meth:`Comparator.feed_client` does frame by frame."""

from __future__ import annotations

from compare_frames import CLIENT, GUEST, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import Comparator, PreReleaseConfig, build_policy
from colopp.compare.framing import encode_frames
from colopp.compare.http_reads import MAX_HEAD_BYTES
from colopp.compare.spans import Splitter

RULES = frozenset({"retransmission", "ack_only", "http_read"})
GET = b"GET /kv/a HTTP/1.1\r\nHost: g\r\n\r\n"
PUT = b"PUT /kv/a HTTP/1.1\r\nContent-Length: 1\r\n\r\nv"
JUNK = b"\x00" * (MAX_HEAD_BYTES + 1)  # no request head ends in it: the stream is lost
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def comparator(scope: str) -> Comparator:
    policy = build_policy(PreReleaseConfig(RULES, ("/kv/",), scope=scope))
    assert policy is not None
    return Comparator(policy=policy)


class Conn:
    def __init__(self, port: int) -> None:
        self.port, self.cseq, self.gseq = port, 9000, 5000

    def client(self, kind: str) -> bytes:
        payload = {"get": GET, "put": PUT, "junk": JUNK, "bulk": b"\x17" * 700}.get(kind, b"")
        flags = {"syn": "S", "ack": "A", "rst": "R"}.get(kind, "PA")
        frame = tcp_frame(
            self.cseq, self.gseq, flags, payload,
            src=CLIENT, dst=GUEST, sport=self.port, dport=80,
        )  # fmt: skip
        if kind == "bad":  # a segment whose checksum the guest rejects
            frame = tcp_frame(
                self.cseq, self.gseq, "PA", GET, src=CLIENT, dst=GUEST, sport=self.port, dport=80
            )
            frame = frame[:50] + bytes([frame[50] ^ 0xFF]) + frame[51:]
        elif kind == "arp":
            frame = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28
        if kind == "syn":
            self.cseq += 1
        elif kind not in ("bad", "arp"):
            self.cseq += len(payload)
        return frame

    def answer(self) -> bytes:
        frame = tcp_frame(self.gseq, self.cseq, "PA", REPLY, sport=80, dport=self.port)
        return frame


def summary(c: Comparator) -> dict[str, object]:
    snap = c.snapshot()
    snap.pop("hold_time_sum", None)
    return snap


KINDS = ["syn", "get", "put", "junk", "bulk", "ack", "rst", "bad", "arp"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("read"),
                st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2)), max_size=12),
            ),
            st.tuples(st.sampled_from(["primary", "secondary", "both", "ckpt"]), st.integers(0, 2)),
        ),
        max_size=30,
    ),
    st.sampled_from(["global", "key"]),
)
def test_a_batch_decides_as_frame_by_frame(steps: list[tuple[str, object]], scope: str) -> None:
    one, batch = comparator(scope), comparator(scope)
    conns = [Conn(40001 + i) for i in range(3)]
    now = 0.0
    for step, arg in steps:
        now += 0.01
        if step == "read":
            assert isinstance(arg, list)
            frames = [conns[who].client(kind) for kind, who in arg]
            buf, spans = Splitter().feed(encode_frames(frames))
            idle = one.client_view_idle()
            want = [a for f in frames for a in one.feed_client(f, now)]
            assert batch.feed_clients(buf, spans, now) == want
            if idle:  # the shell need not read the copy before a decision: it grants nothing
                assert want == [] and one.client_view_idle()
        elif step == "ckpt":
            assert batch.checkpoint_done(now) == one.checkpoint_done(now)
        else:
            assert isinstance(arg, int)
            c = conns[arg]
            frame = c.answer()
            if step in ("primary", "both"):
                assert batch.feed_primary(frame, now) == one.feed_primary(frame, now)
            if step in ("secondary", "both"):
                assert batch.feed_secondary(frame, now) == one.feed_secondary(frame, now)
            if step == "both":
                c.gseq += len(REPLY)
        assert summary(batch) == summary(one)


def test_an_upload_is_counted_in_runs_and_a_syn_ends_it() -> None:
    c = comparator("global")
    conn = Conn(40001)
    frames = [conn.client("syn"), conn.client("junk")] + [conn.client("bulk") for _ in range(50)]
    buf, spans = Splitter().feed(encode_frames(frames))
    assert c.feed_clients(buf, spans, 0.0) == []
    snap = c.snapshot()
    assert snap["client_frames_in"] == 52
    assert snap["pre_release"]["write_requests"] == 51
    conn.cseq = 1  # a new incarnation of the 4-tuple: classified afresh
    buf, spans = Splitter().feed(encode_frames([conn.client("syn"), conn.client("get")]))
    c.feed_clients(buf, spans, 0.1)
    assert c.snapshot()["pre_release"]["read_requests"] == 1


def test_the_client_view_is_idle_from_a_write_of_unknown_reach_to_the_next_checkpoint() -> None:
    c = comparator("key")
    conn = Conn(40001)
    assert not c.client_view_idle()
    buf, spans = Splitter().feed(encode_frames([conn.client("syn"), conn.client("put")]))
    c.feed_clients(buf, spans, 0.0)
    assert not c.client_view_idle()  # a write to one key: reads of others still count
    buf, spans = Splitter().feed(encode_frames([conn.client("junk")]))
    c.feed_clients(buf, spans, 0.1)
    assert c.client_view_idle()  # lost: writes of unknown reach
    c.checkpoint_done(0.2)
    assert not c.client_view_idle()
    c.client_lost()
    assert c.client_view_idle()
    assert Comparator().client_view_idle()  # no policy follows requests
