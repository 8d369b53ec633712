"""The etcd partition on a real COLO pair, judged on the cables (``etcd_partition``).

The fleet lab's three hosts (:class:`colopp.fleet.local.LocalFleet`), a 3-member etcd
that the agents reach over the management network, one kvd guest protected with its right
to serve held at etcd. A cable watcher runs on every host's service uplink, an ARP probe
in the client's namespace makes every serving side answer (:mod:`bench.fleet_dual`), and
the client workload runs throughout. Then the primary's host is cut off from etcd only (a
firewall rule in its namespace: it still reaches its peer, the controller and the client).

- ``fence=True`` (the real thing): the pair is supervised; the isolated primary's agent
  must fence its QEMU before its lease expires; the supervisor fails over to the
  secondary, which takes the right with a larger token and serves.
- ``fence=False`` (the control, tests only): the sides hold their right with
  ``unsafe_no_fence``, so the isolated primary keeps running when its right lapses. The
  controller (this code) fails the pair over as the supervisor would have, once the old
  right lapsed; the old primary, which now hears no secondary, is then told to serve alone
  without a token (what a single controller, or a deposed one, sends when it thinks the
  secondary is gone). Nothing stops it: both sides serve, and the watchers must see it.

``dual_primary_observed`` is :func:`bench.fleet_dual.verdict`'s over the frames.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.fleet_dual import verdict
from colopp.arbiter.cluster import EtcdCluster, Events, Member, free_port
from colopp.controller.rights import PairRights
from colopp.demo.harness import ClientWorkload
from colopp.domain import Role
from colopp.errors import ColoppError
from colopp.fleet.local import LocalFleet, guest_address
from colopp.lab import Network, Node
from colopp.polling import await_until

MODULE = "bench.fleet_dual"


def etcd_rule(netns: str, ports: list[int], action: str) -> None:
    """Add (``-I``) or delete (``-D``) the rule that cuts ``netns`` off from etcd only."""
    argv = ["ip", "netns", "exec", netns, "iptables", action, "OUTPUT", "-p", "tcp"]
    argv += ["-m", "multiport", "--dports", ",".join(map(str, ports)), "-j", "DROP"]
    subprocess.run(argv, check=True, capture_output=True)


class Cables:
    """A watcher on every host's service uplink and the client's ARP probe."""

    def __init__(self, local: LocalFleet, slot: int) -> None:
        plan = local.deployment.plan
        mac = local.vm("probe", slot).mac
        assert mac is not None
        self.watchers: dict[str, Events] = {}
        for node in local.deployment.hosts:
            ifname = plan.cable(node, Network.SERVICE).node_ifname
            argv = ["watch", "--ifname", ifname, "--mac", mac]
            self.watchers[node.value] = Events(argv, plan.netns(node), module=MODULE)
        client = plan.cable(Node.CLIENT, Network.SERVICE).node_ifname
        source = str(plan.address(Node.CLIENT, Network.SERVICE))
        argv = ["probe", "--ifname", client, "--source", source]
        argv += ["--target", str(guest_address(slot).ip)]
        self.probe = Events(argv, plan.netns(Node.CLIENT), module=MODULE)
        for events in (*self.watchers.values(), self.probe):
            events.wait_for("started", timeout=30)

    def frames(self) -> dict[str, list[float]]:
        """Stop the probe and the watchers; every host's frame times."""
        self.probe.proc.send_signal(signal.SIGTERM)
        out = {}
        for host, events in self.watchers.items():
            events.proc.send_signal(signal.SIGTERM)
            out[host] = events.wait_for("frames", timeout=30)["times"]
        return out

    def kill(self) -> None:
        for events in (*self.watchers.values(), self.probe):
            events.kill()


