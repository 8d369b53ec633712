"""What each agent RPC method returns (JSON objects on the wire; typed here).

The controller reads these by key; the agent builds them with these types, so a renamed
or missing field is a type error on both sides.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class PingReply(TypedDict):
    host: str
    time: float
    vm_alive: bool
    qmp_ok: bool
    checkpoint_stalled_s: float
    self_fenced: bool
    role: str | None
    restarting_s: NotRequired[float]  # the agent exits for a restart: back within this


class ProbeTcpReply(TypedDict, total=False):
    reachable: bool
    error: str


class ProbeQemuReply(TypedDict):
    version: str
    runtime: str


class LaunchReply(TypedDict):
    pid: int | None
    run_dir: str


class BootReply(TypedDict):
    boot_s: float


class PrepareReply(TypedDict):
    nbd: int
    migration: int


class StartedReply(TypedDict):
    started: bool
    fallbacks: list[tuple[str, float]]  # colopp.colo.converge stages taken, seconds in
    stage: str  # the pre-copy's last stage ("live": it converged by itself)


class ResumeReply(TypedDict):
    resync_s: float
    precopy_s: float  # RAM pre-copy with the guest running
    switch_ms: float  # the guest stopped, before QEMU was told to enter COLO
    downtime_ms: float  # QEMU's own figure for the migration's stop
    linked_wait_s: float  # waiting for the new secondary's network links
    colo_after_continue_ms: float
    took_s: float
    # (plan point or ``qemu:STOP``/``qemu:RESUME``, wall-clock seconds), in time order
    timeline: list[tuple[str, float]]
    fallbacks: list[tuple[str, float]]  # colopp.colo.converge stages taken, seconds in
    stage: str  # the pre-copy's last stage ("live": it converged by itself)


class FailoverReply(TypedDict):
    role: str
    took_ms: float
    # A promoted secondary: when QEMU reported its guest running, ms after the sequence
    # started (0: it never stopped; None: not within 5 s, or a primary).
    guest_running_ms: float | None
    # A promoted secondary under TCG: its stale translated code dropped (``flushed``), see
    # colopp/agent/tcg_flush.py; ``not_tcg`` under KVM; None for a primary.
    tcg_flush: str | None
    # A promoted secondary: each QMP step (and QEMU's RESUME), ms after the sequence began.
    timeline_ms: list[tuple[str, float]]


class PidReply(TypedDict):
    pid: int | None


class KillReply(TypedDict):
    pid: int | None
    signal: int


class StopReply(TypedDict, total=False):
    stopped: bool
    returncode: int | None


class ComparatorStatus(TypedDict):
    pid: int | None
    alive: bool
    restarts: int
    counters: dict[str, Any]


class StatusReply(TypedDict, total=False):
    host: str
    role: str | None
    backend: str
    pid: int | None
    vm_alive: bool
    returncode: int | None
    failed_over: bool
    checkpoints: int
    last_checkpoint_at: float | None
    checkpoint_pauses_ms: list[float]
    colo_exit: dict[str, Any] | None
    vcpu: dict[str, Any] | None
    comparator: ComparatorStatus
    ingress: ComparatorStatus  # a secondary's relay (agent/comparing.py)
    translation: dict[str, Any]
    colo: Any
    migration: Any
    qmp_error: str
