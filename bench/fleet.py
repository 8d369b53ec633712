"""Fleet figures: ``python -m bench.fleet --json bench/results-fleet.json`` (root, etcd, QEMU).

- ``hosts``, ``protections``, ``host_kill.*`` and ``controller_kill.*``
  (:mod:`bench.fleet_hosts`): ``--protections`` kvd guests placed over a three-host lab by
  two API replicas on a 3-member etcd, a client workload on each; every link of one host
  is cut, and the leading replica is SIGKILLed as soon as it reports the first affected
  protection failed over; the other finishes the recovery. ``takeover_s`` is from the
  SIGKILL until the follower reports itself leader.
- ``etcd_partition.*`` (:mod:`bench.fleet_paths`): a real COLO pair on the three-host lab,
  its right to serve at a 3-member etcd, the client workload on it; the primary's host is
  cut off from etcd only. Cable watchers on every host's service uplink and an ARP probe
  that every serving side answers (:mod:`bench.fleet_dual`) decide
  ``dual_primary_observed``: frames from the guest left the isolated host after the other
  host's began. ``etcd_partition.control``: the same with fencing disabled (tests only),
  which must observe two primaries.

``--bare`` measures only the election of two bare replicas (``python -m colopp.arbiter
elect``, no VMs) for ``controller_kill``, the partition on stand-in services
(:mod:`bench.fleet_partition`), and leaves the host keys null.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet_partition import etcd_partition
from bench.fleet_paths import etcd_partition as colo_partition
from colopp.arbiter.cluster import EtcdCluster, Events, Member, free_port


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


def with_vms(count: int, ttl: int, state: Path) -> dict[str, Any]:
    """hosts, protections, host_kill and controller_kill from the three-host lab."""
    from bench.fleet_hosts import host_kill
    from colopp.fleet.local import LocalFleet

    loop = asyncio.new_event_loop()
    try:
        local = loop.run_until_complete(LocalFleet.start(state / "lab", None, "f21bbn", taps=count))
        try:
            return host_kill(local, state, count, ttl)
        finally:
            loop.run_until_complete(local.close())
    finally:
        loop.close()


def figures(
    trials: int, ttl: int, count: int | None = 3, keep: Path | None = None
) -> dict[str, Any]:
    """Every key of issue 21's benchmark; null where not measured (see ``not_measured``).

    ``count``: protected VMs on the three-host lab (None: the bare election only);
    ``keep``: leave the lab's state (API logs, client traces) there instead of a temporary
    directory."""
    if count is not None:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True, mode=0o700)
            out = with_vms(count, ttl, keep)
            out["etcd_partition"] = colo_partition(keep / "partition")
        else:
            with tempfile.TemporaryDirectory(prefix="colopp-fleet-") as tmp:
                out = with_vms(count, ttl, Path(tmp))
                out["etcd_partition"] = colo_partition(Path(tmp) / "partition")
        out["loadavg_end"] = list(os.getloadavg())
        return out
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
    parser.add_argument("--protections", type=int, default=3, help="protected VMs (1..8)")
    parser.add_argument("--bare", action="store_true", help="the bare election only, no VMs")
    parser.add_argument("--keep", type=Path, default=None, help="keep the lab's state here")
    args = parser.parse_args()
    if not 1 <= args.protections <= 8:
        parser.error("--protections must be in 1..8")
    count = None if args.bare else args.protections
    text = json.dumps(figures(args.trials, args.ttl, count, args.keep), indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
