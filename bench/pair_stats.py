"""The pure side of ``python -m bench.pair``: parse wrk, turn snapshots into figures, check targets.

Nothing here runs a process or reads a file: :mod:`bench.pair` takes the snapshots and runs
wrk, this module turns text and numbers into the JSON the benchmark writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MIXES: dict[str, float] = {"read_mostly": 0.05, "write_heavy": 0.5}
"""Each mix's share of PUT requests (the rest are GETs of the same keys)."""

CONFIGS: tuple[str, ...] = (
    "unreplicated",
    "builtin",
    "colopp",
    "colopp_prerelease",
    "colopp_prerelease_semiactive",
)
"""The configurations of issue #5, (a) to (e), in the order the issue names them."""

LABELS: dict[str, str] = {
    "unreplicated": "(a) unreplicated",
    "builtin": "(b) QEMU COLO, colo-compare",
    "colopp": "(c) colopp",
    "colopp_prerelease": "(d) colopp + pre-release",
    "colopp_prerelease_semiactive": "(e) (d) + semi-active secondary",
}

FIGURES: tuple[str, ...] = (
    "rps",
    "p50_ms",
    "p99_ms",
    "checkpoints_per_min",
    "prerelease_ratio",
    "secondary_cpu_s_per_req",
)
"""The figures every configuration of every mix carries (issue #5's wording)."""

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION_RE = re.compile(r"^(?P<value>[0-9]+(?:\.[0-9]+)?)(?P<unit>us|ms|s|m|h)$")
_PERCENTILE_RE = re.compile(r"^\s*(?P<q>[0-9]+(?:\.[0-9]+)?)%\s+(?P<value>\S+)\s*$")
_TOTAL_RE = re.compile(r"^\s*(?P<requests>[0-9]+) requests in (?P<duration>\S+?),")
_SOCKET_RE = re.compile(
    r"Socket errors: connect (?P<connect>[0-9]+), read (?P<read>[0-9]+), "
    r"write (?P<write>[0-9]+), timeout (?P<timeout>[0-9]+)"
)
_NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses: (?P<count>[0-9]+)")
_RPS_RE = re.compile(r"^Requests/sec:\s+(?P<rps>[0-9.]+)", re.MULTILINE)
_MIX_RE = re.compile(r"^pair-mix: gets (?P<gets>[0-9]+) puts (?P<puts>[0-9]+)", re.MULTILINE)
_STATUS_RE = re.compile(
    r"^pair-mix: status 404 (?P<not_found>[0-9]+) other-4xx (?P<other_4xx>[0-9]+) "
    r"5xx (?P<server_error>[0-9]+)",
    re.MULTILINE,
)


def duration_ms(text: str) -> float:
    """wrk's human duration (``812.00us``, ``10.23ms``, ``1.02s``, ``1.50m``) in milliseconds.

    Raises:
        ValueError: not a wrk duration.
    """
    match = _DURATION_RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match["value"]) * _UNIT_MS[match["unit"]]


@dataclass(frozen=True)
class WrkRun:
    """What one ``wrk --latency`` run reported."""

    requests: int
    duration_s: float
    rps: float
    percentiles_ms: dict[float, float]
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0
    gets_sent: int | None = None
    puts_sent: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    """Answers other than 200 by kind (``not_found``, ``other_4xx``, ``server_error``)."""

    @property
    def p50_ms(self) -> float:
        return self.percentiles_ms[50.0]

    @property
    def p99_ms(self) -> float:
        return self.percentiles_ms[99.0]

    @property
    def errors(self) -> int:
        """Failed requests: socket errors of any kind plus non-2xx/3xx answers."""
        return sum(self.socket_errors.values()) + self.non_2xx


