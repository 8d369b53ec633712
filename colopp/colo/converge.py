"""Bounds for the live copy (pure): when a disk mirror or RAM pre-copy that does not
converge falls back to copying with the guest stopped, and when colopp gives up.

A pre-copy converges only if QEMU can send what the guest dirties faster than it is
dirtied: under TCG on a loaded host (a new secondary throttled to half a CPU, other
work on the same two cores) the link rate QEMU measures can stay below the guest's dirty
rate, and QEMU then iterates for ever (it has no bound of its own; it finishes only when
what is left fits in ``downtime-limit`` at the measured rate). Each stage below makes
convergence more certain at the price of a longer pause:

``LIVE``           the plan's pre-copy: pause ≤ ``DOWNTIME_LIMIT_MS`` (colopp.colo.live).
``WIDEN``          ``downtime-limit`` raised to ``widened_downtime_ms``: a dirty working set
                   that fits in that pause at the link's rate finishes now.
``STOP_AND_COPY``  QEMU's own stop-and-copy: the bandwidth cap is lifted, QEMU is told the
                   switchover may use the full link (``avail-switchover-bandwidth``) and
                   pause up to a minute (``downtime-limit``): at its next check what is
                   left fits, so QEMU stops the guest and sends all of it, then waits in
                   ``pre-switchover`` as usual. The pause is what was left over the link's
                   rate (the old stop-the-world re-protection at worst). QEMU stops the
                   guest itself, not colopp: its migrated run state stays "running", so the
                   new secondary resumes it after a failover like any other.
``GIVE_UP``        even that did not finish: the migration and the mirror are cancelled, the
                   guest runs on unprotected and the error says what was left.

The disk mirror has its own two stages: a background mirror that is not ready in
``mirror_s`` switches to ``write-blocking`` (every guest write then reaches the target
before it completes, so only the background pass is left), and gives up at
``mirror_give_up_s``.

Stages escalate on time, or early on QEMU's own count of dirty-bitmap passes
(``dirty-sync-count``): QEMU syncs the bitmap when what is left looks small enough to
finish, so a growing count without a switch is a pre-copy that keeps missing.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields
from typing import Any

from colopp.colo.live import MAX_BANDWIDTH, MIRROR_JOB
from colopp.colo.sequence import QmpStep
from colopp.errors import ConfigError

# Downtime limit of the stop-and-copy stage: QEMU finishes at its next check.
STOPPED_DOWNTIME_MS = 60_000


class Stage(enum.IntEnum):
    """How hard the copy is pushed to finish (only ever escalates)."""

    LIVE = 0
    WIDEN = 1
    STOP_AND_COPY = 2
    GIVE_UP = 3


class MirrorStage(enum.IntEnum):
    """The disk mirror's stages."""

    BACKGROUND = 0
    WRITE_BLOCKING = 1
    GIVE_UP = 2


@dataclass(frozen=True)
class LiveBudget:
    """How long each stage may last. Pre-copy times count from ``migrate`` and grow by
    ``per_gib_s`` per GiB of guest RAM (the first pass alone must send all of it);
    mirror times count from ``drive-mirror``, and a mirror gives up early once it copied
    nothing for ``mirror_stall_s`` (a large disk may take long, a stuck one may not).
    ``precopy_bandwidth`` caps the pre-copy (bytes/s) until stop-and-copy lifts it (a slow
    or shared replication link; tests use it for a pre-copy that cannot converge)."""

    mirror_s: float = 60.0
    mirror_stall_s: float = 30.0
    mirror_give_up_s: float = 900.0
    widen_s: float = 10.0
    stop_s: float = 20.0
    give_up_s: float = 80.0
    per_gib_s: float = 4.0
    widen_passes: int = 8
    stop_passes: int = 16
    widened_downtime_ms: int = 250
    precopy_bandwidth: int = MAX_BANDWIDTH

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"live budget {field.name} must be a positive number: {value!r}")
        if not self.mirror_s <= self.mirror_give_up_s:
            raise ConfigError("live budget: mirror_s must not exceed mirror_give_up_s")
        if not self.widen_s <= self.stop_s < self.give_up_s:
            raise ConfigError("live budget: need widen_s <= stop_s < give_up_s")
        if not self.widen_passes <= self.stop_passes:
            raise ConfigError("live budget: widen_passes must not exceed stop_passes")

    def precopy_s(self, memory_mb: int) -> float:
        """What the pre-copy's stage times grow by for a guest of ``memory_mb``."""
        return self.per_gib_s * memory_mb / 1024

    def bound_s(self, memory_mb: int) -> float:
        """The longest a live protection of a ``memory_mb`` guest can take before it has
        finished or failed (the callers' RPC timeout builds on it)."""
        return self.mirror_give_up_s + self.give_up_s + self.precopy_s(memory_mb) + SWITCH_BOUND_S

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LiveBudget:
        """A budget from an RPC argument (None: the defaults).

        Raises:
            ConfigError: an unknown field or a bad value.
        """
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"live budget must be an object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown live budget fields: {', '.join(unknown)}")
        return cls(**data)


