"""Receipts: the secondary *host* holds a client's bytes (issue #22, COLO++ issue #15).

A bare ACK of the guest (or any early segment) may leave before the secondary *guest*
acknowledged as much, provided the secondary *host* holds every client byte it acknowledges
and will hand them to the promoted guest should the primary die: the client then never
needs them again. The holder is the secondary host's input log (:mod:`colopp.ingress`),
which sits between the primary's mirror and the secondary QEMU; it sends receipts in-band,
on the secondary's output stream to the comparator, as frames of EtherType
:data:`ETHERTYPE_RECEIPT` (IEEE 802 local experimental 1), after every guest frame it
forwarded before (so a receipt never overtakes the guest ACK it relies on).

A receipt ``(key, start, end)`` promises: the host holds every client byte of connection
``key`` (guest -> client orientation, as the comparator keys it) in ``[start, end)``,
client sequence numbers (never rewritten: ``filter-rewriter`` maps only the guest's), and
keeps each until the secondary guest acknowledges it. With the secondary guest's own ACK
``s_ack``, an ACK number ``a`` is covered when ``start <= s_ack`` and ``a <= end``: the
guest has everything below ``s_ack``, the host the rest below ``end``. The safety argument
and what the host must do at failover: ``docs/architecture.md``, "Held ACKs, uploads, and
early ACKs from the secondary host's receipts".

Pure: no sockets. Frames carry ``MAGIC`` then ``count`` entries of :data:`ENTRY`: IP
version, guest address, client address (16 bytes each, big-endian), guest port, client
port, start, end (32-bit sequence numbers).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from colopp.compare.packet import TCP, FlowKey
from colopp.compare.seq import HALF, MASK

ETHERTYPE_RECEIPT = 0x88B5
_ETHERTYPE_BYTES = ETHERTYPE_RECEIPT.to_bytes(2, "big")
MAGIC = b"CLPR\x01"
_HEADER = struct.Struct("!6s6sH5sH")
ENTRY = struct.Struct("!B16s16sHHII")
#: Entries per frame: frames stay under a 1500-byte MTU.
MAX_ENTRIES = (1500 - _HEADER.size) // ENTRY.size


class Receipt(NamedTuple):
    """The host holds client bytes ``[start, end)`` (sequence numbers) of ``key``."""

    key: FlowKey
    start: int
    end: int


def encode_receipts(receipts: Iterable[Receipt]) -> list[bytes]:
    """Receipt frames (plain Ethernet, no vnet header), at most :data:`MAX_ENTRIES` each."""
    frames: list[bytes] = []
    batch: list[bytes] = []
    for r in receipts:
        _, guest, client, gport, cport = r.key
        version = 6 if guest > 0xFFFFFFFF or client > 0xFFFFFFFF else 4
        batch.append(
            ENTRY.pack(
                version,
                guest.to_bytes(16, "big"),
                client.to_bytes(16, "big"),
                gport,
                cport,
                r.start & MASK,
                r.end & MASK,
            )
        )
        if len(batch) == MAX_ENTRIES:
            frames.append(_frame(batch))
            batch = []
    if batch:
        frames.append(_frame(batch))
    return frames


def _frame(entries: list[bytes]) -> bytes:
    zero = bytes(6)
    return _HEADER.pack(zero, zero, ETHERTYPE_RECEIPT, MAGIC, len(entries)) + b"".join(entries)


def is_receipt_frame(frame: bytes, vnet_hdr_len: int = 0) -> bool:
    """True for a frame of EtherType :data:`ETHERTYPE_RECEIPT` (the hot path's test)."""
    return frame[vnet_hdr_len + 12 : vnet_hdr_len + 14] == _ETHERTYPE_BYTES


def decode_receipts(frame: bytes, vnet_hdr_len: int = 0) -> list[Receipt] | None:
    """The receipts in ``frame``; None when it is not a well-formed receipt frame."""
    body = frame[vnet_hdr_len:]
    if len(body) < _HEADER.size:
        return None
    _, _, ethertype, magic, count = _HEADER.unpack_from(body)
    if ethertype != ETHERTYPE_RECEIPT or magic != MAGIC:
        return None
    if len(body) != _HEADER.size + count * ENTRY.size or count > MAX_ENTRIES:
        return None
    out: list[Receipt] = []
    for i in range(count):
        version, guest, client, gport, cport, start, end = ENTRY.unpack_from(
            body, _HEADER.size + i * ENTRY.size
        )
        if version not in (4, 6) or not 0 <= (end - start) & MASK < HALF:
            return None
        key = (TCP, int.from_bytes(guest, "big"), int.from_bytes(client, "big"), gport, cport)
        out.append(Receipt(key, start, end))
    return out


def host_covers(s_ack: int | None, host: tuple[int, int] | None, ack: int) -> bool:
    """True when ``ack`` acknowledges only client bytes the secondary guest (below
    ``s_ack``) or the secondary host (``host`` = ``(start, end)``) holds."""
    if s_ack is None or host is None:
        return False
    start, end = host
    if 0 < ((start - s_ack) & MASK) < HALF:
        return False  # a hole between what the guest has and what the host holds
    return not 0 < ((ack - end) & MASK) < HALF
