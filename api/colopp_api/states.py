"""A protection's state as the API reports it, and how colopp's PairState maps onto it (pure).

::

    starting ─► syncing ─► protected ─► failing_over ─► failed_over ─► reprotecting ─► protected
        │          │           │                             │
        └──────────┴───────────┴─────────► unprotecting ─► unprotected        (any) ─► error

``starting`` and ``syncing`` come from the pair's LAUNCHING and SYNCING; the same two pair
states during a re-protection (a lost host is on standby) read ``reprotecting``.
``unprotecting`` and ``unprotected`` are the API's own phases: the pair may still serve
alone (unprotected without ``stop``) or be gone (``stopped``).
"""

from __future__ import annotations

from enum import StrEnum

from colopp.colo.state import PairState


class ApiState(StrEnum):
    """The states a protection is reported in."""

    STARTING = "starting"
    SYNCING = "syncing"
    PROTECTED = "protected"
    FAILING_OVER = "failing_over"
    FAILED_OVER = "failed_over"
    REPROTECTING = "reprotecting"
    UNPROTECTING = "unprotecting"
    UNPROTECTED = "unprotected"
    ERROR = "error"


_FROM_PAIR: dict[PairState, ApiState] = {
    PairState.NEW: ApiState.STARTING,
    PairState.LAUNCHING: ApiState.STARTING,
    PairState.SYNCING: ApiState.SYNCING,
    PairState.PROTECTED: ApiState.PROTECTED,
    PairState.FAILING_OVER: ApiState.FAILING_OVER,
    PairState.FAILED_OVER: ApiState.FAILED_OVER,
    PairState.STOPPING: ApiState.UNPROTECTING,
    PairState.STOPPED: ApiState.UNPROTECTED,
    PairState.ERROR: ApiState.ERROR,
}


def from_pair(state: PairState, reprotecting: bool) -> ApiState:
    """The API state of a pair in ``state``; ``reprotecting`` when a lost host is on
    standby (a re-protection's LAUNCHING/SYNCING)."""
    if reprotecting and state in (PairState.LAUNCHING, PairState.SYNCING):
        return ApiState.REPROTECTING
    return _FROM_PAIR[state]


class Action(StrEnum):
    """What a client can ask of a protection."""

    FAILOVER = "failover"
    SWITCHOVER = "switchover"
    REPROTECT = "reprotect"
    UNPROTECT = "unprotect"


def refusal(action: Action, state: ApiState, stopped: bool) -> str | None:
    """Why ``action`` cannot apply in ``state`` (None when it can)."""
    if action in (Action.FAILOVER, Action.SWITCHOVER):
        ok = state is ApiState.PROTECTED
        need = "protected"
    elif action is Action.REPROTECT:
        ok = state is ApiState.FAILED_OVER or (state is ApiState.UNPROTECTED and not stopped)
        need = "failed_over, or unprotected with the service still running"
    else:
        # A stopped protection (unprotected, or in error) has nothing left to tear down;
        # refusing keeps an error's reason instead of overwriting it with "stopped".
        ok = state is not ApiState.UNPROTECTING and not stopped
        need = "anything but unprotecting or stopped"
    if ok:
        return None
    shown = f"{state.value} (stopped)" if stopped else state.value
    return f"cannot {action.value}: the protection is {shown}; {action.value} needs {need}"


def reconcile(
    recorded: PairState,
    modes: tuple[str | None, str | None],
    survivor_failed_over: bool,
    reprotecting: bool,
    primary_alone: bool = False,
) -> tuple[PairState, str]:
    """The true pair state after a restart, from the recorded one and what the agents say.

    ``modes`` are the COLO modes of the recorded primary and secondary (or standby, during
    a re-protection); ``survivor_failed_over`` is the recorded secondary's ``failed_over``;
    ``primary_alone`` is the recorded primary's (a lost secondary's failover).
    A PROTECTED or FAILED_OVER pair is kept: the supervisor detects a dead side on its
    first heartbeat and acts, as it would have without the restart.
    """
    in_colo = modes == ("primary", "secondary")
    if recorded in (PairState.LAUNCHING, PairState.SYNCING):
        if in_colo:
            return PairState.PROTECTED, "COLO on both sides (found after a restart)"
        if reprotecting:
            return PairState.FAILED_OVER, "the API restarted during a re-protection"
        return PairState.ERROR, "the API restarted before the pair reached COLO"
    if recorded is PairState.FAILING_OVER:
        if primary_alone:  # the failover of a lost secondary: the primary went on alone
            return PairState.FAILED_OVER, "the primary continues alone (found after a restart)"
        if survivor_failed_over:
            return PairState.FAILED_OVER, "failover completed (found after a restart)"
        return PairState.ERROR, "the API restarted during a failover; state unknown"
    if recorded is PairState.NEW:
        return PairState.ERROR, "the API restarted before the pair was launched"
    return recorded, "re-attached"
