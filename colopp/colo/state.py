"""The protected pair's lifecycle as an explicit state machine.

::

    NEW ─► LAUNCHING ─► SYNCING ─► PROTECTED ─► FAILING_OVER ─► FAILED_OVER
     │         │           │           │              │              │
     └─────────┴───────────┴───────────┴──────────────┴──► STOPPING ─► STOPPED
               └───────────┴───────────┴──────────────┴──► ERROR ─► STOPPING

``FAILED_OVER`` means one side serves alone (unprotected); re-protection
(``FAILED_OVER → LAUNCHING``) starts a new secondary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from colopp.errors import StateError


class PairState(StrEnum):
    """Where the pair is in its life."""

    NEW = "new"
    LAUNCHING = "launching"
    SYNCING = "syncing"
    PROTECTED = "protected"
    FAILING_OVER = "failing_over"
    FAILED_OVER = "failed_over"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


_ALLOWED: dict[PairState, frozenset[PairState]] = {
    PairState.NEW: frozenset({PairState.LAUNCHING, PairState.STOPPING}),
    PairState.LAUNCHING: frozenset({PairState.SYNCING, PairState.ERROR, PairState.STOPPING}),
    PairState.SYNCING: frozenset({PairState.PROTECTED, PairState.ERROR, PairState.STOPPING}),
    PairState.PROTECTED: frozenset({PairState.FAILING_OVER, PairState.ERROR, PairState.STOPPING}),
    PairState.FAILING_OVER: frozenset({PairState.FAILED_OVER, PairState.ERROR, PairState.STOPPING}),
    PairState.FAILED_OVER: frozenset({PairState.LAUNCHING, PairState.ERROR, PairState.STOPPING}),
    PairState.ERROR: frozenset({PairState.STOPPING}),
    PairState.STOPPING: frozenset({PairState.STOPPED}),
    PairState.STOPPED: frozenset(),
}


def allowed(source: PairState, target: PairState) -> bool:
    """Whether ``source → target`` is a legal transition."""
    return target in _ALLOWED[source]


@dataclass(frozen=True)
class Transition:
    """One recorded step."""

    source: PairState
    target: PairState
    at: float
    reason: str


@dataclass
class PairLifecycle:
    """Holds the current state and the exact history of transitions."""

    state: PairState = PairState.NEW
    history: list[Transition] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    on_change: Callable[[Transition], None] | None = None

    def move(self, target: PairState, reason: str = "") -> Transition:
        """Go to ``target``.

        Raises:
            StateError: the transition is not allowed from the current state.
        """
        if not allowed(self.state, target):
            raise StateError(
                f"pair cannot go from {self.state} to {target} ({reason or 'no reason'})"
            )
        step = Transition(self.state, target, self.clock(), reason)
        self.state = target
        self.history.append(step)
        if self.on_change is not None:
            self.on_change(step)
        return step

    def require(self, *states: PairState) -> None:
        """Raise StateError unless the pair is in one of ``states``."""
        if self.state not in states:
            names = ", ".join(s.value for s in states)
            raise StateError(f"pair is {self.state}, this needs {names}")

    def path(self) -> list[PairState]:
        """The states visited, starting from the first."""
        if not self.history:
            return [self.state]
        return [self.history[0].source, *(t.target for t in self.history)]
