"""A million malformed or truncated frames, IPv4 then IPv6: never raise, always counted, never
released unless compared (or passed through: other EtherTypes, IPv6 neighbour discovery)."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from compare_frames import arp_frame, icmp_frame, segments, tcp_frame, udp_frame
from compare_frames6 import (
    DEST_OPTIONS,
    HOP_BY_HOP,
    ROUTING,
    echo6_frame,
    fragment6,
    mld_report,
    neighbour_advert,
    tcp6_frame,
    to_ipv6,
    udp6_frame,
)

from colopp.compare import Comparator, Drop, PreRelease, Release
from colopp.compare.counters import Counters
from colopp.compare.packet import is_passthrough, parse_frame

N_FRAMES = 1_000_000


def base_frames() -> list[bytes]:
    data = bytes(range(256)) * 6
    frames = segments(data, [700, 1], seq=10, ack=20, fin=True)
    frames += [tcp_frame(5, 6, "SA"), tcp_frame(5, 6, "AR"), udp_frame(b"u" * 30)]
    return [*frames, icmp_frame(b"i" * 20), arp_frame()]


def mutate(rng: random.Random, frame: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:  # truncate
        return frame[: rng.randrange(len(frame))]
    if choice == 1:  # flip header bytes (Ethernet type, IP and TCP headers)
        buf = bytearray(frame)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(min(len(buf), 60))
            buf[i] = rng.randrange(256)
        return bytes(buf)
    if choice == 2:  # random bytes, sometimes shaped like IPv4
        junk = rng.randbytes(rng.randrange(80))
        return junk if rng.randrange(2) else frame[:14] + junk
    return frame[: rng.randrange(14, 60)] + rng.randbytes(rng.randrange(40))


def base_frames6() -> list[bytes]:
    chains = [(), (HOP_BY_HOP,), (HOP_BY_HOP, ROUTING, DEST_OPTIONS)]
    frames = [to_ipv6(f, extensions=chains[i % 3]) for i, f in enumerate(base_frames())]
    frames += [tcp6_frame(5, 6, "AP", b"x" * 40, extensions=(DEST_OPTIONS,)), udp6_frame(b"u")]
    return [*frames, echo6_frame(b"e"), fragment6(b"f" * 24), neighbour_advert(), mld_report()]


def mutate6(rng: random.Random, frame: bytes) -> bytes:
    """IPv6-shaped damage: bad payload lengths, truncated or overlong extension headers, a
    broken next-header chain; else the generic mutations."""
    choice = rng.randrange(5)
    buf = bytearray(frame)
    if choice == 0 and len(buf) >= 20:  # payload length: 0, too long, too short, random
        length = int.from_bytes(buf[18:20], "big")
        wrong = rng.choice([0, length + 1, length + rng.randrange(1, 2000), max(0, length - 9)])
        buf[18:20] = struct.pack("!H", wrong & 0xFFFF)
        return bytes(buf)
    if choice == 1 and len(buf) > 56:  # an extension header's length or next header byte
        at = 54 + rng.randrange(min(len(buf) - 54, 24))
        buf[at] = rng.choice([0, 43, 44, 50, 51, 59, 60, rng.randrange(256)])
        return bytes(buf)
    if choice == 2 and len(buf) > 54:  # truncate inside the extension headers
        cut = 54 + rng.randrange(min(len(buf) - 54, 24))
        buf = buf[:cut]
        buf[18:20] = struct.pack("!H", cut - 54 + rng.randrange(3))
        return bytes(buf)
    return mutate(rng, frame)


def test_million_malformed_frames() -> None:
    run_fuzz(base_frames(), mutate, 20261122)


def test_million_malformed_ipv6_frames() -> None:
    counters = run_fuzz(base_frames6(), mutate6, 20261203)
    assert "0x86dd" not in counters.passthrough_by_ethertype
    assert any(r.startswith("primary_ipv6_") for r in counters.malformed)


def run_fuzz(
    bases: list[bytes], mutate: Callable[[random.Random, bytes], bytes], seed: int
) -> Counters:
    rng = random.Random(seed)
    pool = [mutate(rng, rng.choice(bases)) for _ in range(4096)]
    c = Comparator()
    sent_primary: set[bytes] = set()
    released_frames: list[bytes] = []
    drops = 0
    for i in range(N_FRAMES):
        frame = pool[rng.randrange(4096)] if i % 4 else mutate(rng, rng.choice(bases))
        primary = i & 1 == 0
        now = i * 1e-6
        if primary:
            sent_primary.add(frame)
            actions = c.feed_primary(frame, now)
        else:
            actions = c.feed_secondary(frame, now)
        for action in actions:
            if isinstance(action, Release | PreRelease):
                released_frames.extend(action.frames)
            elif isinstance(action, Drop):
                drops += 1
        if i % 65536 == 0:
            c.tick(now)
    k = c.counters
    assert k.primary_frames_in + k.secondary_frames_in == N_FRAMES
    assert drops == sum(k.malformed.values()) > 0
    assert k.flushed_frames == 0
    # Every frame released was either passthrough or compared: nothing else left.
    assert len(released_frames) == k.passthrough_frames + k.matched_frames - k.pre_released_frames
    for frame in set(released_frames):
        assert frame in sent_primary
        if not is_passthrough(frame):
            assert not hasattr(parse_frame(frame), "reason")
    accounted = sum(v for r, v in k.malformed.items() if r.startswith("primary_"))
    accounted += k.passthrough_frames + k.matched_frames + k.held_frames
    assert accounted == k.primary_frames_in
    return k
