"""Classifies the client's requests to the guest as reads or writes (pure, no I/O).

Fed with client->guest frames (from the primary's filter-mirror), it answers one question for
:mod:`~colopp.compare.prerelease`: does a guest segment acknowledge only client bytes that
were complete *read* requests, and has no write that could change their answers been seen
since the last checkpoint (:mod:`~colopp.compare.scope`)?

Two protocols: HTTP/1.x on every connection, and Redis RESP (:mod:`~colopp.compare.resp_reads`)
on connections to the configured guest ports. An HTTP **read** is a request whose method is one
of the configured read methods (GET, HEAD), whose target starts with a configured prefix, and
which carries no body; its resource is its path. Everything else a client sends to the guest is
a **write**, conservatively: other methods, other paths, non-HTTP bytes, UDP payload, bytes
after a gap in the client's sequence space, an over-long request head, and everything on a
connection whose framing was lost (a chunked body). ICMP and TCP segments without payload (SYN,
ACK, FIN, RST) are neither.

**The classifier sees what the guest saw.** A segment whose IPv4 or TCP checksum (over IPv4 or
IPv6) is wrong is dropped by the guest's stack, so it is ignored here too (counted in
``bad_checksum_frames``).
Retransmitted client bytes are classified once, after checking that they are the bytes seen
the first time: a retransmission that differs, or that overlaps bytes no longer remembered,
could have reached the guest in place of the first copy, so the connection's framing is lost
(a write to everything).
"""

from __future__ import annotations

from collections.abc import Iterable

from colopp.compare.ipv6 import tcp_checksum_ok
from colopp.compare.packet import ICMP, ICMPV6, RST, SYN, TCP, FlowKey, Packet
from colopp.compare.resp_reads import MalformedResp, classify, parse_command
from colopp.compare.scope import Window, WriteScope

MASK = 0xFFFFFFFF
HALF = 0x80000000
#: A request head longer than this is not parsed (counted as a write).
MAX_HEAD_BYTES = 8192
#: Client connections tracked; past this the table is forgotten (coverage lost, never granted).
MAX_CLIENT_CONNECTIONS = 65536
#: Client segments remembered per connection to check retransmissions against.
RECENT_SEGMENTS = 2
#: Buffered bytes of one unfinished RESP command, at most.
MAX_RESP_BUFFER = 1 << 20


#: Bytes a path may contain to count as the name of one resource (no escapes).
_PATH_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-~"


def _after(a: int, b: int) -> bool:
    return 0 < ((a - b) & MASK) < HALF


def checksums_ok(frame: bytes, ip: int, pkt: Packet) -> bool:
    """True unless the IPv4 header or TCP checksum of ``frame`` (IP header at ``ip``; IPv6
    too: :func:`~colopp.compare.ipv6.tcp_checksum_ok`) is provably wrong. One's-complement
    sums via big integers: 2**16 = 1 (mod 0xFFFF)."""
    if ip >= 2 and frame[ip - 2 : ip] == b"\x86\xdd":
        return tcp_checksum_ok(frame, ip, pkt)
    if ip < 2 or frame[ip - 2 : ip] != b"\x08\x00":
        return True  # not where the parser found it: cannot verify, assume the guest took it
    ihl = (frame[ip] & 0x0F) << 2
    total = int.from_bytes(frame[ip + 2 : ip + 4], "big")
    if ip + total != pkt.payload_end or ihl < 20:
        return True
    if int.from_bytes(frame[ip : ip + ihl], "big") % 0xFFFF:
        return False
    _, src, dst, _, _ = pkt.key
    length = total - ihl
    pseudo = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + TCP + length
    segment = frame[ip + ihl : ip + total]
    if length & 1:
        segment += b"\0"
    return (pseudo + int.from_bytes(segment, "big")) % 0xFFFF == 0


class _ClientStream:
    """Parse state of one client->guest TCP byte stream."""

    __slots__ = (
        "body_left",
        "head",
        "head_ack",
        "head_start",
        "last_ack",
        "lost",
        "next_seq",
        "reads_from",
        "reads_upto",
        "recent",
        "resp",
        "window",
    )

    def __init__(self, seq: int, resp: bool) -> None:
        self.next_seq = seq
        self.head = bytearray()
        self.head_start = seq
        self.head_ack: int | None = None  # the client's ACK when the current request began
        self.last_ack: int | None = None  # the client's ACK when the previous request began
        self.body_left = 0
        self.lost = False
        self.resp = resp
        # The client bytes in (reads_from, reads_upto] are all complete read requests.
        self.reads_from = seq
        self.reads_upto: int | None = None
        self.recent: list[tuple[int, bytes]] = []
        self.window = Window()


