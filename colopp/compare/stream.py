"""The secondary's TCP byte stream of one connection, kept until the primary's bytes match it."""

from __future__ import annotations

from collections import deque

from colopp.compare.counters import Counters


class SecondaryStream:
    """Secondary payload bytes by stream position, from :attr:`base` (compared up to) onward.

    Bytes before ``base`` were already compared and are forgotten. Contiguous bytes live in
    one buffer up to :attr:`end`; segments past a gap wait in a small bounded map until the
    gap fills. While ``base`` is unknown (a connection first seen mid-stream) every segment
    waits there. The ``held_secondary_*`` gauges of ``counters`` follow what is stored.

    On a connection first seen mid-stream, comparison starts wherever the primary's first
    payload does (:attr:`floor`); nothing below it was ever compared, so secondary bytes
    below it are kept too (a small bounded map) and primary bytes below it are compared
    against them (:meth:`low_bytes`), never taken for retransmissions.
    """

    __slots__ = (
        "_buf",
        "_chunks",
        "_low",
        "_pending",
        "_skip",
        "base",
        "counters",
        "end",
        "floor",
        "max_pending",
        "pending_bytes",
    )

    def __init__(self, counters: Counters, max_pending: int = 256) -> None:
        self.counters = counters
        self.base: int | None = None
        self.end = 0
        self.max_pending = max_pending
        self.pending_bytes = 0
        self._buf = bytearray()
        self._skip = 0
        # (end position, arrival time) of each stored chunk: for the secondary timeout.
        self._chunks: deque[tuple[int, float]] = deque()
        self._pending: dict[int, tuple[bytes, float]] = {}
        # Mid-stream connections only: bytes below ``floor``, by position.
        self.floor: int | None = None
        self._low: dict[int, tuple[bytes, float]] = {}

    def held(self) -> tuple[int, int]:
        """(chunks, bytes) currently held."""
        return (
            len(self._chunks) + len(self._pending) + len(self._low),
            len(self._buf) - self._skip + self.pending_bytes + self._low_bytes_held(),
        )

    def _low_bytes_held(self) -> int:
        return sum(len(d) for d, _ in self._low.values()) if self._low else 0

    def oldest_arrival(self) -> float | None:
        """Arrival time of the oldest byte not yet compared, if any."""
        times = [t for _, t in self._pending.values()]
        times += [t for _, t in self._low.values()]
        if self._chunks:
            times.append(self._chunks[0][1])
        return min(times) if times else None

    def reset(self, base: int | None) -> None:
        """Forget every byte (stale secondary output) and restart at ``base``."""
        frames, size = self.held()
        self.counters.held_secondary_frames -= frames
        self.counters.held_secondary_bytes -= size
        self.base = base
        self.end = base or 0
        self._buf.clear()
        self._skip = 0
        self._chunks.clear()
        self._pending.clear()
        self.pending_bytes = 0
        self._low.clear()
        self.floor = None

    def restart_at(self, base: int) -> None:
        """After a checkpoint whose start (STOP) was not seen: compare from ``base`` on,
        keeping only the bytes parked past a gap at or after ``base``.

        Without the STOP mark the epochs cannot be told apart exactly (that is what the
        caller's STOP mark is for). Bytes contiguous with the compared ones are taken for
        the old epoch's (the secondary ran ahead of the primary: they must never meet the
        primary's new output); bytes parked past a gap at or after ``base`` for the new
        epoch's, sent after the secondary resumed and before the checkpoint's end was seen.
        """
        keep: list[tuple[int, bytes, float]] = []
        for pos, (data, arrival) in self._pending.items():
            if pos >= base:
                keep.append((pos, data, arrival))
        self.reset(base)
        for pos, data, arrival in sorted(keep, key=lambda k: k[0]):
            self.add(pos, data, arrival)

    def set_base(self, base: int, *, mid_stream: bool = False) -> None:
        """Start comparing at ``base``: keep only waiting bytes at or after it, unless
        ``mid_stream`` (nothing before ``base`` was compared): then ``base`` becomes
        :attr:`floor` and waiting bytes below it are kept as well."""
        pending = self._pending
        self._pending = {}
        self.reset(base)
        if mid_stream:
            self.floor = base
        for pos, (data, arrival) in pending.items():
            self.add(pos, data, arrival)

    def add(self, pos: int, data: bytes, now: float) -> bool:
        """Store ``data`` found at stream position ``pos``; False if it had to be dropped.

        Bytes already held or already compared are ignored (a retransmission).
        """
        floor = self.floor
        if floor is not None and pos < floor:
            if not self._keep_low(pos, data[: floor - pos], now):
                return False
            if pos + len(data) <= floor:
                return True
            data = data[floor - pos :]
            pos = floor
        end = self.end
        if self.base is None or pos > end:
            return self._park(pos, data, now)
        new_end = pos + len(data)
        if new_end <= end:
            return True
        self._buf += data if pos == end else data[end - pos :]
        self.end = new_end
        self._chunks.append((new_end, now))
        c = self.counters
        c.held_secondary_frames += 1
        c.held_secondary_bytes += new_end - end
        if self._pending:
            self._merge_pending()
        return True

    def was_compared(self, start: int, stop: int) -> bool:
        """True when every byte in [start, stop) was compared before (a retransmission)."""
        base = self.base
        return base is not None and stop <= base and (self.floor is None or start >= self.floor)

    def low_bytes(self, start: int, stop: int) -> bytes | None:
        """The secondary's bytes in [start, stop) below :attr:`floor`, or None while any of
        them is missing."""
        out = bytearray()
        cur = start
        for pos in sorted(self._low):
            if pos > cur:
                break
            data = self._low[pos][0]
            end = pos + len(data)
            if end > cur:
                out += data[cur - pos : min(stop, end) - pos]
                cur = min(stop, end)
                if cur >= stop:
                    return bytes(out)
        return None

    def _keep_low(self, pos: int, data: bytes, now: float) -> bool:
        old = self._low.get(pos)
        if old is not None and len(old[0]) >= len(data):
            return True
        if old is None and len(self._low) >= self.max_pending:
            return False
        grow = len(data) - (len(old[0]) if old else 0)
        self.counters.held_secondary_bytes += grow
        self.counters.held_secondary_frames += old is None
        self._low[pos] = (data, now)
        return True

    def get(self, start: int, stop: int) -> bytearray:
        """The held bytes in [start, stop) (a copy); the caller checks
        ``base <= start <= stop <= end``."""
        off = self._skip + start - (self.base or 0)
        return self._buf[off : off + stop - start]

    def holds_at(self, frame: bytes, offset: int, size: int) -> bool:
        """True when ``frame[offset:offset + size]`` equals the ``size`` bytes held at
        :attr:`base`; the caller checks ``base + size <= end``."""
        skip = self._skip
        return frame.startswith(self._buf[skip : skip + size], offset)

    def advance(self, pos: int) -> None:
        """Mark everything before ``pos`` (at most :attr:`end`) compared and drop it."""
        base = self.base
        if base is None or pos <= base:
            return
        consumed = min(pos, self.end) - base
        self._skip += consumed
        self.base = pos
        self.end = max(self.end, pos)
        if self._skip >= len(self._buf):
            self._buf.clear()
            self._skip = 0
        elif self._skip > 65536 and self._skip * 2 > len(self._buf):
            del self._buf[: self._skip]
            self._skip = 0
        c = self.counters
        c.held_secondary_bytes -= consumed
        chunks = self._chunks
        while chunks and chunks[0][0] <= pos:
            chunks.popleft()
            c.held_secondary_frames -= 1
        if self._pending:
            self._merge_pending()

    def _park(self, pos: int, data: bytes, now: float) -> bool:
        old = self._pending.get(pos)
        if old is not None and len(old[0]) >= len(data):
            return True
        if old is None and len(self._pending) >= self.max_pending:
            return False
        grow = len(data) - (len(old[0]) if old else 0)
        self.pending_bytes += grow
        self.counters.held_secondary_bytes += grow
        self.counters.held_secondary_frames += old is None
        self._pending[pos] = (data, now)
        return True

    def _merge_pending(self) -> None:
        if self.base is None:
            return
        c = self.counters
        for pos in sorted(self._pending):
            end = self.end
            if pos > end:
                break
            data, arrival = self._pending.pop(pos)
            self.pending_bytes -= len(data)
            c.held_secondary_bytes -= len(data)
            c.held_secondary_frames -= 1
            new_end = pos + len(data)
            if new_end > end:
                self._buf += data[end - pos :]
                self.end = new_end
                self._chunks.append((new_end, arrival))
                c.held_secondary_frames += 1
                c.held_secondary_bytes += new_end - end
