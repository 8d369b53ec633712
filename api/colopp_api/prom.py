"""``GET /metrics``: Prometheus exposition of every protection's figures.

Counters come from this process's tallies (they start at zero when the API starts, which
Prometheus' ``rate()`` handles as a counter reset); states come from the database.

Label rule: a long-lived series never carries a label whose value changes at a failover or a
switchover, so no series starts or ends when a pair changes hands. What changes (the state,
which host is primary, whether an agent answers) is a gauge's *value* over a fixed label set:

- ``colopp_protection_state{protection,state}``: one series per API state, 1 for the current
  one and 0 for the others (a Prometheus state set);
- ``colopp_protection_primary{protection,host}``: one series per host of the pair, 1 on the
  host whose QEMU is the primary (or serves alone);
- ``colopp_qemu_cpu_seconds_total{protection,host}``: by host, never by role;
- ``colopp_protection_info{protection,name,placement}``: what never changes.

Churn that remains, on purpose: a protection's series appear when it is created and leave
when the API forgets it (never, today), and ``colopp_build_info`` changes its ``version``
label at an upgrade (one series per running build, the usual info-metric pattern).
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import colopp
from colopp_api.db.store import Store
from colopp_api.live.manager import ProtectionManager
from colopp_api.live.runner import ProtectionRunner
from colopp_api.live.sampler import PAUSE_BUCKETS
from colopp_api.states import ApiState


def build_info() -> GaugeMetricFamily:
    """``colopp_build_info{version,python}`` = 1."""
    info = GaugeMetricFamily(
        "colopp_build_info", "The running colopp build (always 1)", labels=["version", "python"]
    )
    info.add_metric([colopp.__version__, platform.python_version()], 1)
    return info


def pair_hosts(row: dict[str, Any], runner: ProtectionRunner | None) -> tuple[list[str], str]:
    """The protection's hosts (stable across failovers) and the current primary's name."""
    hosts = set(runner.addresses) if runner is not None else set()
    hosts |= {h for h in (row["primary_host"], row["secondary_host"]) if h}
    primary = row["primary_host"] or ""
    if runner is not None and runner.pair is not None:
        primary = runner.pair.primary.name
    return sorted(hosts), primary


class ProtectionCollector(Collector):
    """Collects on every scrape."""

    def __init__(self, manager: ProtectionManager, store: Store) -> None:
        self.manager = manager
        self.store = store

    def collect(self) -> Iterator[Metric]:
        rows = self.store.protections()
        yield build_info()
        yield from self._states(rows)
        yield from self._agents(rows)
        yield from self._counters()

    def _states(self, rows: list[dict[str, Any]]) -> Iterator[Metric]:
        states = GaugeMetricFamily("colopp_protections", "Protections by state", labels=["state"])
        counts = Counter(r["state"] for r in rows)
        for state in ApiState:
            states.add_metric([state.value], counts.get(state.value, 0))
        yield states
        info = GaugeMetricFamily(
            "colopp_protection_info",
            "What never changes about a protection (always 1)",
            labels=["protection", "name", "placement"],
        )
        state_set = GaugeMetricFamily(
            "colopp_protection_state",
            "1 for the protection's current state, 0 for every other state",
            labels=["protection", "state"],
        )
        primary_of = GaugeMetricFamily(
            "colopp_protection_primary",
            "1 on the host whose QEMU is the primary (or serves alone), 0 on the pair's others",
            labels=["protection", "host"],
        )
        stopped = GaugeMetricFamily(
            "colopp_protection_stopped",
            "1 once the protection was stopped (its VM is gone on purpose; alerts skip it)",
            labels=["protection"],
        )
        for r in rows:
            info.add_metric([r["id"], r["name"], r["placement"]], 1)
            stopped.add_metric([r["id"]], int(bool(r["stopped"])))
            for state in ApiState:
                state_set.add_metric([r["id"], state.value], int(r["state"] == state.value))
            hosts, primary = pair_hosts(r, self.manager.runners.get(r["id"]))
            for host in hosts:
                primary_of.add_metric([r["id"], host], int(host == primary))
        yield from (info, state_set, primary_of, stopped)

    def _agents(self, rows: list[dict[str, Any]]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "colopp_agent_up",
            "1 when the host's agent answered the API's last heartbeat or status call",
            labels=["protection", "host"],
        )
        seen = GaugeMetricFamily(
            "colopp_agent_last_heartbeat_timestamp_seconds",
            "When the host's agent last answered a heartbeat or status call",
            labels=["protection", "host"],
        )
        comparator = GaugeMetricFamily(
            "colopp_comparator_up",
            "1 when colopp's comparator runs on the primary (colopp comparator only)",
            labels=["protection"],
        )
        for r in rows:
            runner = self.manager.runners.get(r["id"])
            if r["stopped"] or runner is None:
                continue
            for host in pair_hosts(r, runner)[0]:
                agent = runner.tally.agents.get(host)
                up.add_metric([r["id"], host], int(agent is not None and agent.up))
                if agent is not None and agent.last_ok is not None:
                    seen.add_metric([r["id"], host], agent.last_ok)
            if runner.tally.comparator_alive is not None:
                comparator.add_metric([r["id"]], int(runner.tally.comparator_alive))
        yield from (up, seen, comparator)

    def _counters(self) -> Iterator[Metric]:
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
        failovers = CounterMetricFamily(
            "colopp_failovers",
            "Failovers after a failure (switchovers not included)",
            labels=["protection"],
        )
        switchovers = CounterMetricFamily(
            "colopp_switchovers", "Planned switchovers", labels=["protection"]
        )
        packets = {
            key: CounterMetricFamily(
                f"colopp_{key}_packets",
                f"Primary packets {key} by colopp's comparator",
                labels=["protection"],
            )
            for key in ("compared", "released", "prereleased")
        }
        passthrough = CounterMetricFamily(
            "colopp_passthrough_packets",
            "Primary packets colopp's comparator released uncompared, by EtherType "
            "(ipv6-control: IPv6 neighbour discovery and MLD)",
            labels=["protection", "ethertype"],
        )
        cpu = CounterMetricFamily(
            "colopp_qemu_cpu_seconds",
            "CPU time of the QEMU on each host (lab placement; restarts with that QEMU)",
            labels=["protection", "host"],
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
            switchovers.add_metric([pid], tally.switchovers)
            for key, family in packets.items():
                family.add_metric([pid], tally.comparator.get(key, 0))
            for ethertype, n in sorted(
                tally.comparator.get("passthrough_by_ethertype", {}).items()
            ):
                passthrough.add_metric([pid, ethertype], n)
            if "passthrough_ipv6_control" in tally.comparator:
                passthrough.add_metric(
                    [pid, "ipv6-control"], tally.comparator["passthrough_ipv6_control"]
                )
            for host, seconds in sorted(tally.cpu_seconds.items()):
                cpu.add_metric([pid, host], seconds)
            if tally.last_checkpoint_at is not None:
                last.add_metric([pid], tally.last_checkpoint_at)
        yield from (checkpoints, pauses, divergences, failovers, switchovers)
        yield from (*packets.values(), passthrough, cpu, last)


def exposition(manager: ProtectionManager, store: Store) -> bytes:
    """The text exposition format of every metric."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProtectionCollector(manager, store))
    return generate_latest(registry)