def parse_wrk(text: str) -> WrkRun:
    """Parse the stdout of ``wrk --latency`` (and the ``pair-mix:`` line of bench/pair-mix.lua).

    Raises:
        ValueError: the total, the rate or the 50th/99th percentile is missing.
    """
    percentiles: dict[float, float] = {}
    in_distribution = False
    requests: int | None = None
    duration_s: float | None = None
    for line in text.splitlines():
        if line.strip() == "Latency Distribution":
            in_distribution = True
            continue
        if in_distribution:
            match = _PERCENTILE_RE.match(line)
            if match is not None:
                percentiles[float(match["q"])] = duration_ms(match["value"])
                continue
            in_distribution = False
        total = _TOTAL_RE.match(line)
        if total is not None:
            requests = int(total["requests"])
            duration_s = duration_ms(total["duration"]) / 1000.0
    rps = _RPS_RE.search(text)
    if requests is None or duration_s is None or rps is None:
        raise ValueError("wrk output has no 'N requests in T' or 'Requests/sec' line")
    if 50.0 not in percentiles or 99.0 not in percentiles:
        raise ValueError("wrk output has no latency distribution (run it with --latency)")
    sockets = _SOCKET_RE.search(text)
    non_2xx = _NON_2XX_RE.search(text)
    mix = _MIX_RE.search(text)
    statuses = _STATUS_RE.search(text)
    return WrkRun(
        requests=requests,
        duration_s=duration_s,
        rps=float(rps["rps"]),
        percentiles_ms=percentiles,
        socket_errors={k: int(v) for k, v in sockets.groupdict().items()} if sockets else {},
        non_2xx=int(non_2xx["count"]) if non_2xx else 0,
        gets_sent=int(mix["gets"]) if mix else None,
        puts_sent=int(mix["puts"]) if mix else None,
        statuses={k: int(v) for k, v in statuses.groupdict().items()} if statuses else {},
    )


def host_cpu_seconds(proc_stat: str, clock_ticks: int) -> tuple[float, float]:
    """(busy, total) CPU seconds of all CPUs from the ``cpu`` line of ``/proc/stat``.

    Busy is everything but idle and iowait.

    Raises:
        ValueError: no ``cpu`` line.
    """
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(v) for v in fields[1:]]
            # user nice system idle iowait irq softirq steal (guest, guest_nice are in user)
            total = sum(ticks[:8])
            return (total - ticks[3] - ticks[4]) / clock_ticks, total / clock_ticks
    raise ValueError("no 'cpu' line in /proc/stat text")


def proc_cpu_seconds(stat: str, clock_ticks: int) -> float:
    """utime + stime of a ``/proc/<pid>/stat`` line, in seconds (every thread of the process).

    The command name (field 2) may hold spaces and parentheses, so fields are counted from
    the last ``)``.

    Raises:
        ValueError: not a stat line.
    """
    head, sep, tail = stat.rpartition(")")
    fields = tail.split()
    if not sep or not head or len(fields) < 13:
        raise ValueError(f"not a /proc/<pid>/stat line: {stat[:60]!r}")
    # After ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    # utime(14) stime(15): indexes 11 and 12 of the remainder.
    return (int(fields[11]) + int(fields[12])) / clock_ticks


@dataclass(frozen=True)
class Snapshot:
    """The pair as seen at one end of a measured window."""

    at: float
    """Monotonic seconds."""
    checkpoints: int
    """The primary agent's completed checkpoints (0 unreplicated)."""
    counters: dict[str, Any]
    """The colopp comparator's counters (empty for colo-compare and unreplicated)."""
    secondary_cpu_s: float | None
    """CPU seconds the secondary QEMU has used so far (None unreplicated)."""
    primary_cpu_s: float | None = None
    host_cpu_s: tuple[float, float] | None = None
    """(busy, total) CPU seconds of the whole host, every CPU."""


