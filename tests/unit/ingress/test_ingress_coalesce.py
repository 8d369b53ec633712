"""The secondary's output coalesced for the comparator (``colopp/ingress/coalesce.py``):
fewer frames, and the comparator decides exactly as it would on every frame."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from compare_actions import checkpoints, released
from compare_frames import CLIENT, GUEST, arp_frame, tcp_frame, udp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import Comparator
from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.compare.packet import ACK, TCP, Packet, parse_frame
from colopp.ingress.coalesce import coalesce
from colopp.ingress.wire import Splitter, plain_tcp

ISN = 1_000_000
CLIENT_ISN = 5_000


@dataclass
class _Conn:
    sport: int
    seq: int = ISN + 1
    ack: int = CLIENT_ISN + 1
    open: bool = True


@dataclass
class _Stream:
    """A guest's output on a few connections, built event by event."""

    conns: list[_Conn] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)

    def handshake(self, sport: int) -> None:
        self.conns.append(_Conn(sport))
        self.frames.append(tcp_frame(ISN, CLIENT_ISN + 1, "SA", dport=sport))

    def event(self, which: int, kind: str, size: int) -> None:
        conn = self.conns[which % len(self.conns)]
        if not conn.open:
            self.frames.append(udp_frame(b"dns"))
            return
        kw = {"dport": conn.sport, "pad_to": 60}
        if kind in ("data", "push"):
            payload = bytes((conn.seq + i) & 0xFF for i in range(size))
            flags = "AP" if kind == "push" else "A"
            self.frames.append(tcp_frame(conn.seq, conn.ack, flags, payload, **kw))
            conn.seq += size
        elif kind == "request":  # the client sent more: later segments carry a new ACK
            conn.ack += size
            self.frames.append(tcp_frame(conn.seq, conn.ack, "A", **kw))
        elif kind == "dup":
            self.frames.append(tcp_frame(conn.seq, conn.ack, "A", window=1000, **kw))
        elif kind == "fin":
            self.frames.append(tcp_frame(conn.seq, conn.ack, "AF", **kw))
            conn.seq += 1
            conn.open = False
        elif kind == "arp":
            self.frames.append(arp_frame())


EVENTS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(
            ["data", "data", "data", "push", "request", "request", "dup", "fin", "arp"]
        ),
        st.integers(1, 300),
    ),
    max_size=40,
)


def _coalesced(frames: list[bytes], vnet: bool, cut: int) -> tuple[list[bytes], int]:
    """The relay's reads of ``frames`` (cut in two reads at ``cut``), coalesced; the frames
    the comparator decodes, and how many the relay counted."""
    vlen = 12 if vnet else 0
    stream = encode_frames([bytes(vlen) + f for f in frames], vlen, vnet_hdr=vnet)
    cut = min(cut, len(stream))
    splitter, decoder = Splitter(vnet), FrameDecoder(vnet)
    out: list[bytes] = []
    counted = 0
    for chunk in (stream[:cut], stream[cut:]):
        buf, spans = splitter.feed(chunk)
        fields = [plain_tcp(buf, s, e, v) for _, s, e, v in spans]
        chunks, count = coalesce(buf, spans, fields, vnet)
        decoded = decoder.feed(b"".join(chunks))
        assert len(decoded) == count <= len(spans)
        assert all(v == vlen for _, v in decoded)
        out += [f[vlen:] for f, _ in decoded]
        counted += count
    assert decoder.malformed == 0 and decoder.buffered == 0
    return out, counted


def _build(events: list[tuple[int, str, int]]) -> _Stream:
    stream = _Stream()
    for sport in (40000, 40001, 40002):
        stream.handshake(sport)
    for which, kind, size in events:
        stream.event(which, kind, size)
    return stream


def _per_connection(frames: list[bytes]) -> dict[object, tuple[bytes, list[object]]]:
    """Per connection: every payload byte in sequence order, and the other events (SYN,
    FIN, duplicate ACKs, the highest ACK) in order."""
    out: dict[object, tuple[bytearray, list[object]]] = {}
    top: dict[object, int] = {}
    for frame in frames:
        pkt = parse_frame(frame)
        assert isinstance(pkt, Packet)
        if pkt.kind != TCP:
            out.setdefault(pkt.kind, (bytearray(), []))[1].append(frame)
            continue
        data, events = out.setdefault(pkt.key, (bytearray(), []))
        payload = frame[pkt.payload_start : pkt.payload_end]
        if payload:
            data += payload
        if pkt.flags & ~0x08 != ACK:
            events.append(("flags", pkt.flags, pkt.seq, len(data)))
        elif not payload and pkt.ack == top.get(pkt.key):
            events.append(("dup", pkt.ack, len(data)))
        top[pkt.key] = max(top.get(pkt.key, 0), pkt.ack)
    return {k: (bytes(d), [*e, ("top", top.get(k))]) for k, (d, e) in out.items()}


@pytest.mark.parametrize("vnet", [False, True])
@settings(max_examples=150, deadline=None)
@given(events=EVENTS, cut=st.integers(0, 20000))
def test_each_connection_keeps_its_bytes_acks_and_flags(
    vnet: bool, events: list[tuple[int, str, int]], cut: int
) -> None:
    frames = _build(events).frames
    out, _ = _coalesced(frames, vnet, cut)
    assert _per_connection(out) == _per_connection(frames)


