"""Small readers of the core's action lists."""

from __future__ import annotations

from colopp.compare import Action, Checkpoint, Release


def released(actions: list[Action]) -> list[bytes]:
    return [f for a in actions if isinstance(a, Release) for f in a.frames]


def checkpoints(actions: list[Action]) -> list[str]:
    return [a.reason for a in actions if isinstance(a, Checkpoint)]
