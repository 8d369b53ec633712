"""A primary frame waiting for its comparison, and the pre-release seam."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from colopp.compare.packet import FlowKey, Packet


class HeldFrame:
    """One primary frame held by the core until it is matched or a checkpoint flushes it.

    ``payload_start``/``payload_end`` index ``frame``; for TCP, ``pos_start``/``pos_end`` are
    the payload's unwrapped stream positions (sequence numbers made monotonic per connection).
    ``frame`` is what is sent: a segment pre-released with its ACK lowered
    (:mod:`~colopp.compare.ack_lower`) holds the lowered copy (same payload), while ``ack``
    stays the guest's own ACK number.
    """

    __slots__ = (
        "ack",
        "arrival",
        "compared",
        "flags",
        "frame",
        "key",
        "payload_end",
        "payload_start",
        "pos_end",
        "pos_start",
        "pre_released",
        "refused",
        "released",
        "vnet_hdr_len",
    )

    def __init__(
        self,
        frame: bytes,
        vnet_hdr_len: int,
        arrival: float,
        key: FlowKey,
        payload_start: int,
        payload_end: int,
        ack: int = 0,
        flags: int = 0,
    ) -> None:
        # Plain fields, not a Packet: the TCP fast path builds these without parsing twice.
        self.frame = frame
        self.vnet_hdr_len = vnet_hdr_len
        self.arrival = arrival
        self.key = key
        self.payload_start = payload_start
        self.payload_end = payload_end
        self.released = False
        self.pre_released = False
        # Why the last pre-release offer was refused: 0 never offered (or granted), 1 the
        # absolute ACK rule (the secondary had not acknowledged), 2 the policy.
        self.refused = 0
        self.compared = False
        self.pos_start = 0
        self.pos_end = 0
        self.ack = ack
        self.flags = flags

    @classmethod
    def from_packet(cls, frame: bytes, vnet_hdr_len: int, arrival: float, pkt: Packet) -> HeldFrame:
        """Hold ``frame`` as parsed into ``pkt``."""
        return cls(
            frame,
            vnet_hdr_len,
            arrival,
            pkt.key,
            pkt.payload_start,
            pkt.payload_end,
            pkt.ack,
            pkt.flags,
        )

    @property
    def payload(self) -> bytes:
        """The compared bytes of this frame (a copy)."""
        return self.frame[self.payload_start : self.payload_end]


class ReleasePolicy(Protocol):
    """Seam for COLO++ pre-release: may a held primary TCP frame go out before it matched?

    Consulted for the frames of a connection waiting for the secondary, in stream order,
    only once the core checked the absolute rule (the frame acknowledges no client byte the
    secondary has not) and never for SYN or RST. A frame released early is still compared
    later; a mismatch forces a ``prerelease_mismatch`` checkpoint.
    """

    def may_pre_release(self, frame: HeldFrame, now: float) -> bool:
        """True to send ``frame`` now, before the secondary's copy arrived."""
        ...


class NeverPreRelease:
    """The default policy: stock COLO behaviour, nothing leaves before it is compared."""

    def may_pre_release(self, frame: HeldFrame, now: float) -> bool:
        """Always False."""
        return False


@runtime_checkable
class ClientAwarePolicy(ReleasePolicy, Protocol):
    """A policy that also follows the client's requests and the checkpoint boundaries."""

    def observe_client(
        self, pkt: Packet, frame: bytes, now: float, vnet_hdr_len: int = 0
    ) -> FlowKey | None:
        """A client->guest frame; returns the guest->client connection to look at again."""
        ...

    def view_idle(self) -> bool:
        """True when no client frame can let anything leave early before the next
        checkpoint (reading the client copy before a decision then changes nothing)."""
        ...

    def lost_writes(self, key: FlowKey, count: int, now: float) -> bool:
        """``count`` payload segments (no SYN, no RST) of connection ``key`` (guest ->
        client): True when its stream is lost and they were taken as writes, as
        :meth:`observe_client` would take them; False: nothing done."""
        ...

    def client_lost(self) -> None:
        """The client copy stopped: nothing that depends on it may leave early any more."""
        ...

    def on_checkpoint(self) -> None:
        """A checkpoint completed."""
        ...

    def rearm_due(self, now: float) -> bool:
        """True when the policy wants a checkpoint now to re-arm itself."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The policy's counters, JSON-serialisable."""
        ...
