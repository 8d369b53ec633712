"""Synthetic samples and events in the shapes the API's sampler writes (for the fast browser
test and for looking at the dashboard without a lab)."""

from __future__ import annotations

import random
from typing import Any

from colopp_api.db.store import Store

HOLD_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 10.0]


class SyntheticPair:
    """A pair's counters evolving one sample at a time (a failover swaps the roles)."""

    def __init__(self, start: float, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.t = start
        self.primary, self.secondary = "hosta", "hostb"
        self.pids = {"hosta": 4242, "hostb": 4343}
        self.cpu = {"hosta": 10.0, "hostb": 8.0}
        self.checkpoints = 0
        self.comparator = {"compared": 0, "released": 0, "prereleased": 0}
        self.divergences: dict[str, int] = {}
        self.hold_counts = [0] * (len(HOLD_BUCKETS) + 1)
        self.hold_sum = 0.0
        self.last_checkpoint_at: float | None = None

    def failover(self) -> tuple[float, str, dict[str, Any]]:
        lost = self.primary
        self.primary, self.secondary = self.secondary, lost
        self.pids[lost] += 1000  # a new QEMU on the lost host later
        self.cpu[lost] = 0.0
        self.checkpoints = 0
        return (
            self.t,
            "failover",
            {"role": "primary", "host": lost, "health": "manual", "fenced": True},
        )

    def step(
        self, dt: float = 1.0
    ) -> tuple[dict[str, Any], list[tuple[float, str, dict[str, Any]]]]:
        self.t += dt
        rng = self.rng
        events: list[tuple[float, str, dict[str, Any]]] = []
        reasons: dict[str, int] = {}
        pauses: list[float] = []
        if rng.random() < 0.5:  # x-checkpoint-delay 2000
            reasons["periodic"] = 1
        if rng.random() < 0.15:
            reason = rng.choice(["payload", "tcp_flags"])
            reasons[reason] = reasons.get(reason, 0) + 1
            self.divergences[reason] = self.divergences.get(reason, 0) + 1
            events.append((self.t, "divergence", {"reason": reason, "count": 1}))
        for reason, n in reasons.items():
            for _ in range(n):
                pause = rng.uniform(40, 55) if rng.random() < 0.95 else rng.uniform(80, 140)
                pauses.append(round(pause, 3))
                events.append((self.t, "checkpoint", {"reason": reason, "pause_ms": pause}))
        new = sum(reasons.values())
        self.checkpoints += new
        if new:
            self.last_checkpoint_at = self.t - rng.uniform(0, dt)
        frames = rng.randint(20, 60)
        early = rng.randint(0, frames // 2)
        self.comparator["compared"] += frames
        self.comparator["prereleased"] += early
        self.comparator["released"] += frames + rng.randint(0, 3)
        for _ in range(frames):
            held = rng.lognormvariate(-6.5, 1.0)
            self.hold_counts[sum(1 for b in HOLD_BUCKETS if b < held)] += 1
            self.hold_sum += held
        self.cpu[self.primary] += rng.uniform(0.10, 0.16) * dt
        self.cpu[self.secondary] += rng.uniform(0.05, 0.09) * dt
        sample = {
            "t": self.t,
            "state": "protected",
            "primary": self.primary,
            "secondary": self.secondary,
            "checkpoints": self.checkpoints,
            "new_checkpoints": new,
            "checkpoint_pauses_ms": pauses,
            "last_checkpoint_at": self.last_checkpoint_at,
            "pids": dict(self.pids),
            "cpu_seconds": {h: round(c, 2) for h, c in self.cpu.items()},
            "comparator": dict(
                self.comparator,
                divergences=sum(self.divergences.values()),
                passthrough_by_ethertype={"0x0806": 4},
                passthrough_ipv6_control=2,
            ),
            "divergences": dict(self.divergences),
            "checkpoint_reasons": reasons,
            "hold_time": {
                "buckets": HOLD_BUCKETS,
                "counts": list(self.hold_counts),
                "sum": self.hold_sum,
            },
        }
        return sample, events


def seed_protection(
    store: Store, name: str, start: float, seconds: int, failover_at: int | None
) -> tuple[str, SyntheticPair]:
    """A protection row with ``seconds`` of samples from ``start`` (and a failover)."""
    row = store.add_protection(
        id=f"{abs(hash(name)) % 16**12:012x}",
        name=name,
        placement="hosts",
        options={"name": name, "placement": "hosts", "comparator": "colopp", "prerelease": "auto"},
        state="protected",
        reason=None,
        runtime={},
    )
    pair = SyntheticPair(start)
    for i in range(seconds):
        if i == failover_at:
            store.add_events(row["id"], [pair.failover()])
        sample, events = pair.step()
        store.add_sample(row["id"], sample["t"], sample)
        store.add_events(row["id"], events)
    store.update_protection(
        row["id"],
        primary_host=pair.primary,
        secondary_host=pair.secondary,
        checkpoints=pair.checkpoints,
        last_checkpoint_at=pair.last_checkpoint_at,
        # Stopped: the API has no runner to re-attach for a synthetic pair.
        stopped=True,
    )
    return row["id"], pair
