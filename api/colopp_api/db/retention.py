"""Metric-sample retention: downsample by age, then drop (policy and merge pure; one DB pass).

A policy is a list of tiers ``resolution:keep``, e.g. ``1s:1d,1m:30d`` (the default): samples
younger than a day keep their 1 s resolution; between a day and 30 days old, samples of the
same minute (aligned on the epoch) are merged into one; older ones are deleted. The high-volume
events (``checkpoint``, ``divergence``) are deleted at the same age; state changes, failovers
and the rest stay.

A merged sample is the newest sample of its bucket (cumulative counters, state, primary, pids:
what they were at the end of the bucket) with the per-interval figures of every merged sample
added up (``new_checkpoints``, ``checkpoint_reasons``, ``checkpoint_pauses_ms``), plus
``merged`` (how many 1-per-period samples it stands for) and ``first_t`` (the oldest one's
time). Merging is associative, so a bucket that straddled a tier's edge at one pass is merged
again at the next, with the same result.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, update

from colopp.errors import ConfigError
from colopp_api.db.models import Event, MetricSample
from colopp_api.db.store import Store

DEFAULT_RETENTION = "1s:1d,1m:30d"

#: Events this chatty are deleted with the samples; every other kind is kept.
CHATTY_EVENTS = ("checkpoint", "divergence")

SAMPLES = cast(Table, MetricSample.__table__)
EVENTS = cast(Table, Event.__table__)

#: Rows per transaction: keeps SQLite's write lock short for the event loop's own writes.
CHUNK = 500

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``1m``, ``12h``, ``30d``.

    Raises:
        ConfigError: anything else, or zero.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"bad duration {text!r}: want a positive number and s, m, h or d")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Tier:
    """Samples younger than ``keep`` seconds are kept one per ``resolution`` seconds."""

    resolution: float
    keep: float


@dataclass(frozen=True)
class RetentionPolicy:
    """Tiers by increasing age; samples older than the last tier's ``keep`` are dropped."""

    tiers: tuple[Tier, ...]
    period: float = 300.0  # seconds between two retention passes

    @property
    def horizon(self) -> float:
        """Age past which nothing is kept."""
        return self.tiers[-1].keep

    def windows(self, now: float) -> list[tuple[float, float, float]]:
        """(oldest t, newest t exclusive, resolution) of each tier at ``now``; the edges
        are aligned on the tier's buckets so that no bucket is cut in two."""
        out = []
        younger = now
        for tier in self.tiers:
            newest = math.floor(younger / tier.resolution) * tier.resolution
            out.append((now - tier.keep, newest, tier.resolution))
            younger = now - tier.keep
        return out


def parse_retention(text: str, period: float = 300.0) -> RetentionPolicy:
    """``1s:1d,1m:30d`` as a policy.

    Raises:
        ConfigError: malformed, no tier, keeps not increasing, resolutions decreasing, or a
            resolution not shorter than its keep.
    """
    tiers = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        resolution, sep, keep = part.partition(":")
        if not sep:
            raise ConfigError(f"retention tier {part!r}: want RESOLUTION:KEEP, e.g. 1m:30d")
        tiers.append(Tier(parse_duration(resolution), parse_duration(keep)))
    if not tiers:
        raise ConfigError(f"retention {text!r}: no tier (want e.g. {DEFAULT_RETENTION})")
    for before, after in itertools.pairwise(tiers):
        if after.keep <= before.keep or after.resolution < before.resolution:
            raise ConfigError(
                f"retention {text!r}: tiers must keep longer and never finer than the previous"
            )
    for tier in tiers:
        if tier.resolution >= tier.keep:
            raise ConfigError(f"retention {text!r}: a resolution must be shorter than its keep")
    if period <= 0:
        raise ConfigError("retention period must be positive")
    return RetentionPolicy(tuple(tiers), period)


def merge_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """One sample standing for ``samples`` (oldest first; each may itself be merged)."""
    merged = dict(samples[-1])
    reasons: Counter[str] = Counter()
    pauses: list[float] = []
    for s in samples:
        reasons.update(s.get("checkpoint_reasons") or {})
        pauses.extend(s.get("checkpoint_pauses_ms") or [])
    merged["new_checkpoints"] = sum(int(s.get("new_checkpoints") or 0) for s in samples)
    merged["checkpoint_reasons"] = dict(reasons)
    merged["checkpoint_pauses_ms"] = pauses
    merged["merged"] = sum(int(s.get("merged") or 1) for s in samples)
    merged["first_t"] = min(float(s.get("first_t", s["t"])) for s in samples)
    return merged


