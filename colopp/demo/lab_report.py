"""Where frames move in the lab while a client gets no answers: every namespace's interface
counters, twice, ``interval`` seconds apart, as the packets each interface received, sent
and dropped in between (for :class:`~colopp.demo.harness.WorkloadStuck`'s message: a
stalled hop shows as the first interface on the path whose counters stand still)."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from colopp.lab import LabPlan, netns_argv

#: Seconds between the two looks at the counters.
TRAFFIC_WINDOW_S = 2.0
#: Counters read from ``ip -s -j link``: (direction, field).
_FIELDS = (("rx", "packets"), ("tx", "packets"), ("rx", "dropped"), ("tx", "dropped"))


def counters(links: list[dict[str, Any]]) -> dict[str, tuple[int, ...]]:
    """Interface name -> (rx packets, tx packets, rx dropped, tx dropped) from ``ip -s -j
    link show``'s output; interfaces without ``stats64`` are left out."""
    out: dict[str, tuple[int, ...]] = {}
    for link in links:
        stats = link.get("stats64")
        name = link.get("ifname")
        if not isinstance(stats, dict) or not isinstance(name, str):
            continue
        try:
            out[name] = tuple(int(stats[d][f]) for d, f in _FIELDS)
        except (KeyError, TypeError, ValueError):
            continue
    return out


def traffic_deltas(
    netns: str, before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]]
) -> list[str]:
    """One line per interface of ``netns`` present both times: what moved in between (an
    interface that moved nothing says so too: that is the finding)."""
    lines = []
    for name in sorted(before.keys() & after.keys()):
        rx, tx, rx_drop, tx_drop = (b - a for a, b in zip(before[name], after[name], strict=True))
        drops = f" dropped rx +{rx_drop} tx +{tx_drop}" if rx_drop or tx_drop else ""
        lines.append(f"{netns} {name}: rx +{rx} tx +{tx} packets{drops}")
    return lines


def _snapshot(netns: str) -> dict[str, tuple[int, ...]] | str:
    try:
        done = subprocess.run(
            netns_argv(netns, ["ip", "-s", "-j", "link", "show"]),
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{netns} ip: {exc}"
    if done.returncode != 0:
        return f"{netns} ip: exit {done.returncode} {done.stderr.strip()}"
    try:
        links = json.loads(done.stdout)
    except ValueError as exc:
        return f"{netns} ip: unreadable output ({exc})"
    return counters(links if isinstance(links, list) else [])


def lab_traffic(plan: LabPlan, interval: float | None = None, limit: int = 80) -> list[str]:
    """Each namespace's per-interface packets over ``interval`` seconds (default
    :data:`TRAFFIC_WINDOW_S`; a measurement window, not a wait for anything); a namespace
    that cannot be asked says why."""
    first = {netns: _snapshot(netns) for netns in plan.namespaces}
    time.sleep(TRAFFIC_WINDOW_S if interval is None else interval)
    lines: list[str] = []
    for netns, before in first.items():
        after = _snapshot(netns)
        if isinstance(before, str) or isinstance(after, str):
            lines.append(before if isinstance(before, str) else str(after))
            continue
        lines += traffic_deltas(netns, before, after)
    return lines[:limit]