class ReadClassifier:
    """Read/write classification of client requests, per guest connection.

    Connections are keyed like the comparator's: the guest->client 5-tuple. ``scope`` is
    ``global`` or ``key`` (:mod:`~colopp.compare.scope`); ``resp_ports``: guest TCP ports
    that speak RESP (their connections are parsed as Redis commands, not HTTP).
    """

    def __init__(
        self,
        methods: tuple[str, ...],
        prefixes: tuple[str, ...],
        scope: str = "global",
        resp_ports: Iterable[int] = (),
        http: bool = True,
    ) -> None:
        self.methods = frozenset(m.encode("ascii") for m in methods)
        self.prefixes = tuple(p.encode("ascii") for p in prefixes)
        self.http = http
        self.resp_ports = frozenset(resp_ports)
        self.scope = WriteScope(scope)
        self.read_requests = 0
        self.write_requests = 0
        self.bad_checksum_frames = 0
        self.blind = False  # the client copy was lost: nothing is covered any more
        #: When a list: every request classified is appended, as (read, keys) (keys None:
        #: of unknown reach); host B's write fence reads it (``colopp/ingress/fence.py``).
        self.requests: list[tuple[bool, tuple[bytes, ...] | None]] | None = None
        self._streams: dict[FlowKey, _ClientStream] = {}

    @property
    def write_seen(self) -> bool:
        """True when a write was seen since the last checkpoint (or the client copy is lost)."""
        return self.blind or self.scope.write_seen

    # ---- queries -------------------------------------------------------------------------

    def covers(self, key: FlowKey, ack: int) -> bool:
        """True when the client bytes that ``ack`` acknowledges on connection ``key`` end a
        run of complete read requests and no write that could change their answers was seen
        since the last checkpoint."""
        if self.blind:
            return False
        stream = self._streams.get(key)
        if stream is None or stream.reads_upto is None or stream.lost:
            return False
        if not self.scope.armed(stream.window):
            return False
        return _after(ack, stream.reads_from) and not _after(ack, stream.reads_upto)

    # ---- input ---------------------------------------------------------------------------

    def on_checkpoint(self) -> None:
        """Everything the client sent so far is in the synchronized state: re-arm."""
        self.scope.on_checkpoint()

    def lose_client(self) -> None:
        """The client copy stopped: requests can no longer be followed. Nothing is covered
        from now on, including reads seen before (a write may have reached the guest
        unseen)."""
        self.blind = True
        self._streams.clear()
        self.scope.clear()

    def lost_write(self, key: FlowKey, count: int = 1) -> bool:
        """:meth:`observe`'s cheap path without a parse: ``count`` client segments with
        payload and neither SYN nor RST on connection ``key`` (guest -> client) whose stream
        is lost count as writes, as :meth:`observe` would count them. True when they were
        taken so (or nothing is followed any more); False: nothing done, call
        :meth:`observe`."""
        if self.blind:
            return True  # observe ignores every frame
        stream = self._streams.get(key)
        if stream is None or not stream.lost:
            return False
        self._write(None)  # one write disarms as much as ``count`` of them
        self.write_requests += count - 1
        if self.requests is not None:
            self.requests += [(False, None)] * (count - 1)
        return True

    def observe(self, pkt: Packet, frame: bytes, vnet_hdr_len: int = 0) -> FlowKey | None:
        """Take one client->guest frame; return the guest-side key whose read coverage grew."""
        if self.blind:
            return None
        start, end = pkt.payload_start, pkt.payload_end
        if pkt.kind != TCP:
            if end > start and pkt.kind not in (ICMP, ICMPV6):
                self._write(None)
            return None
        _, src, dst, sport, dport = pkt.key
        key: FlowKey = (TCP, dst, src, dport, sport)
        stream = self._streams.get(key)
        if stream is not None and stream.lost and end > start and not pkt.flags & (SYN | RST):
            # Nothing on this connection is classified again before its next SYN: every
            # segment counts as a write, unchecked (a bad checksum, which the guest drops,
            # then disarms what it need not; a retransmission too). The cheap path of a bulk
            # upload on a connection that is not a service's (measured: 6.8 us a frame with
            # the checksum and the seq bookkeeping, on the primary host's busiest CPU).
            self._write(None)
            return None
        if end > start and not self._trusted(frame, vnet_hdr_len, pkt):
            self.bad_checksum_frames += 1
            return None  # the guest drops it: so do we
        if pkt.flags & RST:
            if stream is not None:
                self._forget(key, stream)
            return None
        if pkt.flags & SYN:
            if end > start:
                self._write(None)  # TCP Fast Open data: not classified
            if stream is not None:
                self._forget(key, stream)
            self._track(key, _ClientStream((pkt.seq + 1) & MASK, dport in self.resp_ports))
            return None
        if end == start:
            return None
        if stream is None:
            # First seen mid-stream: bytes before this one are unknown, never covered.
            stream = self._track(key, _ClientStream(pkt.seq, dport in self.resp_ports))
        return self._segment(key, stream, frame[start:end], pkt.seq, pkt.ack)

    def _segment(
        self, key: FlowKey, stream: _ClientStream, payload: bytes, seq: int, ack: int
    ) -> FlowKey | None:
        """A segment's payload, in the order it came: classify the bytes it adds."""
        gap = (seq - stream.next_seq) & MASK
        if gap >= HALF:
            seen = (stream.next_seq - seq) & MASK
            if not self._same_as_before(stream, seq, payload[:seen]):
                stream.lost = True  # the guest may hold other bytes than we classified
                self._write(None)
                return None
            if seen >= len(payload):
                return None  # a retransmission: classified when first seen
            payload = payload[seen:]
            seq = stream.next_seq
        elif gap:
            stream.lost = True  # bytes we never saw: cannot tell where requests start
        stream.next_seq = (seq + len(payload)) & MASK
        recent = stream.recent
        recent.append((seq, payload))
        if len(recent) > RECENT_SEGMENTS:
            del recent[0]
        if stream.lost:
            self._write(None)
            return None
        grew = self._parse_resp(stream, payload, seq, ack) if stream.resp else False
        if not stream.resp:
            grew = self._parse_http(stream, payload, seq, ack) if self.http else False
            if not self.http:
                stream.lost = True
                self._write(None)
        return key if grew else None

    # ---- stream bookkeeping --------------------------------------------------------------

    @staticmethod
    def _trusted(frame: bytes, vnet_hdr_len: int, pkt: Packet) -> bool:
        if vnet_hdr_len and frame[0] & 0x03:
            return True  # NEEDS_CSUM / DATA_VALID: the host vouches for it, the guest too
        return checksums_ok(frame, vnet_hdr_len + 14, pkt)

    @staticmethod
    def _same_as_before(stream: _ClientStream, seq: int, data: bytes) -> bool:
        """True when ``data`` at ``seq`` equals what remembered segments held there."""
        pos = 0
        while pos < len(data):
            here = (seq + pos) & MASK
            for first, seg in stream.recent:
                offset = (here - first) & MASK
                if offset < len(seg):
                    take = min(len(seg) - offset, len(data) - pos)
                    if seg[offset : offset + take] != data[pos : pos + take]:
                        return False
                    pos += take
                    break
            else:
                return False  # no longer remembered: unverifiable
        return True

    def _track(self, key: FlowKey, stream: _ClientStream) -> _ClientStream:
        if len(self._streams) >= MAX_CLIENT_CONNECTIONS and key not in self._streams:
            self._streams.clear()
            self.scope.clear()
        self._streams[key] = stream
        return stream

    def _forget(self, key: FlowKey, stream: _ClientStream) -> None:
        self.scope.drop(stream.window)
        self._streams.pop(key, None)

    def _write(self, keys: tuple[bytes, ...] | None) -> None:
        self.scope.write(keys)
        self.write_requests += 1
        if self.requests is not None:
            self.requests.append((False, keys))

    def _begin(self, stream: _ClientStream, client_ack: int) -> None:
        """A request begins: if the client received guest bytes since its previous request,
        the answers before are delivered and the window restarts."""
        last = stream.head_ack
        if last is not None and client_ack != last:
            self.scope.reset(stream.window)
        stream.head_ack = client_ack

    def _request(
        self, stream: _ClientStream, read: bool, keys: tuple[bytes, ...] | None, end: int
    ) -> bool:
        """A complete request ending at client sequence ``end``; True if it was a read."""
        if read and keys is not None:
            self.read_requests += 1
            if self.requests is not None:
                self.requests.append((True, keys))
            self.scope.add(stream.window, keys, False)
            if stream.reads_upto != stream.head_start:
                stream.reads_from = stream.head_start
            stream.reads_upto = end
            return True
        self.scope.add(stream.window, keys or (), True)
        self._write(keys)
        stream.reads_upto = None
        return False

    # ---- RESP ----------------------------------------------------------------------------

    def _parse_resp(self, stream: _ClientStream, data: bytes, start: int, ack: int) -> bool:
        """Consume ``data`` (client bytes from sequence ``start``); True if a read completed."""
        buf = stream.head
        if not buf:
            stream.head_start = start
            self._begin(stream, ack)
        base = stream.head_start  # the client sequence number of buf[0]
        buf += data
        grew = False
        pos = 0
        try:
            while (cut := parse_command(buf, pos)) is not None:
                end, args = cut
                read, keys = classify(args)
                stream.head_start = (base + pos) & MASK
                grew |= self._request(stream, read, keys, (base + end) & MASK)
                pos = end
                if pos < len(buf):
                    self._begin(stream, ack)  # the next command began in this segment
        except MalformedResp:
            stream.lost = True
            stream.reads_upto = None
            self._write(None)
            buf.clear()
            return grew
        del buf[:pos]
        stream.head_start = (base + pos) & MASK
        if len(buf) > MAX_RESP_BUFFER:
            stream.lost = True
            stream.reads_upto = None
            self._write(None)
        return grew

    # ---- HTTP ----------------------------------------------------------------------------

    def _parse_http(self, stream: _ClientStream, data: bytes, start: int, ack: int) -> bool:
        """Consume ``data`` (client bytes from sequence ``start``); True if a read completed."""
        grew = False
        i = 0
        size = len(data)
        while i < size:
            if stream.body_left:
                take = min(stream.body_left, size - i)
                stream.body_left -= take
                i += take
                continue
            if not stream.head:
                stream.head_start = (start + i) & MASK
                self._begin(stream, ack)
                end = data.find(b"\r\n\r\n", i)
                if 0 <= end - i <= MAX_HEAD_BYTES:
                    # The common case: a whole head in one segment, nothing buffered.
                    head = data[i:end]
                    i = end + 4
                    grew |= self._complete(stream, head, (start + i) & MASK)
                    if stream.lost:
                        return grew
                    continue
            before = len(stream.head)
            stream.head += data[i:]
            end = stream.head.find(b"\r\n\r\n")
            if end < 0:
                self._check_partial(stream)
                return grew
            i += end + 4 - before
            head = bytes(stream.head[:end])
            stream.head.clear()
            grew |= self._complete(stream, head, (start + i) & MASK)
            if stream.lost:
                return grew
        return grew

    def _complete(self, stream: _ClientStream, head: bytes, end: int) -> bool:
        """A whole request head ending at client sequence ``end``; True if it is a read."""
        body = self._body_length(head)
        read, keys = self._http_request(head)
        if body == 0 and read:
            return self._request(stream, True, keys, end)
        self._request(stream, False, keys, end)
        if body is None:
            stream.lost = True
        else:
            stream.body_left = body
        return False

    def _check_partial(self, stream: _ClientStream) -> None:
        # Flag a write as soon as its request line is known: the earlier, the safer.
        head = stream.head
        if len(head) > MAX_HEAD_BYTES:
            stream.lost = True
            stream.reads_upto = None
            self._write(None)
            return
        line_end = head.find(b"\r\n")
        if line_end >= 0:
            read, keys = self._http_request(bytes(head[:line_end]))
            if not read:
                self.scope.add(stream.window, keys or (), True)
                self.scope.write(keys)

    def _http_request(self, head: bytes) -> tuple[bool, tuple[bytes, ...] | None]:
        """(is a read, its resource); the resource is the path without the query, None when
        the request line is not one a prefix vouches for."""
        line_end = head.find(b"\r\n")
        parts = (head if line_end < 0 else head[:line_end]).split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return False, None
        method, target, _ = parts
        if not target.startswith(self.prefixes) or b".." in target:
            return False, None
        path = target.partition(b"?")[0]
        if self.scope.by_key and (path.translate(None, _PATH_BYTES) or b"//" in path):
            # Escapes and odd paths may name a resource under another spelling: this request
            # is not vouched for (a write to everything, never a read).
            return False, None
        return method in self.methods, (path,)

    @staticmethod
    def _body_length(head: bytes) -> int | None:
        """Body bytes after this head: 0, a Content-Length, or None when unknown."""
        lines = head.split(b"\r\n")
        if head.count(b":") >= len(lines) - 1:
            # Every header line may have its colon: look closer only when it matters.
            lower = head.lower()
            plain = b"content-length" not in lower and b"transfer-encoding" not in lower
            if plain and all(b":" in line for line in lines[1:]):
                return 0
        length = 0
        for line in lines[1:]:
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
