"""``/metrics``: switchovers apart from failovers, no series churn at a failover, build info,
agent and comparator liveness. The collector reads a real (SQLite) store and real runners
whose tallies are set as the sampler and the supervisor would set them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from populated import Manager, scrape, setup, value
from prometheus_client.parser import text_string_to_metric_families

import colopp
from colopp.controller.supervisor import Incident, PairSupervisor
from colopp.errors import AgentError
from colopp_api.db.store import Store
from colopp_api.live.runner import ProtectionRunner
from colopp_api.live.sampler import SamplerMemory, Tally, digest
from tests.api.conftest import READ, ApiServer

__all__ = ["setup"]  # the fixture


def test_switchovers_are_counted_apart_from_failovers(
    setup: tuple[Manager, Store, ProtectionRunner],
) -> None:
    manager, store, runner = setup
    runner._on_incident(Incident("primary", "hosta", "switchover", 1.0))
    runner._on_incident(Incident("primary", "hostb", "dead", 2.0))
    runner._on_incident(Incident("primary", "hosta", "switchover", 3.0))
    series = scrape(manager, store)
    assert value(series, "colopp_switchovers_total", protection="p1") == 2
    assert value(series, "colopp_failovers_total", protection="p1") == 1


def test_no_series_starts_or_ends_at_a_failover(
    setup: tuple[Manager, Store, ProtectionRunner],
) -> None:
    manager, store, runner = setup
    runner.tally.cpu_seconds = {"hosta": 3.0, "hostb": 2.0}
    before = scrape(manager, store)
    assert value(before, "colopp_protection_primary", protection="p1", host="hosta") == 1
    assert value(before, "colopp_protection_primary", protection="p1", host="hostb") == 0
    assert value(before, "colopp_protection_state", protection="p1", state="protected") == 1
    assert value(before, "colopp_protection_state", protection="p1", state="failed_over") == 0
    # hostb takes over; a new QEMU later starts on hosta.
    store.update_protection("p1", state="failed_over", primary_host="hostb", secondary_host=None)
    runner.tally.cpu_seconds = {"hosta": 0.5, "hostb": 4.0}
    runner._on_incident(Incident("primary", "hosta", "dead", 2.0))
    after = scrape(manager, store)
    assert set(after) == set(before)
    assert value(after, "colopp_protection_primary", protection="p1", host="hostb") == 1
    assert value(after, "colopp_protection_primary", protection="p1", host="hosta") == 0
    assert value(after, "colopp_protection_state", protection="p1", state="failed_over") == 1
    assert value(after, "colopp_qemu_cpu_seconds_total", protection="p1", host="hostb") == 4.0
    for name, labels in after:
        assert "role" not in dict(labels) and "primary" not in dict(labels), name


def test_build_info_names_this_version(setup: tuple[Manager, Store, ProtectionRunner]) -> None:
    manager, store, _ = setup
    infos = [k for k in scrape(manager, store) if k[0] == "colopp_build_info"]
    assert len(infos) == 1
    assert dict(infos[0][1])["version"] == colopp.__version__


def _status(alive: bool) -> dict[str, Any]:
    return {
        "pid": 10,
        "vm_alive": True,
        "checkpoints": 1,
        "comparator": {"alive": alive, "counters": {"matched_frames": 1}},
    }


def test_agent_and_comparator_liveness_from_status_replies(
    setup: tuple[Manager, Store, ProtectionRunner],
) -> None:
    manager, store, runner = setup
    series = scrape(manager, store)
    assert value(series, "colopp_agent_up", protection="p1", host="hosta") == 0
    assert not [k for k in series if k[0] == "colopp_agent_last_heartbeat_timestamp_seconds"]
    memory = SamplerMemory()
    statuses = {"hosta": _status(True), "hostb": {"vm_alive": True}}
    digest(memory, runner.tally, statuses, ("hosta", "hostb"), 100.0, {})
    statuses = {"hosta": _status(False), "hostb": {"error": "connection refused"}}
    digest(memory, runner.tally, statuses, ("hosta", "hostb"), 101.0, {})
    series = scrape(manager, store)
    assert value(series, "colopp_agent_up", protection="p1", host="hosta") == 1
    assert value(series, "colopp_agent_up", protection="p1", host="hostb") == 0
    seen = "colopp_agent_last_heartbeat_timestamp_seconds"
    assert value(series, seen, protection="p1", host="hosta") == 101.0
    assert value(series, seen, protection="p1", host="hostb") == 100.0
    assert value(series, "colopp_comparator_up", protection="p1") == 0


class Agent:
    """A heartbeat connection that answers, or fails, as told."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok

    async def call(self, _method: str, **_kw: Any) -> dict[str, Any]:
        if not self.ok:
            raise AgentError("no answer")
        return {"vm_alive": True, "qmp_ok": True}


def test_supervisor_heartbeats_feed_the_agent_gauges() -> None:
    tally = Tally()
    seen: list[tuple[str, bool]] = []

    def on_beat(host: str, ok: bool) -> None:
        seen.append((host, ok))
        tally.observe_agent(host, ok, 7.0)

    supervisor = PairSupervisor(
        pair=None,  # type: ignore[arg-type]  # _beat only talks to the agents
        heartbeat={"a": Agent(True), "b": Agent(False)},  # type: ignore[dict-item]
        on_beat=on_beat,
    )

    async def beat_both() -> None:
        await supervisor._beat("a")
        await supervisor._beat("b")

    asyncio.run(beat_both())
    assert seen == [("a", True), ("b", False)]
    assert tally.agents["a"].up and tally.agents["a"].last_ok == 7.0
    assert not tally.agents["b"].up and tally.agents["b"].last_ok is None


def test_served_metrics_have_build_info(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {READ}"}) as c:
        text = c.get("/metrics").text
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"colopp_build_info", "colopp_protections", "colopp_switchovers"} <= names
    assert 'colopp_build_info{python="' in text and f'version="{colopp.__version__}"' in text


def test_pass_through_packets_by_ethertype(
    setup: tuple[Manager, Store, ProtectionRunner],
) -> None:
    manager, store, runner = setup
    runner.tally.comparator = {
        "passthrough_by_ethertype": {"0x0806": 3, "0x8100": 1},
        "passthrough_ipv6_control": 2,
    }
    series = scrape(manager, store)
    total = "colopp_passthrough_packets_total"
    assert value(series, total, protection="p1", ethertype="0x0806") == 3
    assert value(series, total, protection="p1", ethertype="ipv6-control") == 2
    assert not any(dict(labels).get("ethertype") == "0x86dd" for _, labels in series)
