"""The pure side of ``python -m bench.pair`` (issue 15): samples in, the result's figures and
targets out. Nothing here runs a process or reads a file.

Result shape: ``closed_loop.<mix>.<config>.{rps, p50_ms, p99_ms,
secondary_host_cpu_ms_per_req, primary_host_cpu_ms_per_req, prerelease_share}``,
``open_loop.<mix>.<config>.{offered_rps, p50_ms, p99_ms, p999_ms, prerelease_share}`` (plus
context figures each), ``targets`` (one entry per target: met or not, and what limits it),
``meta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.pair_cpu import CpuSample, outside_share

#: Each mix: (protocol, share of writes).
MIXES: dict[str, tuple[str, float]] = {
    "read_mostly": ("http", 0.05),
    "write_heavy": ("http", 0.5),
    "redis_read_mostly": ("resp", 0.05),
}

CONFIGS: tuple[str, ...] = (
    "unreplicated",
    "builtin",
    "colopp",
    "colopp_prerelease",
    "colopp_prerelease_semiactive",
    "colopp_semiactive",
)

LABELS: dict[str, str] = {
    "unreplicated": "(a) unreplicated",
    "builtin": "(b) QEMU COLO, colo-compare",
    "colopp": "(c) colopp",
    "colopp_prerelease": "(d) colopp + pre-release",
    "colopp_prerelease_semiactive": "(e) (d) + semi-active secondary",
    "colopp_semiactive": "(c) + semi-active secondary",
}

CLOSED_FIGURES = (
    "rps",
    "p50_ms",
    "p99_ms",
    "secondary_host_cpu_ms_per_req",
    "primary_host_cpu_ms_per_req",
    "prerelease_share",
)
OPEN_FIGURES = ("offered_rps", "p50_ms", "p99_ms", "p999_ms", "prerelease_share")
HOSTS = ("hosta", "hostb")


@dataclass(frozen=True)
class Sample:
    """The pair at one end of a measured window."""

    at: float
    checkpoints: int
    counters: dict[str, Any]
    """The colopp comparator's counters (empty for colo-compare and unreplicated)."""
    host_process_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds used so far by the processes of each host's cgroup (agent, QEMU,
    comparator), by host name."""
    cpu_busy_s: dict[str, float] = field(default_factory=dict)
    """Busy seconds of each host's CPUs (everything that ran there, the client too)."""
    cpu: CpuSample = field(default_factory=CpuSample)
    """Per-CPU busy and lab seconds: what ran outside the lab (:mod:`bench.pair_cpu`)."""
    loadavg: tuple[float, ...] = ()
    """The machine's load averages (1, 5, 15 min) when sampled."""
    ingress: dict[str, Any] = field(default_factory=dict)
    """The secondary host's relay counters (the ACK gate; empty without a relay)."""
    role_cpu_s: dict[str, dict[str, float]] = field(default_factory=dict)
    """``host_process_cpu_s`` split by process (qemu, comparator, relay, agent, other)."""


