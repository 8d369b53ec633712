"""bench.fleet's host kill: protected VMs on a three-host lab, two API replicas on etcd.

The lab (:class:`colopp.fleet.local.LocalFleet`: three host namespaces, an agent in each,
taps ``cpp<k>``), a 3-member etcd on loopback, two API replicas (``python -m colopp_api``)
sharing one database and the pool (``COLOPP_POOL``). The leader protects ``count`` kvd
guests with ``placement: pool``; a client workload runs on each guest throughout. Then every
link of the host that is primary for one guest and secondary for another is cut. As soon
as the leader reports the first affected protection failed over, it is SIGKILLed: the other
replica takes the lead and finishes the recovery (re-protection onto the remaining hosts).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.fleet_window import Timeline, classify, sent_times, summary, timeline
from colopp.arbiter.cluster import EtcdCluster, Member, free_port
from colopp.demo.harness import ClientWorkload
from colopp.fleet.local import LocalFleet, guest_address
from colopp.image.cmdline import kernel_cmdline

TOKEN = "bench-fleet-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def wait(what: str, check: Callable[[], Any], timeout: float, period: float = 0.1) -> Any:
    """Poll ``check()`` (state in other processes) until truthy; TimeoutError naming it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(period)
    raise TimeoutError(f"{what} (last: {last!r})")


