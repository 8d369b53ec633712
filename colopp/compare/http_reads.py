"""Classifies the client's HTTP requests to the guest as reads or writes (pure, no I/O).

Fed with client->guest frames (from the primary's filter-mirror), it answers one question for
:mod:`~colopp.compare.prerelease`: does a guest segment acknowledge only client bytes that
were complete *read* requests, and has no write been seen since the last checkpoint?

A **read** is a request whose method is one of the configured read methods (GET, HEAD), whose
target starts with a configured prefix, and which carries no body. Everything else a client
sends to the guest is a **write**, conservatively: other methods, other paths, non-HTTP bytes,
UDP payload, bytes after a gap in the client's sequence space, an over-long request head, and
everything on a connection whose framing was lost (a chunked body). Retransmitted client bytes
are classified once. ICMP and TCP segments without payload (SYN, ACK, FIN, RST) are neither.
"""

from __future__ import annotations

from colopp.compare.packet import ICMP, RST, SYN, TCP, FlowKey, Packet

MASK = 0xFFFFFFFF
HALF = 0x80000000
#: A request head longer than this is not parsed (counted as a write).
MAX_HEAD_BYTES = 8192
#: Client connections tracked; past this the table is forgotten (coverage lost, never granted).
MAX_CLIENT_CONNECTIONS = 65536


def _after(a: int, b: int) -> bool:
    return 0 < ((a - b) & MASK) < HALF


class _ClientStream:
    """Parse state of one client->guest TCP byte stream."""

    __slots__ = ("body_left", "head", "head_start", "lost", "next_seq", "reads_from", "reads_upto")

    def __init__(self, seq: int) -> None:
        self.next_seq = seq
        self.head = bytearray()
        self.head_start = seq
        self.body_left = 0
        self.lost = False
        # The client bytes in (reads_from, reads_upto] are all complete read requests.
        self.reads_from = seq
        self.reads_upto: int | None = None


class ReadClassifier:
    """HTTP read/write classification of client requests, per guest connection.

    Connections are keyed like the comparator's: the guest->client 5-tuple.
    """

    def __init__(self, methods: tuple[str, ...], prefixes: tuple[str, ...]) -> None:
        self.methods = frozenset(m.encode("ascii") for m in methods)
        self.prefixes = tuple(p.encode("ascii") for p in prefixes)
        self.write_seen = False
        self.read_requests = 0
        self.write_requests = 0
        self._streams: dict[FlowKey, _ClientStream] = {}

    # ---- queries -------------------------------------------------------------------------

    def covers(self, key: FlowKey, ack: int) -> bool:
        """True when no write was seen since the last checkpoint and the client bytes that
        ``ack`` acknowledges on connection ``key`` end a run of complete read requests."""
        if self.write_seen:
            return False
        stream = self._streams.get(key)
        if stream is None or stream.reads_upto is None or stream.lost:
            return False
        return _after(ack, stream.reads_from) and not _after(ack, stream.reads_upto)

    # ---- input ---------------------------------------------------------------------------

    def on_checkpoint(self) -> None:
        """Everything the client sent so far is in the synchronized state: re-arm."""
        self.write_seen = False

    def observe(self, pkt: Packet, frame: bytes) -> FlowKey | None:
        """Take one client->guest frame; return the guest-side key whose read coverage grew."""
        payload = frame[pkt.payload_start : pkt.payload_end]
        if pkt.kind != TCP:
            if payload and pkt.kind != ICMP:
                self._write()
            return None
        _, src, dst, sport, dport = pkt.key
        key: FlowKey = (TCP, dst, src, dport, sport)
        stream = self._streams.get(key)
        if pkt.flags & RST:
            self._streams.pop(key, None)
            return None
        if pkt.flags & SYN:
            if payload:
                self._write()  # TCP Fast Open data: not classified
            self._track(key, _ClientStream((pkt.seq + 1) & MASK))
            return None
        if not payload:
            return None
        if stream is None:
            # First seen mid-stream: bytes before this one are unknown, never covered.
            stream = self._track(key, _ClientStream(pkt.seq))
        gap = (pkt.seq - stream.next_seq) & MASK
        if gap >= HALF:
            seen = (stream.next_seq - pkt.seq) & MASK
            if seen >= len(payload):
                return None  # a retransmission: classified when first seen
            payload = payload[seen:]
        elif gap:
            stream.lost = True  # bytes we never saw: cannot tell where requests start
        start = stream.next_seq
        stream.next_seq = (start + len(payload)) & MASK
        if stream.lost:
            self._write()
            return None
        return key if self._parse(stream, payload, start) else None

    # ---- parsing -------------------------------------------------------------------------

    def _track(self, key: FlowKey, stream: _ClientStream) -> _ClientStream:
        if len(self._streams) >= MAX_CLIENT_CONNECTIONS and key not in self._streams:
            self._streams.clear()
        self._streams[key] = stream
        return stream

    def _write(self) -> None:
        self.write_seen = True
        self.write_requests += 1

    def _parse(self, stream: _ClientStream, data: bytes, start: int) -> bool:
        """Consume ``data`` (client bytes from sequence ``start``); True if a read completed."""
        grew = False
        i = 0
        while i < len(data):
            if stream.body_left:
                take = min(stream.body_left, len(data) - i)
                stream.body_left -= take
                i += take
                continue
            if not stream.head:
                stream.head_start = (start + i) & MASK
            before = len(stream.head)
            stream.head += data[i:]
            end = stream.head.find(b"\r\n\r\n")
            if end < 0:
                self._check_partial(stream)
                return grew
            i += end + 4 - before
            head = bytes(stream.head[:end])
            stream.head.clear()
            body = self._body_length(head)
            if body == 0 and self._is_read(head):
                self.read_requests += 1
                if stream.reads_upto != stream.head_start:
                    stream.reads_from = stream.head_start
                stream.reads_upto = (start + i) & MASK
                grew = True
                continue
            self._write()
            stream.reads_upto = None
            if body is None:
                stream.lost = True
                return grew
            stream.body_left = body
        return grew

    def _check_partial(self, stream: _ClientStream) -> None:
        # Flag a write as soon as its request line is known: the earlier, the safer.
        head = stream.head
        if len(head) > MAX_HEAD_BYTES:
            stream.lost = True
            stream.reads_upto = None
            self._write()
            return
        line_end = head.find(b"\r\n")
        if line_end >= 0 and not self._is_read(bytes(head[:line_end])):
            self.write_seen = True

    def _is_read(self, head: bytes) -> bool:
        line = head.split(b"\r\n", 1)[0]
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return False
        method, target, _ = parts
        return (
            method in self.methods
            and b".." not in target
            and any(target.startswith(p) for p in self.prefixes)
        )

    @staticmethod
    def _body_length(head: bytes) -> int | None:
        """Body bytes after this head: 0, a Content-Length, or None when unknown."""
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                return None
            name = name.strip().lower()
            if name == b"transfer-encoding":
                return None
            if name == b"content-length":
                text = value.strip()
                if not text.isdigit():
                    return None
                length = int(text)
        return length