def buckets(rows: Iterable[tuple[int, float]], resolution: float) -> list[list[int]]:
    """Ids of the rows (id, t; by t) that share a bucket with another row, bucket by bucket."""
    groups: dict[int, list[int]] = {}
    for row_id, t in rows:
        groups.setdefault(math.floor(t / resolution), []).append(row_id)
    return [ids for ids in groups.values() if len(ids) > 1]


@dataclass
class PassReport:
    """What one retention pass did."""

    merged: int = 0  # rows merged away (a bucket of n rows counts n - 1)
    dropped: int = 0  # samples older than the horizon
    events_dropped: int = 0


def _merge_buckets(store: Store, groups: list[list[int]]) -> None:
    """Merge each group of row ids into its newest row, in one transaction (Core statements:
    no ORM objects to synchronize)."""
    table = SAMPLES
    wanted = [i for ids in groups for i in ids]
    with store.session() as s, s.begin():
        found = s.execute(
            select(table.c.id, table.c.t, table.c.data).where(table.c.id.in_(wanted))
        ).all()
        rows = {int(i): (float(t), int(i), d) for i, t, d in found}
        kept: list[dict[str, Any]] = []
        gone: list[int] = []
        for ids in groups:
            bucket = sorted(rows[i] for i in ids if i in rows)
            if len(bucket) < 2:
                continue
            data = merge_samples([{**d, "t": t} for t, _, d in bucket])
            kept.append({"row_id": bucket[-1][1], "merged_data": data})
            gone.extend(i for _, i, _ in bucket[:-1])
        if kept:
            s.execute(
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values(data=bindparam("merged_data")),
                kept,
            )
        if gone:
            s.execute(delete(table).where(table.c.id.in_(gone)))


def _merge_window(
    store: Store, protection_id: str, start: float, end: float, resolution: float
) -> int:
    """Merge the buckets of [start, end) (bucket-aligned), reading a day at a time."""
    merged = 0
    step = resolution * max(1, math.ceil(86400 / resolution))
    while start < end:
        stop = min(end, start + step)
        with store.session() as s:
            rows = s.execute(
                select(MetricSample.id, MetricSample.t)
                .where(
                    MetricSample.protection_id == protection_id,
                    MetricSample.t >= start,
                    MetricSample.t < stop,
                )
                .order_by(MetricSample.t)
            ).all()
        batch: list[list[int]] = []
        for ids in buckets(((int(i), float(t)) for i, t in rows), resolution):
            batch.append(ids)
            merged += len(ids) - 1
            if sum(map(len, batch)) >= CHUNK:
                _merge_buckets(store, batch)
                batch = []
        if batch:
            _merge_buckets(store, batch)
        start = stop
    return merged


def _drop_old(store: Store, protection_id: str, before: float) -> tuple[int, int]:
    dropped = events = 0
    while True:
        with store.session() as s, s.begin():
            ids = list(
                s.scalars(
                    select(MetricSample.id)
                    .where(MetricSample.protection_id == protection_id, MetricSample.t < before)
                    .limit(CHUNK)
                )
            )
            if ids:
                s.execute(delete(SAMPLES).where(SAMPLES.c.id.in_(ids)))
            event_ids = list(
                s.scalars(
                    select(Event.id)
                    .where(
                        Event.protection_id == protection_id,
                        Event.t < before,
                        Event.type.in_(CHATTY_EVENTS),
                    )
                    .limit(CHUNK)
                )
            )
            if event_ids:
                s.execute(delete(EVENTS).where(EVENTS.c.id.in_(event_ids)))
        dropped, events = dropped + len(ids), events + len(event_ids)
        if len(ids) < CHUNK and len(event_ids) < CHUNK:
            return dropped, events


def run_retention(
    store: Store, policy: RetentionPolicy, now: float, done: dict[tuple[str, int], float]
) -> PassReport:
    """Downsample and prune every protection's samples as ``policy`` says at ``now``.

    ``done`` remembers, per (protection, tier), up to where the tier's window was already
    merged, so a pass only reads the rows that aged into a window since the last one (the
    first pass after a start reads every window once). Runs in short transactions.
    """
    report = PassReport()
    with store.session() as s:
        protections = list(s.scalars(select(MetricSample.protection_id).distinct()))
    for pid in protections:
        dropped, events = _drop_old(store, pid, now - policy.horizon)
        report.dropped += dropped
        report.events_dropped += events
        for index, (oldest, newest, resolution) in enumerate(policy.windows(now)):
            start = max(oldest, done.get((pid, index), oldest))
            # Re-read the bucket the last pass stopped in: it may have gained rows since.
            start = math.floor(start / resolution) * resolution
            if newest > start:
                report.merged += _merge_window(store, pid, start, newest, resolution)
            done[(pid, index)] = newest
    return report
