"""Which notifications a protection's event is (pure).

=====================  ============================================================
``failover``           a failure made the secondary (or the primary, alone) serve
``switchover``         a planned switchover completed (or failed: ``data.error``)
``lost_redundancy``    the protection left ``protected``: the VM runs without a replica
``reprotected``        back to ``protected`` after having lost its replica
``error``              an action failed, or the protection is in ``error``
``state``              every change of the protection's state
=====================  ============================================================
"""

from __future__ import annotations

from typing import Any

KINDS = ("failover", "switchover", "lost_redundancy", "reprotected", "error", "state")


def classify(event: str, data: dict[str, Any], before: str | None) -> list[str]:
    """The notification kinds of one event; ``before`` is the protection's API state before
    it (None when unknown). A ``state`` event's ``target`` is the new API state."""
    if event in ("failover", "switchover"):
        return [event]
    if event == "error":
        return ["error"]
    if event != "state":
        return []
    target = data.get("target")
    if target == before:
        return []
    kinds = ["state"]
    if before == "protected":
        kinds.append("lost_redundancy")
    elif target == "protected" and before in ("failed_over", "reprotecting", "unprotected"):
        kinds.append("reprotected")
    if target == "error" and "pair_state" in data:  # an "error" event follows the others
        kinds.append("error")
    return kinds