@dataclass(frozen=True)
class LoadRun:
    """What the client measured over the window."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float | None
    errors: int
    offered_rps: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """The client's own account of errors (wrk's socket errors and statuses, loadgen's
    error samples)."""


def _delta(before: dict[str, Any], after: dict[str, Any], name: str) -> int:
    return int(after.get(name, 0) or 0) - int(before.get(name, 0) or 0)


def prerelease_share(before: dict[str, Any], after: dict[str, Any]) -> float:
    """Read answers that left early / read answers, over the window (0 without pre-release).

    Early read answers are the frames the read rules granted (kvd and Redis answer a small
    read in one segment); read answers are the read requests the classifier counted.
    """
    b, a = before.get("pre_release") or {}, after.get("pre_release") or {}
    reads = _delta(b, a, "read_requests")
    if reads <= 0:
        return 0.0
    granted_b, granted_a = b.get("granted") or {}, a.get("granted") or {}
    early = sum(_delta(granted_b, granted_a, rule) for rule in ("http_read", "resp_read"))
    return min(1.0, early / reads)


def no_wait_share(before: dict[str, Any], after: dict[str, Any]) -> float:
    """Answers that did not wait for the comparison / answers, over the window: those that
    left early plus those whose secondary copy was already there (``matched_on_arrival``).

    ``prerelease_share`` counts only the first; when the secondary's copy usually comes
    first, an answer leaves as soon as the primary's is read either way. kvd and Redis answer
    a small request in one segment, so frames stand for answers (approximately).
    """
    b, a = before.get("pre_release") or {}, after.get("pre_release") or {}
    answers = _delta(b, a, "read_requests") + _delta(b, a, "write_requests")
    if answers <= 0:
        return 0.0
    granted_b, granted_a = b.get("granted") or {}, a.get("granted") or {}
    early = sum(_delta(granted_b, granted_a, rule) for rule in ("http_read", "resp_read"))
    undelayed = early + _delta(before, after, "matched_on_arrival")
    return round(min(1.0, undelayed / answers), 3)


def window_context(before: Sample, after: Sample, run: LoadRun) -> dict[str, Any]:
    """Figures every window carries besides its headline ones."""
    window = after.at - before.at
    busy = {
        host: (after.cpu_busy_s[host] - before.cpu_busy_s[host]) / window
        for host in HOSTS
        if host in after.cpu_busy_s and host in before.cpu_busy_s and window > 0
    }
    checkpoints = after.checkpoints - before.checkpoints
    return {
        "requests": run.requests,
        "errors": run.errors,
        "client": run.detail,
        "window_s": window,
        "checkpoints": checkpoints,
        "checkpoints_per_min": checkpoints * 60.0 / window if window > 0 else 0.0,
        "prerelease_mismatches": _delta(before.counters, after.counters, "prerelease_mismatches"),
        # Answer frames that left only once compared: matched on arrival (the secondary's
        # copy came first), or late by why not early (comparator counters).
        "matched_on_arrival": _delta(before.counters, after.counters, "matched_on_arrival"),
        "late_frames": {
            why: _delta(before.counters, after.counters, f"late_{why}")
            for why in ("unoffered", "ack_refused", "policy_refused")
        },
        "host_cpu_busy": busy,
        # Each host's CPU ms per request split by process (where the CPU per request goes).
        "process_cpu_ms_per_req": role_ms_per_req(before, after, run.requests),
        # Share of each CPU that processes outside the lab took (other work on the machine).
        "outside_lab_cpu_busy": outside_share(before.cpu, after.cpu, window),
        "loadavg": [round(x, 2) for x in after.loadavg],
        # ACK lowering (colopp.compare.ack_lower) and how long answers were held.
        "no_wait_share": no_wait_share(before.counters, after.counters),
        "lag_pauses": _delta(before.counters, after.counters, "prerelease_lag_pauses"),
        "ack_lowered": _delta(before.counters, after.counters, "prerelease_ack_lowered"),
        "bare_acks": _delta(before.counters, after.counters, "prerelease_bare_acks"),
        "hold_time_counts": _hold_deltas(before.counters, after.counters),
        # The ACK gate on host B (colopp.ingress.ackgate): client frames it held, and why
        # each went on (the secondary caught up, max_wait passed, a checkpoint).
        "ack_gate": {
            key: _delta(before.ingress, after.ingress, f"gate_{key}")
            for key in (
                "holds",
                "released_late",
                "released_expired",
                "released_checkpoint",
                "checkpoints",
            )
        }
        if after.ingress
        else {},
        "divergences": {
            k: v
            for k, v in (
                (k, int(n) - int((before.counters.get("divergences") or {}).get(k, 0)))
                for k, n in (after.counters.get("divergences") or {}).items()
            )
            if v
        },
    }


def _hold_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The comparator's hold-time histogram over the window (upper bound -> frames)."""
    bounds = after.get("hold_time_buckets") or []
    new = after.get("hold_time_counts") or []
    old = before.get("hold_time_counts") or [0] * len(new)
    return {f"<={b}": int(n) - int(o) for b, n, o in zip(bounds, new, old, strict=False) if n != o}


def host_cpu_ms_per_req(before: Sample, after: Sample, host: str, requests: int) -> float | None:
    """CPU milliseconds per request of one host's processes over the window."""
    if requests <= 0 or host not in before.host_process_cpu_s:
        return None
    if host not in after.host_process_cpu_s:
        return None
    return (after.host_process_cpu_s[host] - before.host_process_cpu_s[host]) * 1000 / requests


def role_ms_per_req(before: Sample, after: Sample, requests: int) -> dict[str, dict[str, float]]:
    """Host -> process role -> CPU milliseconds per request over the window."""
    if requests <= 0:
        return {}
    out: dict[str, dict[str, float]] = {}
    for host, roles in after.role_cpu_s.items():
        old = before.role_cpu_s.get(host, {})
        out[host] = {
            role: round((used - old.get(role, 0.0)) * 1000 / requests, 3)
            for role, used in sorted(roles.items())
        }
    return out


