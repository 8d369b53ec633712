"""What the agent knows about the VM side it runs: process, monitor, checkpoint history."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from colopp.agent.comparator_process import ComparatorProcess
from colopp.domain import Backend, SideSpec, VmSpec
from colopp.vcpu.shrink import VcpuState
from colopp.virt import QmpChannel, VmProcess


@dataclass
class CheckpointLog:
    """Checkpoints seen on this side's QMP: STOP → RESUME while in COLO."""

    count: int = 0
    last_at: float | None = None
    pauses_ms: list[float] = field(default_factory=list)
    colo_exit: dict[str, Any] | None = None
    _stopped_at: float | None = None
    #: Called at each RESUME after a STOP (a checkpoint loaded; the secondary's relay).
    on_resume: Callable[[], None] | None = None

    def on_event(self, name: str, stamp: float) -> None:
        """Feed one QMP event (name, QEMU's timestamp)."""
        if name == "STOP":
            self._stopped_at = stamp
        elif name == "RESUME" and self._stopped_at is not None:
            self.count += 1
            self.last_at = stamp
            self.pauses_ms.append((stamp - self._stopped_at) * 1000.0)
            del self.pauses_ms[:-256]
            self._stopped_at = None
            if self.on_resume is not None:
                self.on_resume()

    def stalled_for(self, now: float) -> float:
        """Seconds the current checkpoint has kept the VM stopped (0 when running)."""
        return max(0.0, now - self._stopped_at) if self._stopped_at is not None else 0.0


def event_stamp(event: dict[str, Any]) -> float:
    ts = event.get("timestamp", {})
    return float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6


@dataclass
class Side:
    """The VM side this agent runs."""

    vm: VmSpec
    spec: SideSpec
    process: VmProcess
    monitor: QmpChannel
    checkpoints: CheckpointLog = field(default_factory=CheckpointLog)
    watcher: asyncio.Task[None] | None = None
    failed_over: bool = False
    # The controller told this primary to continue alone: it is the designated survivor,
    # so the lease no longer fences it, even while its failover sequence runs.
    going_alone: bool = False
    comparator: ComparatorProcess | None = None
    ingress: ComparatorProcess | None = None  # a secondary's relay (agent/comparing.py)
    checkpoint_delay_ms: int = 2000
    vcpu: VcpuState | None = None  # the semi-active shrink in force, if any

    @property
    def backend(self) -> Backend:
        return self.spec.options.backend
