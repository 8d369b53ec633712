"""The per-connection sequence-offset table one translator applies in front of one guest.

A guest's TCP sequence space for a connection may differ from the one its client sees: the
connection was opened since the last checkpoint, so the secondary guest picked its own
initial sequence number (ISN), and after a failover that guest serves the connection with
it. ``delta`` is ``guest_seq - client_seq`` (mod 2**32) for that guest: its output's ``seq``
is lowered by ``delta`` and the client's ``ack`` (and SACK blocks) raised by it.

Only connections with a non-zero delta are kept: everything else passes untouched.

An entry ends when the connection really ended -- an RST, or a FIN each way with both FINs
acknowledged -- and is dropped :data:`ENDED_LINGER_S` later (so retransmitted FINs and the
final ACKs of TIME_WAIT are still translated). An entry with no traffic at all for
:data:`IDLE_TIMEOUT_S` (24 h, far beyond Linux's TCP keep-alive default of 2 h 11 min to
declare a peer dead) is dropped too. Times come from the caller (a clock value in seconds):
the table itself never reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from colopp.errors import ConfigError

MOD = 1 << 32
MASK = MOD - 1
#: Drop an ended connection's entry this long after it ended (Linux's TIME_WAIT is 60 s).
ENDED_LINGER_S = 120.0
#: Drop an entry that saw no packet for this long (TCP keep-alive gives up after ~2 h 11 min).
IDLE_TIMEOUT_S = 24 * 3600.0

#: A client SYN on an entry idle this long is a new connection reusing the 4-tuple (the
#: client forgot the old one without a FIN or RST reaching us), not a retransmission.
SYN_REUSE_IDLE_S = 30.0

ConnKey = tuple[int, int, int, int]
"""(guest address, guest port, peer address, peer port); addresses as 32-bit ints."""


@dataclass(slots=True)
class Entry:
    """One translated connection. Sequence numbers in ``*_fin_end`` are in client space."""

    delta: int
    last_seen: float
    guest_fin_end: int | None = None  # client-space seq just after the guest's FIN
    peer_fin_end: int | None = None  # seq just after the peer's FIN
    guest_fin_acked: bool = False
    peer_fin_acked: bool = False
    reset: bool = False
    ended_at: float | None = None
    # Pending (not proven adopted at the promotion that recorded it): the client-visible
    # ISN. The client's first ACK decides: near ``isn_client`` the client took the primary's
    # ISN (translate from then on), near ``isn_client + delta`` it took the promoted
    # guest's own (no translation: the entry is dropped). See colopp.rewrite.segment.
    isn_client: int | None = None

    def observe_guest(self, seq_client: int, ack: int, flags: int, length: int, now: float) -> None:
        """Record a guest segment (``seq_client`` already translated; ``length`` of payload)."""
        self.last_seen = now
        if flags & _RST:
            self._end(now, reset=True)
            return
        self._revive()
        if flags & _FIN:
            self.guest_fin_end = (seq_client + length + 1) & MASK
        if flags & _ACK and self.peer_fin_end is not None and _after_eq(ack, self.peer_fin_end):
            self.peer_fin_acked = True
        self._maybe_closed(now)

    def observe_peer(self, seq: int, ack_client: int, flags: int, length: int, now: float) -> None:
        """Record a peer segment (``ack_client`` as the peer sent it, in client space)."""
        self.last_seen = now
        if flags & _RST:
            self._end(now, reset=True)
            return
        self._revive()
        if flags & _FIN:
            self.peer_fin_end = (seq + length + 1) & MASK
        if (
            flags & _ACK
            and self.guest_fin_end is not None
            and _after_eq(ack_client, self.guest_fin_end)
        ):
            self.guest_fin_acked = True
        self._maybe_closed(now)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def _maybe_closed(self, now: float) -> None:
        if self.guest_fin_acked and self.peer_fin_acked and self.ended_at is None:
            self.ended_at = now

    def _end(self, now: float, *, reset: bool) -> None:
        self.reset = reset
        if self.ended_at is None:
            self.ended_at = now

    def _revive(self) -> None:
        # An RST outside the receiver's window is ignored by the guest: traffic after it
        # means the connection lives on.
        if self.reset:
            self.reset = False
            self.ended_at = None


_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_ACK = 0x10


def _after_eq(a: int, b: int) -> bool:
    """``a >= b`` in 32-bit sequence arithmetic."""
    return ((a - b) & MASK) < (1 << 31)


class OffsetTable:
    """Connections whose guest sequence space differs from the client's, keyed by 4-tuple."""

    __slots__ = ("_entries", "decided")

    def __init__(self, entries: Mapping[ConnKey, Entry] | None = None) -> None:
        self._entries: dict[ConnKey, Entry] = dict(entries or {})
        #: A pending entry was decided since the owner last saved the table.
        self.decided = False

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[ConnKey]:
        return iter(self._entries)

    def get(self, key: ConnKey) -> Entry | None:
        return self._entries.get(key)

    def delta(self, key: ConnKey) -> int:
        entry = self._entries.get(key)
        return 0 if entry is None else entry.delta

    def set_delta(self, key: ConnKey, delta: int, now: float) -> None:
        """Translate ``key`` by ``delta`` from now on (a zero delta removes the entry)."""
        delta &= MASK
        if delta == 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = Entry(delta=delta, last_seen=now)

    def set_pending(self, key: ConnKey, delta: int, isn_client: int, now: float) -> None:
        """Translate ``key`` by ``delta`` once its client is seen to use ``isn_client``."""
        delta &= MASK
        if delta == 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = Entry(delta=delta, last_seen=now, isn_client=isn_client & MASK)

    def forget(self, key: ConnKey) -> None:
        """Drop ``key`` (a new connection reuses the 4-tuple)."""
        self._entries.pop(key, None)

    def expire(self, now: float) -> list[ConnKey]:
        """Drop entries that ended :data:`ENDED_LINGER_S` ago or idled :data:`IDLE_TIMEOUT_S`."""
        gone = [
            key
            for key, entry in self._entries.items()
            if (entry.ended_at is not None and now - entry.ended_at >= ENDED_LINGER_S)
            or now - entry.last_seen >= IDLE_TIMEOUT_S
        ]
        for key in gone:
            del self._entries[key]
        return gone

    def copy(self) -> OffsetTable:
        """An independent copy (what a checkpoint or a re-protection hands the secondary)."""
        return OffsetTable({key: replace(entry) for key, entry in self._entries.items()})

    def snapshot(self) -> list[dict[str, Any]]:
        """JSON-ready rows, for replication to the other host and for state files."""
        return [
            {
                "guest": [key[0], key[1]],
                "peer": [key[2], key[3]],
                "delta": entry.delta,
                "last_seen": entry.last_seen,
                "guest_fin_end": entry.guest_fin_end,
                "peer_fin_end": entry.peer_fin_end,
                "guest_fin_acked": entry.guest_fin_acked,
                "peer_fin_acked": entry.peer_fin_acked,
                "reset": entry.reset,
                "ended_at": entry.ended_at,
                "isn_client": entry.isn_client,
            }
            for key, entry in self._entries.items()
        ]

    @classmethod
    def from_snapshot(cls, rows: object) -> OffsetTable:
        """Rebuild a table from :meth:`snapshot` rows.

        Raises:
            ConfigError: ``rows`` is not a list of well-formed rows (nothing is half-loaded).
        """
        if not isinstance(rows, list):
            raise ConfigError("offset table snapshot must be a list of rows")
        entries: dict[ConnKey, Entry] = {}
        for index, row in enumerate(rows):
            try:
                key, entry = _row_entry(row)
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"offset table row {index} is malformed: {exc}") from exc
            entries[key] = entry
        return cls(entries)


def _row_entry(row: object) -> tuple[ConnKey, Entry]:
    if not isinstance(row, dict):
        raise TypeError("row is not an object")
    gaddr, gport = row["guest"]
    paddr, pport = row["peer"]
    key = (_u(gaddr, 32), _u(gport, 16), _u(paddr, 32), _u(pport, 16))
    delta = _u(row["delta"], 32)
    if delta == 0:
        raise ValueError("delta is 0")
    entry = Entry(
        delta=delta,
        last_seen=float(row["last_seen"]),
        guest_fin_end=_opt_u32(row.get("guest_fin_end")),
        peer_fin_end=_opt_u32(row.get("peer_fin_end")),
        guest_fin_acked=bool(row.get("guest_fin_acked", False)),
        peer_fin_acked=bool(row.get("peer_fin_acked", False)),
        reset=bool(row.get("reset", False)),
        ended_at=None if row.get("ended_at") is None else float(row["ended_at"]),
        isn_client=_opt_u32(row.get("isn_client")),
    )
    return key, entry


def _u(value: object, bits: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise ValueError(f"{value!r} is not a {bits}-bit unsigned integer")
    return value


def _opt_u32(value: object) -> int | None:
    return None if value is None else _u(value, 32)
