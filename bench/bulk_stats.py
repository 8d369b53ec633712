"""The pure side of ``python -m bench.bulk``: parse iperf3/wrk, turn snapshots into figures,
check the acceptance targets of issue #22. Nothing here runs a process or reads a file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from colopp.compare.counters import HOLD_TIME_BUCKETS

TRAFFICS: tuple[str, ...] = ("upload", "download_iperf3", "download_static")
"""iperf3 client -> guest, iperf3 guest -> client (``-R``), wrk GETs of one 64 KiB kvd value."""

FIGURES: tuple[str, ...] = ("mbit_per_s", "checkpoints", "mean_hold_ms")
"""The figures every configuration of every traffic carries (issue #22's wording)."""

_TRANSFER_RE = re.compile(r"^Transfer/sec:\s+(?P<value>[0-9.]+)(?P<unit>[KMG]?B)\s*$", re.M)
_UNITS = {"B": 1.0, "KB": 1024.0, "MB": 1024.0**2, "GB": 1024.0**3}


@dataclass(frozen=True)
class Target:
    """``traffic``: the best of ``numerators`` >= ``bound`` x ``denominator``."""

    name: str
    traffic: str
    numerators: tuple[str, ...]
    denominator: str
    bound: float


TARGETS: tuple[Target, ...] = (
    *(Target(f"{t}: (c) >= (b)", t, ("colopp",), "builtin", 1.0) for t in TRAFFICS),
    Target(
        "upload: (d) or (e) >= 0.5 x (a)",
        "upload",
        ("colopp_prerelease", "colopp_prerelease_semiactive"),
        "unreplicated",
        0.5,
    ),
    Target(
        "download_static: (d) or (e) >= 0.5 x (a)",
        "download_static",
        ("colopp_prerelease", "colopp_prerelease_semiactive"),
        "unreplicated",
        0.5,
    ),
)


def iperf3_mbit_per_s(text: str, *, reverse: bool) -> float:
    """What the client received, in Mbit/s, from ``iperf3 -J`` output.

    With ``reverse`` (``-R``) the client is the receiver of ``sum_received``; else the guest
    is, and ``sum_received`` is what the guest's server got. Either way: bytes delivered.

    Raises:
        ValueError: not iperf3 JSON, or iperf3 reported an error.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not iperf3 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not iperf3 JSON: not an object")
    if data.get("error"):
        raise ValueError(f"iperf3: {data['error']}")
    end = data.get("end") or {}
    received = end.get("sum_received") or {}
    bps = received.get("bits_per_second")
    if not isinstance(bps, int | float):
        raise ValueError("iperf3 JSON has no end.sum_received.bits_per_second")
    del reverse  # sum_received is the receiver's figure in both directions
    return float(bps) / 1e6


def iperf3_retransmits(text: str) -> int | None:
    """The sender's retransmission count (``end.sum_sent.retransmits``) if reported."""
    try:
        value = json.loads(text)["end"]["sum_sent"]["retransmits"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    return int(value) if isinstance(value, int) else None


def iperf3_longest_stall_s(text: str, fraction: float = 0.1) -> float | None:
    """The longest run of consecutive reporting intervals that each moved less than
    ``fraction`` of the run's mean rate, in seconds (0.0: none); None without intervals.

    A stall of the transfer (an upload whose ACKs were all held, a stream waiting for a
    checkpoint) shows here while the mean hides it.
    """
    try:
        intervals = json.loads(text)["intervals"]
        spans = [(float(i["sum"]["seconds"]), float(i["sum"]["bytes"])) for i in intervals]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    total_s = sum(s for s, _ in spans)
    if not spans or total_s <= 0:
        return None
    floor = fraction * sum(b for _, b in spans) / total_s
    longest = run = 0.0
    for seconds, size in spans:
        run = run + seconds if seconds > 0 and size / seconds < floor else 0.0
        longest = max(longest, run)
    return round(longest, 3)


def max_hold_ms(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """The upper bound (ms) of the highest hold-time bucket that grew in the window (for
    the last, open bucket: its lower bound, 10 000 ms); None without colopp's counters or
    without held frames."""
    old = before.get("hold_time_counts") or []
    new = after.get("hold_time_counts") or []
    grew = [i for i, n in enumerate(new) if n > (old[i] if i < len(old) else 0)]
    if not grew:
        return None
    top = min(max(grew), len(HOLD_TIME_BUCKETS) - 1)
    return HOLD_TIME_BUCKETS[top] * 1000.0


def wrk_mbit_per_s(text: str) -> float:
    """wrk's ``Transfer/sec`` in Mbit/s.

    Raises:
        ValueError: no ``Transfer/sec`` line.
    """
    match = _TRANSFER_RE.search(text)
    if match is None:
        raise ValueError("wrk output has no 'Transfer/sec' line")
    return float(match["value"]) * _UNITS[match["unit"]] * 8 / 1e6


def mean_hold_ms(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """Mean arrival-to-release time of the primary frames the comparator held in the window
    (colopp's counters only; None without them)."""
    frames = sum(after.get("hold_time_counts") or []) - sum(before.get("hold_time_counts") or [])
    if frames <= 0:
        return None
    held = float(after.get("hold_time_sum", 0.0)) - float(before.get("hold_time_sum", 0.0))
    return held / frames * 1000.0


def counter_delta(before: dict[str, Any], after: dict[str, Any], name: str) -> int:
    """How much one integer counter grew over the window."""
    return int(after.get(name, 0) or 0) - int(before.get(name, 0) or 0)


def window_figures(
    mbit: float,
    checkpoints: int,
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """The figures of one traffic on one configuration (``before``/``after``: the
    comparator's counters around the measured run; empty for colo-compare)."""
    divergences = {
        k: int(v) - int((before.get("divergences") or {}).get(k, 0))
        for k, v in (after.get("divergences") or {}).items()
    }
    return {
        "mbit_per_s": mbit,
        "checkpoints": checkpoints,
        "mean_hold_ms": mean_hold_ms(before, after),
        "max_hold_ms": max_hold_ms(before, after),
        "released_frames": counter_delta(before, after, "released_frames"),
        "retransmitted_frames": counter_delta(before, after, "retransmitted_frames"),
        "secondary_dropped": counter_delta(before, after, "secondary_dropped"),
        "pre_released_frames": counter_delta(before, after, "pre_released_frames"),
        "divergences": {k: v for k, v in divergences.items() if v},
    }


def process_cpu_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """host -> process role (``qemu``, ``comparator``, ``relay``, ``agent``, ``other``) ->
    CPU seconds used over the window, 0.01 s resolution (a process gone or new counts from
    what was seen)."""
    return {
        host: {
            role: round(used - before.get(host, {}).get(role, 0.0), 2)
            for role, used in sorted(roles.items())
        }
        for host, roles in after.items()
    }


#: The relay's counters a bulk window reports (its status file, ``colopp.ingress``).
RELAY_COUNTERS: tuple[str, ...] = (
    "client_frames",
    "guest_frames",
    "coalesced_frames",
    "receipt_frames",
    "dropped_frames",
    "gate_holds",
    "gate_released_expired",
    "gate_lowered",
    "gate_acks_sent",
    "paced_frames",
    "paced_expired",
    "paced_overflow",
)


def relay_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int] | None:
    """How the relay's counters grew over the window; None without a relay."""
    if not after:
        return None
    return {name: counter_delta(before, after, name) for name in RELAY_COUNTERS}


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target's ratio and whether it is met (``met`` None when a side is missing)."""
    out: list[dict[str, Any]] = []
    for target in TARGETS:
        runs = results.get(target.traffic, {})
        den = runs.get(target.denominator, {}).get("mbit_per_s")
        nums = [
            runs[n]["mbit_per_s"]
            for n in target.numerators
            if isinstance(runs.get(n, {}).get("mbit_per_s"), int | float)
        ]
        ratio = max(nums) / den if nums and den else None
        out.append({
            "target": target.name,
            "ratio": ratio,
            "bound": target.bound,
            "met": None if ratio is None else ratio >= target.bound,
        })  # fmt: skip
    return out


def shape_problems(result: dict[str, Any]) -> list[str]:
    """What is missing from a result (empty when every measured entry has every figure)."""
    problems = [] if isinstance(result.get("meta"), dict) else ["no meta object"]
    for key, runs in result.items():
        if key == "meta":
            continue
        if key not in TRAFFICS:
            problems.append(f"unknown traffic {key!r}")
            continue
        for config, figures in runs.items():
            problems.extend(f"{key}.{config}: no {f}" for f in FIGURES if f not in figures)
    return problems


def format_table(result: dict[str, Any], configs: tuple[str, ...]) -> str:
    """A Markdown table: one row per traffic, Mbit/s (checkpoints, mean hold) per config."""
    head = "| traffic | " + " | ".join(configs) + " |"
    rows = [head, "|---|" + "---|" * len(configs)]
    for traffic in TRAFFICS:
        runs = result.get(traffic)
        if not runs:
            continue
        cells = []
        for config in configs:
            f = runs.get(config)
            if f is None:
                cells.append("—")
                continue
            hold = f.get("mean_hold_ms")
            extra = f"{f['checkpoints']} ckpt" + (f", {hold:.1f} ms hold" if hold else "")
            cells.append(f"{f['mbit_per_s']:.1f} ({extra})")
        rows.append(f"| {traffic} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_targets(targets: list[dict[str, Any]]) -> str:
    """One line per target: met / NOT met / not measured, with the ratio."""
    lines = []
    for t in targets:
        if t["met"] is None:
            lines.append(f"- {t['target']}: not measured")
        else:
            word = "met" if t["met"] else "NOT met"
            lines.append(f"- {t['target']}: {word} (ratio {t['ratio']:.2f}, bound {t['bound']})")
    return "\n".join(lines)
