"""Where each failed client request of bench.fleet's host kill falls (pure).

Every failed request is placed on its protection's timeline (times in seconds after the
host's links were cut, wall clock of this machine for both the client and the API):

- ``served_again``: the protection's first ``failed_over`` state after the cut (its
  survivor releases output again), from a ``state`` event or from what a replica taking
  the lead found (``reattached``); ``reprotected``: its first ``protected`` state after
  that (re-protected, here onto another host).

The documented window (README, "A protected fleet"): a request to a protection whose
*primary* ran on the lost host, sent before its survivor served again, may fail: it went to
a dead host, and its TCP retransmissions (exponential back-off) or the client's own
timeout decide whether it is answered once the survivor serves. Every other failure
counts in ``requests_failed_outside_window``: on a protection that kept its primary, sent
after the survivor served, during the re-protection, or on an unaffected protection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: The rule, as the bench's JSON states it.
WINDOW_RULE = (
    "in the window: a request to a protection whose primary ran on the lost host, in flight"
    " at the cut or sent after it, and sent before its survivor served again"
    " (timelines_s.served_again)"
)

#: The phases, in time order.
PHASES = ("before_cut", "failover", "reprotection", "after")


@dataclass(frozen=True)
class Timeline:
    """One protection's events after the cut (seconds after the cut; None: never seen)."""

    lost_role: str | None  # "primary", "secondary" or None (not affected)
    served_again: float | None
    reprotected: float | None


@dataclass(frozen=True)
class Failure:
    """One failed request, placed on its protection's timeline."""

    vm: str
    failed_s: float  # after the cut
    sent_s: float | None  # after the cut (None: not traced)
    error: str
    phase: str
    in_window: bool


def timeline(events: Iterable[Mapping[str, Any]], cut: float, lost_role: str | None) -> Timeline:
    """A protection's timeline from its API events (``t`` wall clock, ``type``, ``data``)."""
    served = reprotected = None
    for event in sorted(events, key=lambda e: float(e["t"])):
        t = float(event["t"]) - cut
        if t < 0 or event["type"] not in ("state", "reattached"):
            continue
        # A replica taking the lead reports what it found as "reattached" (``state``).
        data = event["data"]
        target = data.get("target") if event["type"] == "state" else data.get("state")
        if target == "failed_over" and served is None:
            served = t
        elif target == "protected" and served is not None and reprotected is None:
            reprotected = t
    return Timeline(lost_role, served, reprotected)


def phase_of(at: float, line: Timeline) -> str:
    """Which phase of ``line`` the time ``at`` (after the cut) is in."""
    if at < 0:
        return "before_cut"
    if line.lost_role is None:
        return "after"
    if line.served_again is None or at < line.served_again:
        return "failover"
    if line.reprotected is None or at < line.reprotected:
        return "reprotection"
    return "after"


def place(vm: str, failed_s: float, sent_s: float | None, error: str, line: Timeline) -> Failure:
    """Place one failure: in the window iff the VM's primary was lost, the request failed
    after the cut and was sent (untraced: failed) before the survivor served again."""
    at = sent_s if sent_s is not None else failed_s
    # A request sent before the cut that failed after it was in flight at the cut.
    phase = phase_of(max(at, 0.0) if failed_s >= 0 else at, line)
    in_window = line.lost_role == "primary" and failed_s >= 0 and phase == "failover"
    sent = None if sent_s is None else round(sent_s, 3)
    return Failure(vm, round(failed_s, 3), sent, error, phase, in_window)


def sent_times(
    trace: Sequence[Sequence[Any]], failures: Sequence[Sequence[Any]], cut: float
) -> list[float | None]:
    """For each failure ``(t, error)``, when its request was sent (after the cut), from the
    workload's trace ``(connection, method, sent, ended, outcome)``: the failed trace entry
    that ended closest to ``t`` (within 0.5 s) with the same exception type; else None."""
    failed = [row for row in trace if row[4] != "ok"]
    out: list[float | None] = []
    used: set[int] = set()
    for t, error in failures:
        kind = str(error).split(":", 1)[0]
        best: tuple[float, int] | None = None
        for i, row in enumerate(failed):
            gap = abs(float(row[3]) - float(t))
            if i not in used and row[4] == kind and gap <= 0.5 and (best is None or gap < best[0]):
                best = (gap, i)
        if best is None:
            out.append(None)
        else:
            used.add(best[1])
            out.append(float(failed[best[1]][2]) - cut)
    return out


def classify(
    vm: str,
    failures: Sequence[Sequence[Any]],
    sent: Sequence[float | None],
    cut: float,
    line: Timeline,
) -> list[Failure]:
    """Every failure ``(t, error)`` of one VM's workload, placed."""
    return [
        place(vm, float(t) - cut, s, str(error), line)
        for (t, error), s in zip(failures, sent, strict=True)
    ]


def summary(placed: Sequence[Failure], timelines: Mapping[str, Timeline]) -> dict[str, Any]:
    """The bench's JSON for the failures: counts, each failure, each timeline."""
    return {
        "window_rule": WINDOW_RULE,
        "requests_failed_in_window": sum(f.in_window for f in placed),
        "requests_failed_outside_window": sum(not f.in_window for f in placed),
        "failures": [asdict(f) for f in placed],
        "timelines_s": {vm: asdict(line) for vm, line in timelines.items()},
    }
