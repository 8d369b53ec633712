"""The write fence's cheap path for bulk uploads (``WriteFence.offer_plain``): fed the same
client frames, answers, checkpoints and ticks, it holds, lets go and counts exactly what
:meth:`WriteFence.offer` does, lost streams and HTTP requests mixed."""

from __future__ import annotations

from compare_frames import CLIENT, GUEST, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare.framing import encode_frames
from colopp.compare.http_reads import MAX_HEAD_BYTES
from colopp.compare.packet import TCP, FlowKey
from colopp.ingress.fence import WriteFence
from colopp.ingress.wire import plain_tcp

PAYLOADS = {
    "get": b"GET /kv/k HTTP/1.1\r\nHost: g\r\n\r\n",
    "put": b"PUT /kv/k HTTP/1.1\r\nContent-Length: 1\r\n\r\nv",
    # A head that never ends: the stream is lost from here on (an upload, no service's).
    "junk": b"\x00" * (MAX_HEAD_BYTES + 10),
    "bulk": b"\x17" * 1448,
}


def _ip(text: str) -> int:
    return int.from_bytes(bytes(map(int, text.split("."))), "big")


class Conn:
    def __init__(self, port: int) -> None:
        self.port, self.seq, self.guest = port, 1000, 5000
        self.key: FlowKey = (TCP, _ip(GUEST), _ip(CLIENT), 80, port)

    def frame(self, payload: bytes, flags: str = "PA") -> bytes:
        out = tcp_frame(
            self.seq, self.guest, flags, payload,
            src=CLIENT, dst=GUEST, sport=self.port, dport=80,
        )  # fmt: skip
        self.seq += len(payload) + (flags == "S")
        return out


def counters(f: WriteFence) -> tuple[object, ...]:
    c = f.classifier
    return (
        f.counters(),
        f.held_frames,
        f.held_bytes,
        sorted(f.pending),
        c.write_requests,
        c.read_requests,
        c.write_seen,
        c.bad_checksum_frames,
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["syn", "get", "put", "junk", "bulk", "ack", "answer", "ckpt", "tick"]),
            st.integers(0, 2),
            st.floats(0, 0.4),
        ),
        max_size=50,
    ),
    st.sampled_from(["global", "key"]),
)
def test_the_cheap_path_decides_as_the_full_one(
    steps: list[tuple[str, int, float]], scope: str
) -> None:
    slow = WriteFence(("GET", "HEAD"), ("/kv/",), scope=scope)
    fast = WriteFence(("GET", "HEAD"), ("/kv/",), scope=scope)
    conns = [Conn(40001 + i) for i in range(3)]
    now = 0.0
    for action, who, dt in steps:
        now += dt
        c = conns[who]
        if action in ("syn", "get", "put", "junk", "bulk", "ack"):
            payload = PAYLOADS.get(action, b"")
            frame = c.frame(payload, "S" if action == "syn" else "A" if action == "ack" else "PA")
            buf = encode_frames([frame])
            span = (0, 4, len(buf), 0)
            fields = plain_tcp(buf, 4, len(buf), 0)
            assert fields is not None
            flags, size = fields[6], fields[7]
            held_slow = slow.offer(frame, 0, buf, now)
            held_fast = fast.offer_plain(c.key, flags, size, buf, span, now)
            assert held_fast == held_slow
        elif action == "answer":
            assert fast.guest(c.key, 0x18, c.guest, 5) == slow.guest(c.key, 0x18, c.guest, 5)
            c.guest += 5
            assert fast.release(now) == slow.release(now)
        elif action == "ckpt":
            assert fast.checkpoint(now) == slow.checkpoint(now)
        else:
            assert fast.release(now) == slow.release(now)
        assert counters(fast) == counters(slow)
    assert fast.release(now + 60) == slow.release(now + 60)


def test_a_lost_upload_costs_no_copy_while_nothing_is_held() -> None:
    f = WriteFence(("GET", "HEAD"), ("/kv/",))
    c = Conn(40001)
    for payload in (b"", PAYLOADS["junk"]):
        buf = encode_frames([c.frame(payload, "S" if not payload else "PA")])
        fields = plain_tcp(buf, 4, len(buf), 0)
        assert fields is not None
        assert not f.offer_plain(c.key, fields[6], fields[7], buf, (0, 4, len(buf), 0), 0.0)
    writes = f.classifier.write_requests
    buf = encode_frames([c.frame(PAYLOADS["bulk"])])

    class NoSlice(bytes):
        def __getitem__(self, index: object) -> bytes:  # type: ignore[override]
            raise AssertionError("the cheap path copied the frame")

    assert not f.offer_plain(c.key, 0x18, 1448, NoSlice(buf), (0, 4, len(buf), 0), 0.1)
    assert f.classifier.write_requests == writes + 1