async def partition(
    local: LocalFleet, ports: list[int], name: str, fence: bool = True, after_s: float = 6.0
) -> dict[str, Any]:
    """Protect ``name``, cut its primary's host off from etcd (``ports``: the members'
    client ports), watch the cables; the verdict and timings (see the module).
    ``after_s``: how long the cables are watched once the other side served."""
    local.fleet.unsafe_no_fence = not fence
    made, target = await local.protect(name)
    old, new = made.sides.primary, made.sides.secondary
    assert new is not None
    held = await made.agents[old].call("right_status", timeout=10)
    netns = local.deployment.plan.netns(Node(old))
    cables = Cables(local, made.slot)
    load = ClientWorkload(local.deployment.plan, target=target)
    cut, refused = False, None
    try:
        await asyncio.to_thread(load.served, 20)
        if fence:
            supervisor = local.fleet.supervise(name)
            await await_until("heartbeats", lambda: supervisor.rounds >= 3, 30)
        etcd_rule(netns, ports, "-I")
        cut, cut_at = True, time.monotonic()
        if fence:
            await await_until("served by the secondary", lambda: made.pair.primary.name == new, 60)
        else:
            refused = await _serve_twice(local, name, old)
        served_s = time.monotonic() - cut_at
        await asyncio.sleep(after_s)  # the watchers and the probe keep going
        frames = cables.frames()
        old_right = await made.agents[old].call("right_status", timeout=10)
        new_right = await made.agents[new].call("right_status", timeout=10)
        summary = await asyncio.to_thread(load.finish) if fence else None
    finally:
        load.kill()
        cables.kill()
        if cut:
            etcd_rule(netns, ports, "-D")
    seen = verdict(frames, cut_at, old, new)
    await local.fleet.stop(name)
    return {
        **seen,
        "fencing": fence,
        "isolated_host": old,
        "other_host": new,
        "cut_to_other_served_s": round(served_s, 3),
        "old_right": old_right,
        "new_right": new_right,
        "token_before": held["token"],
        "old_primary_refused": refused,
        "requests_failed": None if summary is None else summary["requests_failed"],
        "writes_lost": None if summary is None else summary["writes_lost"],
        "scope": "a real COLO pair (kvd guest) on the three-host lab; frames from the"
        " guest's MAC leaving each host's service uplink, an ARP probe every 50 ms that every"
        " serving side answers; the primary's host cut off from etcd only (iptables)",
    }


async def _serve_twice(local: LocalFleet, name: str, old: str) -> str | None:
    """The control: fail over once the old right lapsed, then have the old primary serve
    alone too (no token: nothing fences it, nothing refuses it); its agent's error, if any."""
    made = local.fleet.protections[name]

    async def lapsed() -> bool:
        status = await made.agents[old].call("right_status", timeout=5)
        return bool(status["state"] != "holding")

    deadline = time.monotonic() + 30
    while not await lapsed():
        if time.monotonic() > deadline:
            raise TimeoutError("the isolated primary's right never lapsed")
        await asyncio.sleep(0.1)
    await made.pair.failover(Role.PRIMARY)
    try:
        await made.agents[old].call("failover", timeout=30)
    except ColoppError as exc:  # reported: the control then shows what it shows
        return str(exc)
    return None


async def _on_lab(state: Path) -> dict[str, Any]:
    loadavg = [list(os.getloadavg())]
    local = await LocalFleet.start(state / "lab", None, "f21bpt", taps=1)
    root = str(local.deployment.plan.address(Node.CONTROLLER, Network.MANAGEMENT))
    members = [Member(f"m{i}", root, free_port(), free_port()) for i in range(3)]
    (state / "etcd").mkdir()
    cluster = EtcdCluster(members, state / "etcd")
    try:
        cluster.start()
        local.fleet.etcd_endpoints = [m.client_url for m in members]
        ports = [m.client_port for m in members]
        fenced = await partition(local, ports, "vm0", fence=True)
        control = await partition(local, ports, "vm1", fence=False)
    finally:
        await local.close()
        cluster.stop()
    keys = ("dual_primary_observed", "late_frames", "intervals_both", "old_right")
    return {
        **fenced,
        "ttl_s": PairRights.ttl,
        "loadavg_start_end": [*loadavg, list(os.getloadavg())],
        "control": {k: control[k] for k in keys} | {"fencing": False},
    }


def etcd_partition(state: Path) -> dict[str, Any]:
    """``etcd_partition`` for ``bench.fleet``: the fenced run, and the control's verdict
    under ``control`` (root, etcd, QEMU; takes the lab lock)."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_on_lab(state))
    finally:
        loop.close()