# What may follow the pre-switchover pause (the link wait, mirror completion, COLO start
# and the guest's resume; live_protect's own timeouts): part of LiveBudget.bound_s.
SWITCH_BOUND_S = 5.0 + 30.0 + 60.0 + 30.0


def precopy_stage(elapsed_s: float, passes: int, memory_mb: int, budget: LiveBudget) -> Stage:
    """The stage a pre-copy of a ``memory_mb`` guest should be in, ``elapsed_s`` after
    ``migrate`` and after ``passes`` dirty-bitmap syncs (query-migrate's
    ``ram.dirty-sync-count``)."""
    at = elapsed_s - budget.precopy_s(memory_mb)
    if at >= budget.give_up_s:
        return Stage.GIVE_UP
    if at >= budget.stop_s or passes >= budget.stop_passes:
        return Stage.STOP_AND_COPY
    if at >= budget.widen_s or passes >= budget.widen_passes:
        return Stage.WIDEN
    return Stage.LIVE


def mirror_stage(elapsed_s: float, stalled_s: float, budget: LiveBudget) -> MirrorStage:
    """The stage a mirror that is not ready yet should be in, ``elapsed_s`` after it
    began and ``stalled_s`` after it last copied a byte."""
    if elapsed_s >= budget.mirror_give_up_s or stalled_s >= budget.mirror_stall_s:
        return MirrorStage.GIVE_UP
    if elapsed_s >= budget.mirror_s:
        return MirrorStage.WRITE_BLOCKING
    return MirrorStage.BACKGROUND


def stage_steps(stage: Stage, budget: LiveBudget) -> list[QmpStep]:
    """The QMP steps that enter ``stage`` (none for LIVE and GIVE_UP: the plan's own
    parameters, and the agent's cancellation)."""
    if stage is Stage.WIDEN:
        return [QmpStep("migrate-set-parameters", {"downtime-limit": budget.widened_downtime_ms})]
    if stage is Stage.STOP_AND_COPY:
        return [
            QmpStep(
                "migrate-set-parameters",
                {
                    "max-bandwidth": MAX_BANDWIDTH,
                    "avail-switchover-bandwidth": MAX_BANDWIDTH,
                    "downtime-limit": STOPPED_DOWNTIME_MS,
                },
            )
        ]
    return []


def mirror_steps(stage: MirrorStage) -> list[QmpStep]:
    """The QMP steps that enter a mirror ``stage``."""
    if stage is MirrorStage.WRITE_BLOCKING:
        return [
            QmpStep(
                "block-job-change",
                {"id": MIRROR_JOB, "type": "mirror", "copy-mode": "write-blocking"},
            )
        ]
    return []


def migration_passes(info: Any) -> int:
    """``ram.dirty-sync-count`` from a query-migrate reply (0 when absent)."""
    if not isinstance(info, dict):
        return 0
    ram = info.get("ram")
    count = ram.get("dirty-sync-count", 0) if isinstance(ram, dict) else 0
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def describe_progress(info: Any) -> str:
    """A short account of a query-migrate reply for errors and logs."""
    if not isinstance(info, dict):
        return f"query-migrate: {info!r}"
    ram = info.get("ram") if isinstance(info.get("ram"), dict) else {}
    assert isinstance(ram, dict)
    return (
        f"status {info.get('status')}, {ram.get('remaining', '?')} bytes of RAM left, "
        f"{ram.get('mbps', '?')} Mbit/s, dirty rate {ram.get('dirty-pages-rate', '?')} "
        f"pages/s, {ram.get('dirty-sync-count', '?')} passes"
    )