def prerelease_ratio(before: dict[str, Any], after: dict[str, Any]) -> float:
    """Over the window: frames pre-released / primary frames released after comparison.

    Passthrough frames (non-IPv4, never compared) are left out, as in the comparator's own
    ``pre_release_ratio``. 0 without colopp's comparator or without output.
    """

    def delta(name: str) -> int:
        return int(after.get(name, 0)) - int(before.get(name, 0))

    compared_out = delta("released_frames") - delta("passthrough_frames")
    return delta("pre_released_frames") / compared_out if compared_out > 0 else 0.0


def counter_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Growth of a ``{reason: count}`` counter map over the window (zero entries left out)."""
    out = {k: int(v) - int(before.get(k, 0)) for k, v in after.items()}
    return {k: v for k, v in sorted(out.items()) if v}


def window_figures(before: Snapshot, after: Snapshot, run: WrkRun) -> dict[str, Any]:
    """The figures of one configuration and mix over one measured window.

    ``rps``/``p50_ms``/``p99_ms`` are wrk's; the rest are differences between the
    snapshots taken just before wrk started and just after it ended.
    """
    window_s = after.at - before.at
    requests = run.requests

    def per_request(a: float | None, b: float | None) -> float | None:
        if a is None or b is None or requests <= 0:
            return None
        return (b - a) / requests

    checkpoints = after.checkpoints - before.checkpoints
    figures: dict[str, Any] = {
        "rps": run.rps,
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "checkpoints_per_min": checkpoints * 60.0 / window_s if window_s > 0 else 0.0,
        "prerelease_ratio": prerelease_ratio(before.counters, after.counters),
        "secondary_cpu_s_per_req": per_request(before.secondary_cpu_s, after.secondary_cpu_s),
        # Context for the figures above.
        "requests": requests,
        "errors": run.errors,
        "error_statuses": run.statuses,
        "wrk_duration_s": run.duration_s,
        "window_s": window_s,
        "checkpoints": checkpoints,
        "put_share": (
            run.puts_sent / (run.puts_sent + run.gets_sent)
            if run.puts_sent is not None and run.gets_sent
            else None
        ),
        "secondary_cpu_s": (
            after.secondary_cpu_s - before.secondary_cpu_s
            if after.secondary_cpu_s is not None and before.secondary_cpu_s is not None
            else None
        ),
        "primary_cpu_s_per_req": per_request(before.primary_cpu_s, after.primary_cpu_s),
        "prerelease_mismatches": int(after.counters.get("prerelease_mismatches", 0))
        - int(before.counters.get("prerelease_mismatches", 0)),
        # Why the comparator asked for checkpoints, and which pre-release rules granted.
        "divergences": counter_deltas(
            before.counters.get("divergences", {}), after.counters.get("divergences", {})
        ),
        # Primary frames by arrival-to-release time (comparator histogram, upper bounds in s).
        "hold_time_counts": _hold_time_deltas(before.counters, after.counters),
        "host_busy_cpus": _busy_cpus(before, after),
        "prerelease_granted": counter_deltas(
            before.counters.get("pre_release", {}).get("granted", {}),
            after.counters.get("pre_release", {}).get("granted", {}),
        ),
    }
    return figures


def _hold_time_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    bounds = after.get("hold_time_buckets") or []
    old = before.get("hold_time_counts") or [0] * len(bounds)
    new = after.get("hold_time_counts") or []
    return {f"<={b}": int(n) - int(o) for b, n, o in zip(bounds, new, old, strict=False)}


def _busy_cpus(before: Snapshot, after: Snapshot) -> float | None:
    """Average number of busy host CPUs over the window (everyone's work, not only ours)."""
    if before.host_cpu_s is None or after.host_cpu_s is None:
        return None
    total = after.host_cpu_s[1] - before.host_cpu_s[1]
    if total <= 0 or after.at <= before.at:
        return None
    cpus = total / (after.at - before.at)
    return (after.host_cpu_s[0] - before.host_cpu_s[0]) / total * cpus


@dataclass(frozen=True)
class Target:
    """One of issue #5's benchmark targets: ``numerator / denominator`` against a bound."""

    name: str
    mix: str
    numerator: tuple[str, str]
    """(configuration, figure)."""
    denominator: tuple[str, str]
    bound: float
    at_most: bool = False
    """True for ``ratio <= bound``, else ``ratio >= bound``."""


TARGETS: tuple[Target, ...] = (
    Target("read-mostly (d) >= 0.95x (a) throughput", "read_mostly",
           ("colopp_prerelease", "rps"), ("unreplicated", "rps"), 0.95),
    Target("read-mostly (d) >= 2x (b) throughput", "read_mostly",
           ("colopp_prerelease", "rps"), ("builtin", "rps"), 2.0),
    Target("write-heavy (d) >= (b) throughput", "write_heavy",
           ("colopp_prerelease", "rps"), ("builtin", "rps"), 1.0),
    *(
        target
        for mix in MIXES
        for target in (
            Target(f"{mix.replace('_', '-')} (e) secondary CPU/request <= 0.5x (d)", mix,
                   ("colopp_prerelease_semiactive", "secondary_cpu_s_per_req"),
                   ("colopp_prerelease", "secondary_cpu_s_per_req"), 0.5, at_most=True),
            Target(f"{mix.replace('_', '-')} (e) throughput loss <= 5% vs (d)", mix,
                   ("colopp_prerelease_semiactive", "rps"), ("colopp_prerelease", "rps"), 0.95),
        )
    ),
)  # fmt: skip


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target's ratio and whether it is met; ``met`` is None when a side is missing."""
    out: list[dict[str, Any]] = []
    for target in TARGETS:
        mix = results.get(target.mix, {})
        num = mix.get(target.numerator[0], {}).get(target.numerator[1])
        den = mix.get(target.denominator[0], {}).get(target.denominator[1])
        ratio = num / den if num is not None and den else None
        met = None
        if ratio is not None:
            met = ratio <= target.bound if target.at_most else ratio >= target.bound
        out.append({
            "target": target.name,
            "ratio": ratio,
            "bound": target.bound,
            "comparison": "<=" if target.at_most else ">=",
            "met": met,
        })  # fmt: skip
    return out


def shape_problems(result: dict[str, Any]) -> list[str]:
    """What is missing from a benchmark result (empty when every measured entry is complete).

    A result holds ``meta`` plus one object per mix, each with one object per measured
    configuration carrying every name in :data:`FIGURES`.
    """
    problems = [] if isinstance(result.get("meta"), dict) else ["no meta object"]
    for key, mix in result.items():
        if key == "meta":
            continue
        if key not in MIXES:
            problems.append(f"unknown mix {key!r}")
            continue
        for config, figures in mix.items():
            if config not in CONFIGS:
                problems.append(f"{key}: unknown configuration {config!r}")
                continue
            problems.extend(f"{key}.{config}: no {f}" for f in FIGURES if f not in figures)
    return problems


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table of both mixes, one row per measured configuration."""
    rows = [
        "| mix | configuration | req/s | p50 ms | p99 ms | checkpoints/min | pre-released "
        "| secondary CPU ms/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mix in MIXES:
        for config in CONFIGS:
            f = results.get(mix, {}).get(config)
            if f is None:
                continue
            cpu = f["secondary_cpu_s_per_req"]
            rows.append(
                f"| {mix.replace('_', '-')} | {LABELS[config]} | {f['rps']:.0f} "
                f"| {f['p50_ms']:.1f} | {f['p99_ms']:.0f} | {f['checkpoints_per_min']:.0f} "
                f"| {f['prerelease_ratio']:.0%} | {'-' if cpu is None else f'{cpu * 1000:.2f}'} |"
            )
    return "\n".join(rows)


def format_targets(targets: list[dict[str, Any]]) -> str:
    """One line per target: the ratio, the bound and met / not met / not measured."""
    lines = []
    for t in targets:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}"
        lines.append(f"{t['target']}: {ratio} (needs {t['comparison']} {t['bound']}) {verdict}")
    return "\n".join(lines)