def closed_figures(before: Sample, after: Sample, run: LoadRun) -> dict[str, Any]:
    """``closed_loop.<mix>.<config>``."""
    return {
        "rps": run.rps,
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "secondary_host_cpu_ms_per_req": host_cpu_ms_per_req(before, after, "hostb", run.requests),
        "primary_host_cpu_ms_per_req": host_cpu_ms_per_req(before, after, "hosta", run.requests),
        "prerelease_share": prerelease_share(before.counters, after.counters),
        **window_context(before, after, run),
    }


def open_figures(before: Sample, after: Sample, run: LoadRun) -> dict[str, Any]:
    """``open_loop.<mix>.<config>``."""
    return {
        "offered_rps": run.offered_rps,
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "p999_ms": run.p999_ms,
        "prerelease_share": prerelease_share(before.counters, after.counters),
        "achieved_rps": run.rps,
        "secondary_host_cpu_ms_per_req": host_cpu_ms_per_req(before, after, "hostb", run.requests),
        "primary_host_cpu_ms_per_req": host_cpu_ms_per_req(before, after, "hosta", run.requests),
        **window_context(before, after, run),
    }


def open_rate(closed: dict[str, dict[str, Any]]) -> float | None:
    """Half of the lowest closed-loop rate among the configurations measured on a mix."""
    rates = [f["rps"] for f in closed.values() if f.get("rps")]
    return min(rates) / 2 if rates else None


# ---- targets -----------------------------------------------------------------------------


def _get(result: dict[str, Any], loop: str, mix: str, config: str, fig: str) -> float | None:
    value = result.get(loop, {}).get(mix, {}).get(config, {}).get(fig)
    return float(value) if isinstance(value, int | float) else None


def _ratio_target(
    result: dict[str, Any],
    name: str,
    num: tuple[str, str, str, str],
    den: tuple[str, str, str, str] | None,
    bound: float,
    at_most: bool,
) -> dict[str, Any]:
    a = _get(result, *num)
    b = _get(result, *den) if den is not None else 1.0
    ratio = a / b if a is not None and b else None
    met = None if ratio is None else (ratio <= bound if at_most else ratio >= bound)
    return {
        "target": name,
        "value": ratio,
        "bound": bound,
        "comparison": "<=" if at_most else ">=",
        "met": met,
    }


E = "colopp_prerelease_semiactive"


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's targets, each met / not met (None: a side was not measured)."""
    o, c = "open_loop", "closed_loop"
    rm, wh, rr = "read_mostly", "write_heavy", "redis_read_mostly"
    t = [
        _ratio_target(result, "read_mostly open: (e) p50 <= 1.1x (a) p50",
                      (o, rm, E, "p50_ms"), (o, rm, "unreplicated", "p50_ms"), 1.1, True),
        _ratio_target(result, "read_mostly open: (e) p50 <= 0.6x colopp_semiactive p50",
                      (o, rm, E, "p50_ms"), (o, rm, "colopp_semiactive", "p50_ms"), 0.6, True),
        _ratio_target(result, "read_mostly open: (e) p99 <= 1.5x (a) p99",
                      (o, rm, E, "p99_ms"), (o, rm, "unreplicated", "p99_ms"), 1.5, True),
        _ratio_target(result, "read_mostly closed: (e) secondary host CPU/req <= 0.5x (c)",
                      (c, rm, E, "secondary_host_cpu_ms_per_req"),
                      (c, rm, "colopp", "secondary_host_cpu_ms_per_req"), 0.5, True),
        _ratio_target(result, "read_mostly closed: (e) prerelease_share >= 0.9",
                      (c, rm, E, "prerelease_share"), None, 0.9, False),
        _ratio_target(result, "read_mostly open: (e) prerelease_share >= 0.9",
                      (o, rm, E, "prerelease_share"), None, 0.9, False),
        _ratio_target(result, "redis_read_mostly open: (e) p50 <= 1.1x (a) p50",
                      (o, rr, E, "p50_ms"), (o, rr, "unreplicated", "p50_ms"), 1.1, True),
        _ratio_target(result, "redis_read_mostly open: (e) prerelease_share >= 0.9",
                      (o, rr, E, "prerelease_share"), None, 0.9, False),
        _ratio_target(result, "read_mostly closed: (e) rps >= (c) rps",
                      (c, rm, E, "rps"), (c, rm, "colopp", "rps"), 1.0, False),
        _ratio_target(result, "read_mostly closed: (e) rps >= 1.2x (b) rps",
                      (c, rm, E, "rps"), (c, rm, "builtin", "rps"), 1.2, False),
        _ratio_target(result, "write_heavy closed: (e) rps >= (b) rps",
                      (c, wh, E, "rps"), (c, wh, "builtin", "rps"), 1.0, False),
        _ratio_target(result, "write_heavy closed: (e) p99 <= (b) p99",
                      (c, wh, E, "p99_ms"), (c, wh, "builtin", "p99_ms"), 1.0, True),
    ]  # fmt: skip
    t.append(_clean_windows(result))
    return t