class Replica:
    """One API process of the fleet."""

    def __init__(self, name: str, state: Path, env: dict[str, str]) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        state.mkdir(parents=True, exist_ok=True)
        log = (state / "api.log").open("ab")
        argv = [sys.executable, "-m", "colopp_api", "--host", "127.0.0.1", "--port", str(self.port)]
        full = {**os.environ, **env, "COLOPP_API_STATE_DIR": str(state)}
        full["COLOPP_API_REPLICA"] = name
        self.proc = subprocess.Popen(argv, env=full, stdout=log, stderr=log)
        log.close()

    def role(self) -> str | None:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).json().get("role")
        except (httpx.HTTPError, ValueError):
            return None

    def protections(self) -> list[dict[str, Any]]:
        try:
            got = httpx.get(f"{self.url}/v1/protections", headers=HEADERS, timeout=5)
            listed: list[dict[str, Any]] = got.json()["protections"]
        except (httpx.HTTPError, ValueError, KeyError):
            return []
        return listed

    def events(self, pid: str) -> list[dict[str, Any]]:
        """Every event of protection ``pid`` (state, failover, reprotected, ...)."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            got = httpx.get(
                f"{self.url}/v1/protections/{pid}/events",
                params={"after": after, "limit": 1000},
                headers=HEADERS,
                timeout=10,
            ).json()
            out += got["events"]
            if got.get("next") is None:
                return out
            after = got["next"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def protected(replica: Replica, pid: str) -> bool:
    """Is protection ``pid`` protected? Raises RuntimeError when it ended in error."""
    for row in replica.protections():
        if row["id"] == pid and row["state"] == "error":
            raise RuntimeError(f"{row['name']}: {row['reason']}")
        if row["id"] == pid and row["state"] == "protected":
            return True
    return False


def body(local: LocalFleet, slot: int) -> dict[str, Any]:
    image = local.image
    six = f"fd63:6f6c:6f70::{100 + slot}/64"
    return {
        "name": f"vm{slot}",
        "placement": "pool",
        "base_disk": str(image.disk),
        "vm": {
            "kernel": str(image.vmlinuz),
            "initrd": str(image.initrd),
            "append": kernel_cmdline(guest_address(slot).with_prefixlen, ip6_cidr=six),
            "memory_mb": local.memory_mb,
            "mac": f"52:54:00:c0:11:{slot:02x}",
            "accel": local.accel,
        },
    }


def sides(row: dict[str, Any]) -> tuple[str | None, str | None]:
    primary, secondary = row.get("primary") or {}, row.get("secondary") or {}
    return primary.get("host"), secondary.get("host")


def host_kill(local: LocalFleet, state: Path, count: int, ttl: int) -> dict[str, Any]:
    """The host kill and the controller kill during its recovery (see the module)."""
    plan = local.deployment.plan
    members = [m.to_dict() for m in local.fleet.members.values()]
    etcd_members = [Member(f"m{i}", "127.0.0.1", free_port(), free_port()) for i in range(3)]
    (state / "etcd").mkdir(parents=True, exist_ok=True)
    cluster = EtcdCluster(etcd_members, state / "etcd")
    env = {
        "COLOPP_DATABASE_URL": f"sqlite:///{state / 'fleet.db'}",
        "COLOPP_API_TOKEN": TOKEN,
        "COLOPP_AGENT_TOKEN_FILE": str(local.deployment.state_dir / "agent.token"),
        "COLOPP_POOL": json.dumps(members),
        "COLOPP_ETCD_ENDPOINTS": ",".join(m.client_url for m in etcd_members),
        "COLOPP_API_LAB": "0",
    }
    replicas: list[Replica] = []
    loads: list[ClientWorkload] = []
    lost: str | None = None
    try:
        cluster.start()
        first = Replica("r1", state / "r1", env)
        replicas.append(first)
        wait("r1 leads", lambda: first.role() == "leader", 120)
        second = Replica("r2", state / "r2", env)
        replicas.append(second)
        wait("r2 follows", lambda: second.role() == "follower", 120)
        started = time.monotonic()
        for slot in range(count):
            made = httpx.post(
                f"{first.url}/v1/protections", json=body(local, slot), headers=HEADERS, timeout=30
            )
            made.raise_for_status()
            pid = made.json()["id"]
            wait(f"vm{slot} protected", lambda pid=pid: protected(first, pid), 600, period=0.5)
        protect_s = time.monotonic() - started
        rows = {r["name"]: r for r in first.protections()}
        placed = {name: sides(row) for name, row in rows.items()}
        primaries = {p for p, _ in placed.values()}
        secondaries = {s for _, s in placed.values()}
        lost = sorted(primaries & secondaries)[0]  # primary for one VM, secondary for another
        affected = {n for n, (p, s) in placed.items() if lost in (p, s)}
        traces = [state / f"trace-vm{slot}.json" for slot in range(count)]
        loads = [
            ClientWorkload(plan, target=f"{guest_address(slot).ip}:80", trace_out=traces[slot])
            for slot in range(count)
        ]
        for load in loads:
            load.served(20)
        load_before = os.getloadavg()
        local.cut(lost)
        cut_at, cut_wall = time.monotonic(), time.time()

        def reacted() -> bool:
            return any(
                r["name"] in affected and r["state"] != "protected" for r in first.protections()
            )

        wait("the leader reacts to the host kill", reacted, 120, period=0.05)
        killed_at, killed_wall = time.monotonic(), time.time()
        first.kill()  # SIGKILL during the recovery: no revoke, the lease expires at etcd
        wait("r2 leads", lambda: second.role() == "leader", 60, period=0.05)
        takeover_s = time.monotonic() - killed_at
        leads_wall = time.time()

        def recovered() -> bool:
            now = {r["name"]: r for r in second.protections()}
            return all(
                now.get(n, {}).get("state") == "protected" and lost not in sides(now[n])
                for n in affected
            )

        recovered_s: float | None = None
        failure = None
        try:
            wait("every affected protection re-protected elsewhere", recovered, 600, period=0.2)
            recovered_s = time.monotonic() - cut_at
            for load in loads:
                load.served(10)
        except TimeoutError as exc:  # reported, with every figure that exists
            failure = str(exc)
        after = {r["name"]: sides(r) for r in second.protections()}
        states = {r["name"]: (r["state"], r["reason"]) for r in second.protections()}
        summaries = [load.finish() for load in loads]
        load_after = os.getloadavg()
        events = {name: second.events(row["id"]) for name, row in rows.items()}
    finally:
        for load in loads:
            load.kill()
        if lost is not None:
            local.cut(lost, up=True)
        for replica in replicas:
            replica.kill()
        cluster.stop()
    lines: dict[str, Timeline] = {}
    placed_failures = []
    for slot, load_summary in enumerate(summaries):
        name = f"vm{slot}"
        primary, secondary = placed[name]
        role = "primary" if primary == lost else "secondary" if secondary == lost else None
        lines[name] = timeline(events.get(name, []), cut_wall, role)
        failures = load_summary.get("failures", [])
        trace = json.loads(traces[slot].read_text())["requests"] if traces[slot].exists() else []
        sent = sent_times(trace or [], failures, cut_wall)
        placed_failures += classify(name, failures, sent, cut_wall, lines[name])
    window = summary(placed_failures, lines)
    elsewhere = sum(
        1
        for n in affected
        if lost not in after[n] and None not in after[n] and states[n][0] == "protected"
    )
    return {
        "hosts": len(members),
        "protections": count,
        "host_kill": {
            "lost_host": lost,
            "protections_affected": len(affected),
            "reprotected_elsewhere": elsewhere,
            "recovered_s": None if recovered_s is None else round(recovered_s, 2),
            "failure": failure,
            "states_after": states,
            "requests_failed": sum(s["requests_failed"] for s in summaries),
            "writes_lost": sum(s["writes_lost"] for s in summaries),
            **window,
            "controller_killed_s": round(killed_wall - cut_wall, 3),
            "controller_leads_s": round(leads_wall - cut_wall, 3),
            "client_timeout_s": 15.0,
            "placed_before": placed,
            "placed_after": after,
            "protect_s": round(protect_s, 1),
            "workloads": [
                {
                    k: s.get(k)
                    for k in ("requests_ok", "requests_failed", "connections_reset", "outages_ms")
                }
                for s in summaries
            ],
            "loadavg_before_after": [list(load_before), list(load_after)],
        },
        "controller_kill": {
            "takeover_s": round(takeover_s, 2),
            "killed_after_cut_s": round(killed_at - cut_at, 2),
            "ttl_s": ttl,
            "scope": "SIGKILL of the leading API replica once it reported the first affected"
            " protection failed over; the follower led and finished the re-protections",
        },
    }
