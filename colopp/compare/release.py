"""Releasing matched primary frames: the counters and the arrival-ordered held queue.

Split out of :mod:`~colopp.compare.core` (which decides *what* leaves): these functions
account for frames that leave after their comparison, hold times included.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

from colopp.compare.counters import HOLD_TIME_BUCKETS, Counters
from colopp.compare.held import HeldFrame
from colopp.compare.verdict import Action, Release, group_frames


def release_matched(
    c: Counters, held_queue: deque[HeldFrame], released: list[HeldFrame], now: float, policy: bool
) -> list[Action]:
    """Release ``released`` (compared, in stream order); pre-released ones are only
    accounted for (they left already). ``policy``: a pre-release policy is in use."""
    if len(released) == 1 and not released[0].pre_released:
        return [release_one(c, held_queue, released[0], now, policy)]
    observe = c.observe_hold
    frames: list[bytes] = []
    size = 0
    vnet = released[0].vnet_hdr_len
    uniform = True
    late = c.observe_late if policy else None
    for held in released:
        held.released = True
        observe(now - held.arrival)
        if late is not None and not held.pre_released and held.payload_end > held.payload_start:
            late(held.refused, now - held.arrival)
        size += len(held.frame)
        if held.pre_released or held.vnet_hdr_len != vnet:
            uniform = False
        frames.append(held.frame)
    c.held_frames -= len(released)
    c.held_bytes -= size
    c.matched_frames += len(released)
    while held_queue and held_queue[0].released:
        held_queue.popleft()
    if uniform:
        c.released_frames += len(frames)
        c.released_bytes += size
        return [Release(frames, vnet)]
    out = [h for h in released if not h.pre_released]
    c.released_frames += len(out)
    c.released_bytes += sum(len(h.frame) for h in out)
    return group_frames(out, Release)


def release_one(
    c: Counters, held_queue: deque[HeldFrame], held: HeldFrame, now: float, policy: bool
) -> Release:
    """The common case, kept short: one matched frame that was not pre-released."""
    held.released = True
    size = len(held.frame)
    c.held_frames -= 1
    c.held_bytes -= size
    c.matched_frames += 1
    c.released_frames += 1
    c.released_bytes += size
    waited = now - held.arrival
    if policy and held.payload_end > held.payload_start:
        c.observe_late(held.refused, waited)
    c.hold_time_counts[bisect_left(HOLD_TIME_BUCKETS, waited)] += 1
    c.hold_time_sum += waited
    while held_queue and held_queue[0].released:
        held_queue.popleft()
    return Release([held.frame], held.vnet_hdr_len)
