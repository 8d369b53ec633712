"""Fleet arbitration figures: ``python -m bench.fleet --json bench/results-fleet.json``.

A skeleton of issue 21's benchmark. It writes every key the issue names. The keys this
session can measure hold real figures, taken with a real 3-member etcd:

- ``controller_kill.takeover_s``: two bare controller replicas (``python -m colopp.arbiter
  elect``) on a loopback etcd; the leader is SIGKILLed; seconds until the other leads
  (worst of ``--trials``). Scope: the election only, not an API finishing a recovery.
- ``etcd_partition.dual_primary_observed``: two holders of one protection's right
  (``python -m colopp.arbiter hold``), each beside its own etcd member in a lab network
  namespace. The first holder's namespace is cut off. It is dual when the second one
  acquired before the first one's kill. Scope: holders' own clocks, not a client talking
  to two VMs. Needs root.

``hosts``, ``protections`` and ``host_kill.*`` need the three-host lab with protected VMs.
They are written as null and listed under ``not_measured``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from colopp.arbiter.cluster import (
    SUBNET,
    EtcdCluster,
    Events,
    Member,
    cut,
    delete_netns_lab,
    free_port,
    make_netns_lab,
)

HOSTS = ["f21h1", "f21h2", "f21h3"]


def controller_kill(trials: int, ttl: int) -> dict[str, Any]:
    takeovers: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        members = [Member(f"m{i}", "127.0.0.1", free_port(), free_port()) for i in range(3)]
        cluster = EtcdCluster(members, Path(tmp))
        cluster.start()
        urls = [a for m in members for a in ("--endpoint", m.client_url)]
        replicas: list[Events] = []
        try:
            leader = Events(["elect", "--name", "r0", "--ttl", str(ttl), *urls])
            replicas.append(leader)
            leader.wait_for("elected", timeout=60)
            for trial in range(trials):
                follower = Events(["elect", "--name", f"r{trial + 1}", "--ttl", str(ttl), *urls])
                replicas.append(follower)
                follower.wait_for("started", timeout=30)
                killed_at = time.monotonic()
                leader.kill()
                got = follower.wait_for("elected", timeout=30)
                takeovers.append(round(got["t"] - killed_at, 3))
                leader = follower
        finally:
            for replica in replicas:
                replica.kill()
            cluster.stop()
    return {
        "takeover_s": max(takeovers),
        "takeovers_s": takeovers,
        "ttl_s": ttl,
        "scope": "leader election of bare replicas on a 3-member etcd (loopback)",
    }


def etcd_partition(ttl: int) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"dual_primary_observed": None, "skipped": "needs root (network namespaces)"}
    make_netns_lab(HOSTS)
    with tempfile.TemporaryDirectory() as tmp:
        members = [
            Member(f"m{i}", f"{SUBNET}.{i}", 2379, 2380, ns) for i, ns in enumerate(HOSTS, 1)
        ]
        cluster = EtcdCluster(members, Path(tmp))
        holders: list[Events] = []
        try:
            cluster.start()
            key = ["--key", "colopp/protection/bench", "--ttl", str(ttl)]
            a = Events(["hold", "--endpoint", members[0].client_url, "--name", "a", *key], HOSTS[0])
            holders.append(a)
            a.wait_for("acquired", timeout=60)
            b = Events(["hold", "--endpoint", members[1].client_url, "--name", "b", *key], HOSTS[1])
            holders.append(b)
            b.wait_for("started", timeout=30)
            cut_at = time.monotonic()
            cut(1)
            stop = a.wait_for("stop-output", timeout=30)
            kill = a.wait_for("kill-qemu", timeout=30)
            got_b = b.wait_for("acquired", timeout=60)
        finally:
            for holder in holders:
                holder.kill()
            cluster.stop()
            delete_netns_lab(HOSTS)
    return {
        "dual_primary_observed": got_b["t"] <= kill["t"],
        "cut_to_stop_output_s": round(stop["t"] - cut_at, 3),
        "kill_to_other_serves_s": round(got_b["t"] - kill["t"], 3),
        "ttl_s": ttl,
        "scope": "holders' fencing timestamps (CLOCK_MONOTONIC), not a client of two VMs",
    }


def figures(trials: int, ttl: int) -> dict[str, Any]:
    """Every key of issue 21's benchmark; null where not measured (see ``not_measured``)."""
    return {
        "hosts": None,
        "protections": None,
        "host_kill": {
            "protections_affected": None,
            "reprotected_elsewhere": None,
            "recovered_s": None,
            "requests_failed": None,
            "writes_lost": None,
        },
        "controller_kill": controller_kill(trials, ttl),
        "etcd_partition": etcd_partition(ttl),
        "not_measured": [
            "hosts, protections, host_kill.*: no three-host lab with protected VMs yet",
            "controller_kill during a recovery: replicas here supervise no pair",
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--ttl", type=int, default=3)
    args = parser.parse_args()
    text = json.dumps(figures(args.trials, args.ttl), indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
