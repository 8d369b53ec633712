"""What the comparator core tells its shell to do. Holding is implicit: nothing released."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colopp.compare.held import HeldFrame


@dataclass(slots=True)
class Release:
    """Send these PRIMARY frames out, in this order, byte for byte.

    Each frame still starts with its ``vnet_hdr_len`` bytes of virtio-net header; the shell
    re-frames them with that length.
    """

    frames: list[bytes] = field(default_factory=list)
    vnet_hdr_len: int = 0


@dataclass(slots=True)
class PreRelease:
    """Send these primary frames out before their comparison finished (COLO++ pre-release).

    They stay held for comparison; when it completes they are not sent a second time.
    """

    frames: list[bytes] = field(default_factory=list)
    vnet_hdr_len: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Ask QEMU for a checkpoint now; ``reason`` says why (e.g. ``tcp_payload_mismatch``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Drop:
    """A frame was malformed and is discarded; ``side`` is ``primary`` or ``secondary``."""

    reason: str
    side: str = "primary"


Action = Release | PreRelease | Checkpoint | Drop


def group_frames(frames: list[HeldFrame], kind: type[Release] | type[PreRelease]) -> list[Action]:
    """One ``kind`` action per run of equal vnet header length, keeping the frames' order."""
    actions: list[Action] = []
    current: Release | PreRelease | None = None
    for held in frames:
        if current is None or current.vnet_hdr_len != held.vnet_hdr_len:
            current = kind([], held.vnet_hdr_len)
            actions.append(current)
        current.frames.append(held.frame)
    return actions