def _clean_windows(result: dict[str, Any]) -> dict[str, Any]:
    """0 pre-release mismatches and 0 failed requests in every window."""
    bad = []
    for loop in ("closed_loop", "open_loop"):
        for mix, configs in result.get(loop, {}).items():
            for config, f in configs.items():
                if f.get("errors") or f.get("prerelease_mismatches"):
                    bad.append(f"{loop}.{mix}.{config}")
    measured = any(result.get(loop) for loop in ("closed_loop", "open_loop"))
    return {
        "target": "0 pre-release mismatches and 0 failed requests in every window",
        "value": len(bad),
        "bound": 0,
        "comparison": "<=",
        "met": (not bad) if measured else None,
        "windows": bad,
    }


def shape_problems(result: dict[str, Any], quick: bool = False) -> list[str]:
    """What is missing from a result (every mix and configuration unless ``quick``)."""
    problems = []
    for loop, figures in (("closed_loop", CLOSED_FIGURES), ("open_loop", OPEN_FIGURES)):
        mixes = result.get(loop)
        if not isinstance(mixes, dict):
            problems.append(f"no {loop}")
            continue
        for mix in mixes if quick else MIXES:
            configs = mixes.get(mix, {})
            for config in configs if quick else CONFIGS:
                f = configs.get(config)
                if f is None:
                    problems.append(f"{loop}.{mix}: no {config}")
                    continue
                problems.extend(f"{loop}.{mix}.{config}: no {n}" for n in figures if n not in f)
    if not isinstance(result.get("targets"), list):
        problems.append("no targets")
    return problems


def drift(first: dict[str, Any], repeat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per mix, the first configuration's closed-loop rate at the start of the run against
    its repeat at the end (``repeat_rps / first_rps``). On a machine whose speed drifts, the
    closed-loop ratios between configurations measured minutes apart mean little when this
    strays far from 1 (session 14: the same unreplicated guest did 1363 and 2543 req/s an
    hour apart)."""
    out: dict[str, dict[str, Any]] = {}
    for mix, again in repeat.items():
        rps, rps_again = (first.get(mix) or {}).get("rps"), (again or {}).get("rps")
        if not rps or rps_again is None:
            continue
        out[mix] = {"first_rps": rps, "repeat_rps": rps_again, "ratio": rps_again / rps}
    return out


def format_report(result: dict[str, Any]) -> str:
    """Markdown tables of both loops, then the targets."""
    lines = [
        "| mix | configuration | closed req/s | p50 ms | p99 ms | primary host CPU ms/req "
        "| secondary host CPU ms/req | early reads | open p50 ms | p99 ms | p999 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for mix in MIXES:
        for config in CONFIGS:
            c = result.get("closed_loop", {}).get(mix, {}).get(config)
            o = result.get("open_loop", {}).get(mix, {}).get(config)
            if c is None and o is None:
                continue
            c, o = c or {}, o or {}
            lines.append(
                f"| {mix} | {LABELS[config]} | {num(c.get('rps'), '.0f')} "
                f"| {num(c.get('p50_ms'), '.1f')} | {num(c.get('p99_ms'), '.0f')} "
                f"| {num(c.get('primary_host_cpu_ms_per_req'), '.2f')} "
                f"| {num(c.get('secondary_host_cpu_ms_per_req'), '.2f')} "
                f"| {num(c.get('prerelease_share'), '.0%')} "
                f"/ {num(o.get('prerelease_share'), '.0%')} "
                f"| {num(o.get('p50_ms'), '.1f')} | {num(o.get('p99_ms'), '.0f')} "
                f"| {num(o.get('p999_ms'), '.0f')} |"
            )
    lines.append("")
    repeated = result.get("meta", {}).get("repeated_config")
    for mix, d in result.get("drift", {}).items():
        lines.append(
            f"- drift, {mix} closed loop, {repeated} at the start and at the end: "
            f"{d['first_rps']:.0f} then {d['repeat_rps']:.0f} req/s ({d['ratio']:.2f}x)"
        )
    for t in result.get("targets", []):
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = "n/a" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"- {t['target']}: {value} ({t['comparison']} {t['bound']}) {verdict}")
    return "\n".join(lines)
