"""``GET /metrics``: Prometheus exposition of every protection's figures.

Counters come from this process's tallies (they start at zero when the API starts, which
Prometheus' ``rate()`` handles as a counter reset); states come from the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from colopp_api.db.store import Store
from colopp_api.live.manager import ProtectionManager
from colopp_api.live.sampler import PAUSE_BUCKETS
from colopp_api.states import ApiState


class ProtectionCollector(Collector):
    """Collects on every scrape."""

    def __init__(self, manager: ProtectionManager, store: Store) -> None:
        self.manager = manager
        self.store = store

    def collect(self) -> Iterator[Metric]:
        rows = self.store.protections()
        states = GaugeMetricFamily("colopp_protections", "Protections by state", labels=["state"])
        counts = Counter(r["state"] for r in rows)
        for state in ApiState:
            states.add_metric([state.value], counts.get(state.value, 0))
        yield states
        info = GaugeMetricFamily(
            "colopp_protection_state",
            "1 for the protection's current state and primary host",
            labels=["protection", "name", "placement", "state", "primary"],
        )
        for r in rows:
            info.add_metric(
                [r["id"], r["name"], r["placement"], r["state"], r["primary_host"] or ""], 1
            )
        yield info
        checkpoints = CounterMetricFamily(
            "colopp_checkpoints", "Completed checkpoints by reason", labels=["protection", "reason"]
        )
        pauses = HistogramMetricFamily(
            "colopp_checkpoint_pause_seconds",
            "Checkpoint pauses (VM stopped)",
            labels=["protection"],
        )
        divergences = CounterMetricFamily(
            "colopp_divergences", "Output divergences by reason", labels=["protection", "reason"]
        )
        failovers = CounterMetricFamily("colopp_failovers", "Failovers", labels=["protection"])
        packets = {
            key: CounterMetricFamily(
                f"colopp_{key}_packets",
                f"Primary packets {key} by colopp's comparator",
                labels=["protection"],
            )
            for key in ("compared", "released", "prereleased")
        }
        cpu = CounterMetricFamily(
            "colopp_qemu_cpu_seconds",
            "CPU time of each QEMU",
            labels=["protection", "host", "role"],
        )
        last = GaugeMetricFamily(
            "colopp_last_checkpoint_timestamp_seconds",
            "When the last checkpoint completed",
            labels=["protection"],
        )
        for pid, runner in sorted(self.manager.runners.items()):
            tally = runner.tally
            for reason, n in sorted(tally.checkpoints.items()):
                checkpoints.add_metric([pid, reason], n)
            for reason, n in sorted(tally.divergences.items()):
                divergences.add_metric([pid, reason], n)
            cumulative, buckets = 0, []
            for bound, n in zip(
                [*map(str, PAUSE_BUCKETS), "+Inf"], tally.pause_counts, strict=True
            ):
                cumulative += n
                buckets.append((bound, cumulative))
            pauses.add_metric([pid], buckets, tally.pause_sum)
            failovers.add_metric([pid], tally.failovers)
            for key, family in packets.items():
                family.add_metric([pid], tally.comparator.get(key, 0))
            primary = runner.pair.primary.name if runner.pair is not None else None
            for host, seconds in sorted(tally.cpu_seconds.items()):
                cpu.add_metric([pid, host, "primary" if host == primary else "secondary"], seconds)
            if tally.last_checkpoint_at is not None:
                last.add_metric([pid], tally.last_checkpoint_at)
        yield from (checkpoints, pauses, divergences, failovers, *packets.values(), cpu, last)


def exposition(manager: ProtectionManager, store: Store) -> bytes:
    """The text exposition format of every metric."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProtectionCollector(manager, store))
    return generate_latest(registry)
