"""Sample retention: the policy, merging, 40 simulated days of a protection, the writer thread,
and the dashboard's series over downsampled rows."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from colopp.errors import ConfigError
from colopp_api.db.models import Event, MetricSample
from colopp_api.db.retention import (
    Tier,
    merge_samples,
    parse_retention,
    run_retention,
)
from colopp_api.db.store import Store, make_engine, migrate
from colopp_api.db.writer import SampleWrite, SampleWriter

DAY = 86400.0
SERIES_JS = Path(__file__).resolve().parents[2] / "api/colopp_api/dashboard/series.js"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    engine = make_engine(url)
    migrate(engine, url)
    store = Store(engine)
    store.add_protection(
        id="p1", name="web", placement="hosts", options={}, state="protected", reason=None,
        runtime={},
    )  # fmt: skip
    yield store
    engine.dispose()


def test_policy_parses_tiers() -> None:
    policy = parse_retention("1s:1d, 1m:30d")
    assert policy.tiers == (Tier(1.0, DAY), Tier(60.0, 30 * DAY))
    assert policy.horizon == 30 * DAY
    assert parse_retention("10s:12h").tiers == (Tier(10.0, 12 * 3600.0),)


@pytest.mark.parametrize(
    "text",
    ["", "1s", "1x:1d", "1s:1d,1m:1d", "1m:1d,1s:30d", "1d:1h", "0s:1d", "-1s:1d", "1s:1d,,x"],
)
def test_bad_policies_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ConfigError, match=r"retention|duration"):
        parse_retention(text)


def _raw(t: float, n: int, reason: str = "periodic") -> dict[str, Any]:
    return {
        "t": t,
        "checkpoints": n,
        "new_checkpoints": 1,
        "checkpoint_reasons": {reason: 1},
        "checkpoint_pauses_ms": [float(n)],
        "comparator": {"compared": 10 * n},
        "primary": "hosta",
    }


def test_merging_sums_intervals_keeps_the_newest_counters_and_is_associative() -> None:
    rows = [_raw(100.0 + i, i, "payload" if i % 2 else "periodic") for i in range(6)]
    whole = merge_samples(rows)
    assert whole["new_checkpoints"] == 6 and whole["merged"] == 6
    assert whole["checkpoint_reasons"] == {"periodic": 3, "payload": 3}
    assert whole["checkpoint_pauses_ms"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert whole["checkpoints"] == 5 and whole["comparator"] == {"compared": 50}
    assert whole["t"] == 105.0 and whole["first_t"] == 100.0
    in_two = merge_samples([merge_samples(rows[:2]), merge_samples(rows[2:])])
    assert in_two == whole


def _insert_day(store: Store, start: float, period: float, first: int) -> int:
    """One day of samples every ``period`` s, one checkpoint each, and its events."""
    rows = []
    n = first
    t = start
    while t < start + DAY:
        rows.append({"protection_id": "p1", "t": t, "data": _raw(t, n)})
        n += 1
        t += period
    with store.session() as s, s.begin():
        s.execute(insert(MetricSample), rows)
    store.add_events(
        "p1",
        [(start + 5, "checkpoint", {"reason": "periodic"}), (start + 6, "state", {"to": "x"})],
    )
    return n


def test_forty_days_hold_what_the_retention_says_and_no_more(store: Store) -> None:
    policy = parse_retention("1s:1d,1m:30d")
    period = 20.0  # three samples per minute: the one-minute tier merges them
    start = 1_700_000_000.0 - (1_700_000_000.0 % 60)
    done: dict[tuple[str, int], float] = {}
    n = 0
    for day in range(40):  # the API's passes, one a day of simulated time
        n = _insert_day(store, start + day * DAY, period, n)
        run_retention(store, policy, start + (day + 1) * DAY, done)
    now = start + 40 * DAY
    report = run_retention(store, policy, now, done)
    assert report.merged == 0 and report.dropped == 0  # nothing left to do
    with store.session() as s:
        kept = [(r.t, r.data) for r in s.scalars(select(MetricSample).order_by(MetricSample.t))]
        events = [(e.t, e.type) for e in s.scalars(select(Event))]

    assert min(t for t, _ in kept) >= now - 30 * DAY
    recent = [d for t, d in kept if t >= now - DAY]
    older = [(t, d) for t, d in kept if t < now - DAY]
    # The last day: every sample as written.
    assert len(recent) == DAY / period and all("merged" not in d for d in recent)
    # A day to 30 days old: one sample a minute, each standing for the minute's three.
    minutes = [math.floor(t / 60) for t, _ in older]
    assert len(set(minutes)) == len(minutes) == 29 * 1440
    assert all(d["merged"] == 3 and d["new_checkpoints"] == 3 for _, d in older)
    assert all(math.floor(d["first_t"] / 60) == math.floor(t / 60) for t, d in older)
    assert all(len(d["checkpoint_pauses_ms"]) == 3 for _, d in older)
    # Counters stay cumulative and every checkpoint of the last 30 days is accounted for.
    assert [d["checkpoints"] for _, d in kept] == sorted(d["checkpoints"] for _, d in kept)
    assert sum(d["new_checkpoints"] for _, d in kept) == 30 * DAY / period
    assert kept[-1][1]["checkpoints"] == n - 1
    # Chatty events go with the samples; state changes stay.
    assert min(t for t, kind in events if kind == "checkpoint") >= now - 30 * DAY
    assert len([k for _, k in events if k == "state"]) == 40


def test_the_writer_writes_off_the_loop_and_runs_retention(store: Store) -> None:
    now = 1_800_000_000.0
    policy = parse_retention("1s:1m,10s:1h", period=3600)
    writer = SampleWriter(store, policy, clock=lambda: now)
    # Old samples already in the table: 5 s apart, two hours back.
    with store.session() as s, s.begin():
        s.execute(
            insert(MetricSample),
            [
                {"protection_id": "p1", "t": now - 7200 + 5 * i, "data": _raw(0, i)}
                for i in range(1400)
            ],
        )
    writer.start()
    for i in range(5):
        event = (now + i, "checkpoint", {"reason": "periodic"})
        fields = {"checkpoints": 100 + i, "last_checkpoint_at": now + i}
        writer.submit(SampleWrite("p1", now + i, _raw(now + i, 100 + i), [event], fields))
    writer.flush()
    writer.close()
    assert writer.last_pass is not None
    with store.session() as s:
        ts = sorted(s.scalars(select(MetricSample.t)))
    assert min(ts) >= now - 3600  # older than an hour: dropped
    old = [t for t in ts if t < now - 60]
    assert len({math.floor(t / 10) for t in old}) == len(old)  # one per 10 s
    assert [t for t in ts if t >= now] == [now + i for i in range(5)]
    assert len(store.events("p1", 0, 100, "checkpoint")) == 5
    row = store.protection("p1")
    assert row is not None and row["checkpoints"] == 104 and row["last_checkpoint_at"] == now + 4


def _live_samples(start: float, seconds: int) -> list[dict[str, Any]]:
    """One sample a second as the sampler writes them (checkpoints every 3 s, divergences
    every 7 s, growing comparator and CPU counters)."""
    out = []
    for i in range(seconds):
        new = 1 if i % 3 == 0 else 0
        out.append(
            {
                "t": start + i,
                "primary": "hosta",
                "secondary": "hostb",
                "checkpoints": i // 3 + 1,
                "new_checkpoints": new,
                "checkpoint_pauses_ms": [40.0 + i % 5] * new,
                "checkpoint_reasons": {"periodic": new} if new else {},
                "pids": {"hosta": 10, "hostb": 11},
                "cpu_seconds": {"hosta": i * 0.5, "hostb": i * 0.25},
                "comparator": {"compared": 10 * i, "released": 10 * i, "prereleased": i},
                "divergences": {"payload": i // 7},
            }
        )
    return out


def _derive(samples: list[dict[str, Any]]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node missing: Debian's nodejs package (scripts/setup.sh)"
    script = (
        "globalThis.window = globalThis;"
        "require(process.argv[1]);"
        "const s = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const d = window.ColoppSeries.derive(s);"
        "const last = (xs) => xs.filter((x) => x != null).slice(-1)[0];"
        "console.log(JSON.stringify({checkpoints: d.checkpoints.total,"
        " divergences: d.divergences.total, packets: d.packets.total, pauses: d.pauses.count,"
        " p99: last(d.pauses.series[1].values), cpu: d.cpu.known}));"
    )
    result = subprocess.run(
        [node, "-e", script, str(SERIES_JS)],
        input=json.dumps(samples),
        capture_output=True,
        text=True,
        check=True,
    )
    derived: dict[str, Any] = json.loads(result.stdout)
    return derived


def test_dashboard_series_read_downsampled_rows_alike(store: Store) -> None:
    start = 1_800_000_000.0
    raw = _live_samples(start, 1800)
    with store.session() as s, s.begin():
        s.execute(
            insert(MetricSample), [{"protection_id": "p1", "t": d["t"], "data": d} for d in raw]
        )
    run_retention(store, parse_retention("1s:10m,1m:1d"), start + 1800, {})
    kept = store.samples("p1", 0, 10_000)
    assert 20 * 60 / 60 <= len([d for d in kept if "merged" in d]) <= 21
    before, after = _derive(raw), _derive(kept)
    # Counts kept per interval (checkpoints, pauses) add up to the same totals.
    assert (after["checkpoints"], after["pauses"]) == (before["checkpoints"], before["pauses"])
    assert after["p99"] == pytest.approx(before["p99"], abs=5) and after["cpu"]
    # Rates from cumulative counters start at the first row: its own minute has no baseline,
    # exactly as when the raw series starts at that row.
    since_first = _derive([d for d in raw if d["t"] >= kept[0]["t"]])
    assert (after["divergences"], after["packets"]) == (
        since_first["divergences"],
        since_first["packets"],
    )