@pytest.mark.parametrize("primary_first", [True, False])
@settings(max_examples=150, deadline=None)
@given(events=EVENTS, cut=st.integers(0, 20000))
def test_the_comparator_releases_and_checkpoints_as_on_every_frame(
    primary_first: bool, events: list[tuple[int, str, int]], cut: int
) -> None:
    """The primary sent exactly these frames; the secondary's come frame by frame or
    coalesced, before or after them: the comparator's decisions are the same."""
    frames = _build(events).frames
    out, _ = _coalesced(frames, False, cut)
    results = []
    for secondary in (frames, out):
        core = Comparator()
        feeds = [(core.feed_primary, frames), (core.feed_secondary, secondary)]
        if not primary_first:
            feeds.reverse()
        actions = [a for feed, side in feeds for f in side for a in feed(f, 0.0)]
        per_conn: dict[object, list[bytes]] = {}
        for f in released(actions):
            pkt = parse_frame(f)
            assert isinstance(pkt, Packet)
            per_conn.setdefault(pkt.key, []).append(f)
        results.append((per_conn, checkpoints(actions), Counter(core.counters.divergences)))
    assert results[0] == results[1]


def test_a_bulk_read_leaves_as_one_segment_per_connection_run() -> None:
    payload = bytes(range(256)) * 6  # 1536 bytes
    frames = [
        tcp_frame(ISN + 1 + k * 1448, 77, "A", payload[:1448], dport=40000) for k in range(40)
    ]
    out, count = _coalesced(frames, False, 10**9)
    assert count == len(out) == 1  # 40 x 1448 bytes fit one IPv4 datagram
    pkt = parse_frame(out[0])
    assert isinstance(pkt, Packet)
    assert (pkt.seq, pkt.ack, pkt.payload_end - pkt.payload_start) == (ISN + 1, 77, 40 * 1448)
    assert out[0][pkt.payload_start :] == payload[:1448] * 40


def test_a_merged_segment_never_exceeds_an_ipv4_datagram() -> None:
    frames = [tcp_frame(ISN + 1 + k * 1448, 77, "A", b"z" * 1448, dport=40000) for k in range(100)]
    out, _ = _coalesced(frames, False, 10**9)
    assert len(out) == 3  # 45 + 45 + 10 segments
    for frame in out:
        pkt = parse_frame(frame)
        assert isinstance(pkt, Packet)
        assert pkt.payload_end - 14 <= 65535
    assert sum(len(f) - 54 for f in out) == 100 * 1448


def test_bare_acks_go_as_they_came_and_end_a_run() -> None:
    frames = [
        tcp_frame(ISN + 1, CLIENT_ISN + 100, "A", b"a" * 10, dport=40000),
        tcp_frame(ISN + 11, CLIENT_ISN + 200, "A", dport=40000),
        tcp_frame(ISN + 11, CLIENT_ISN + 200, "A", dport=40000, window=10),  # window update
        tcp_frame(ISN + 11, CLIENT_ISN + 200, "A", b"b" * 10, dport=40000),
        tcp_frame(ISN + 21, CLIENT_ISN + 200, "A", b"c" * 10, dport=40000),
    ]
    out, count = _coalesced(frames, False, 10**9)
    assert count == 4 and out[:3] == frames[:3]
    pkt = parse_frame(out[3])
    assert isinstance(pkt, Packet)
    assert out[3][pkt.payload_start : pkt.payload_end] == b"b" * 10 + b"c" * 10


def test_other_frames_and_other_hosts_go_as_they_came() -> None:
    frames = [
        arp_frame(),
        tcp_frame(ISN + 1, 9, "A", b"a" * 10, dport=40000),
        tcp_frame(ISN + 11, 9, "A", b"b" * 10, dport=40000),
        udp_frame(b"dns"),  # no run goes past a frame that is not plain IPv4/TCP
        tcp_frame(ISN + 21, 9, "A", b"c" * 10, dport=40000),
        tcp_frame(ISN + 31, 9, "AF", b"d" * 10, dport=40000),  # FIN: as it came
        tcp_frame(ISN + 1, 9, "A", b"e" * 10, src=CLIENT, dst=GUEST, sport=40000, dport=80),
    ]
    out, count = _coalesced(frames, True, 10**9)
    assert count == 6
    assert out[0] == frames[0] and out[2:] == frames[3:]
    pkt = parse_frame(out[1])
    assert isinstance(pkt, Packet)
    assert out[1][pkt.payload_start : pkt.payload_end] == b"a" * 10 + b"b" * 10


def test_nothing_to_merge_forwards_the_buffer_itself() -> None:
    frames = [tcp_frame(ISN + 1, 9, "A", b"a"), tcp_frame(ISN + 1, 9, "A", b"a", dport=1)]
    stream = encode_frames(frames)
    buf, spans = Splitter().feed(stream)
    chunks, count = coalesce(buf, spans, [plain_tcp(buf, s, e, v) for _, s, e, v in spans], False)
    assert chunks == [buf] and count == 2


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=120),  # garbage a broken guest or chardev sends
            st.builds(
                lambda seq, size, pad: tcp_frame(seq, 9, "A", b"q" * size, pad_to=pad),
                st.integers(0, 2**32 - 1),
                st.integers(0, 60),
                st.sampled_from([0, 60, 200]),
            ),
        ),
        max_size=30,
    ),
    vnet=st.booleans(),
)
def test_any_frames_at_all_coalesce_into_frames_the_comparator_decodes(
    frames: list[bytes], vnet: bool
) -> None:
    out, counted = _coalesced(frames, vnet, 10**9)
    assert counted == len(out) <= len(frames)
    assert sum(len(f) for f in out) <= sum(len(f) for f in frames)
