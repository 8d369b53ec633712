"""Side by side (issue #5): ``python -m bench.pair --json FILE [--png FILE] [--duration S]``.

The same wrk load (from the lab's client namespace, keep-alive connections, GET/PUT on the
guest kvd's ``/kv/`` keys) against five configurations of the same guest on this machine:
(a) the guest unreplicated, (b) QEMU COLO with its built-in colo-compare, (c) colopp's
comparator, (d) colopp with pre-release, (e) (d) with a semi-active secondary. Each
configuration gets its own freshly started pair (comparators cannot be swapped on a running
pair) and runs every mix on it back to back: a warm-up run that also stores every key,
then the measured run. Around the measured run the primary agent's checkpoint count, the
comparator's counters and the CPU time of both QEMU processes are sampled. Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench.pair_stats import (
    CONFIGS,
    LABELS,
    MIXES,
    Snapshot,
    WrkRun,
    evaluate_targets,
    format_table,
    format_targets,
    host_cpu_seconds,
    parse_wrk,
    proc_cpu_seconds,
    shape_problems,
    window_figures,
)
from colopp.controller.pair import PairController
from colopp.controller.setup import LocalPair, prepare_local_pair
from colopp.lab import LabPlan, Node, netns_argv
from colopp.qemu.argv import ComparatorKind

PREFIX = "clpbnch"
STATE_DIR = Path("/var/lib/colopp/bench-pair")
MIX_SCRIPT = Path(__file__).with_name("pair-mix.lua")
READ_PREFIXES = ("/kv/",)


@dataclass(frozen=True)
class PairSetup:
    """How one configuration's pair is built."""

    comparator: ComparatorKind | None
    """None: the guest alone, unreplicated."""
    options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword options for :func:`prepare_local_pair` (COLO++ features)."""


SETUPS: dict[str, PairSetup] = {
    "unreplicated": PairSetup(None),
    "builtin": PairSetup(ComparatorKind.BUILTIN),
    "colopp": PairSetup(ComparatorKind.COLOPP),
    "colopp_prerelease": PairSetup(
        ComparatorKind.COLOPP, {"prerelease": "auto", "read_prefixes": READ_PREFIXES}
    ),
    "colopp_prerelease_semiactive": PairSetup(
        ComparatorKind.COLOPP,
        {"prerelease": "auto", "read_prefixes": READ_PREFIXES, "semiactive": True},
    ),
}


@dataclass(frozen=True)
class Load:
    """The client load, the same for every configuration."""

    duration_s: int
    warmup_s: int
    connections: int
    threads: int
    keys: int
    value_size: int


# ----- sampling ------------------------------------------------------------------------


def cpu_seconds(pid: Any) -> float | None:
    """CPU seconds used so far by process ``pid`` (None when there is none)."""
    if not isinstance(pid, int):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return proc_cpu_seconds(stat, os.sysconf("SC_CLK_TCK"))


async def snapshot(pair: PairController, replicated: bool) -> tuple[Snapshot, dict[str, Any]]:
    """Sample the pair now; also returns the primary agent's raw status."""
    primary = await pair.agents[pair.primary.name].call("status")
    secondary_cpu = None
    if replicated and pair.secondary is not None:
        secondary = await pair.agents[pair.secondary.name].call("status")
        secondary_cpu = cpu_seconds(secondary.get("pid"))
    counters = (primary.get("comparator") or {}).get("counters") or {}
    snap = Snapshot(
        at=time.monotonic(),
        checkpoints=int(primary.get("checkpoints") or 0) if replicated else 0,
        counters=counters,
        secondary_cpu_s=secondary_cpu,
        primary_cpu_s=cpu_seconds(primary.get("pid")),
        host_cpu_s=host_cpu_seconds(Path("/proc/stat").read_text(), os.sysconf("SC_CLK_TCK")),
    )
    return snap, primary


async def run_wrk(plan: LabPlan, load: Load, put_ratio: float, seconds: int, prefill: bool) -> str:
    """Run wrk in the client namespace; its stdout.

    Raises:
        RuntimeError: wrk failed or hung.
    """
    argv = [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(MIX_SCRIPT),
        f"http://{plan.guest_address.ip}:80/",
    ]
    env = {
        **os.environ,
        "KVD_PUT_RATIO": str(put_ratio),
        "KVD_KEYS": str(load.keys),
        "KVD_VALUE_SIZE": str(load.value_size),
        "KVD_PREFILL": "1" if prefill else "0",
    }
    proc = await asyncio.create_subprocess_exec(
        *netns_argv(plan.netns(Node.CLIENT), argv),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"wrk did not finish within {seconds + 60} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {err.decode(errors='replace')[-400:]}")
    return out.decode()


# ----- one configuration ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(
    name: str, console: Console, checkpoint_delay_ms: int, rearm_ms: int | None
) -> AsyncIterator[tuple[LocalPair, PairController]]:
    """Build the lab and start the configuration's VM(s); tear everything down after."""
    setup = SETUPS[name]
    comparator = setup.comparator or ComparatorKind.COLOPP
    options = dict(setup.options)
    if "prerelease" in options and rearm_ms is not None:
        options["prerelease_rearm_ms"] = rearm_ms
    local = await prepare_local_pair(
        STATE_DIR,
        None,
        comparator,
        console,
        checkpoint_delay_ms=checkpoint_delay_ms,
        prefix=PREFIX,
        **options,
    )
    await local.deployment.start()
    pair = PairController(local.config, local.deployment.agents, progress=console.log)
    try:
        if setup.comparator is None:
            await pair.launch_alone()
        else:
            await pair.protect()
        yield local, pair
    finally:
        await pair.stop()
        await local.deployment.stop()


async def measure_mix(
    pair: PairController, plan: LabPlan, load: Load, mix: str, replicated: bool
) -> tuple[dict[str, Any], WrkRun]:
    """Warm up, then one measured wrk run with snapshots around it."""
    put_ratio = MIXES[mix]
    warmup = None
    if load.warmup_s > 0:
        warmup = parse_wrk(await run_wrk(plan, load, put_ratio, load.warmup_s, prefill=True))
    before, _ = await snapshot(pair, replicated)
    text = await run_wrk(plan, load, put_ratio, load.duration_s, prefill=False)
    after, status = await snapshot(pair, replicated)
    run = parse_wrk(text)
    figures = window_figures(before, after, run)
    figures["wrk_output"] = text.splitlines()
    if warmup is not None:
        figures["warmup"] = {
            "rps": warmup.rps,
            "errors": warmup.errors,
            "error_statuses": warmup.statuses,
        }
    if replicated:
        # A pair that left COLO during the window would make these figures meaningless.
        figures["colo_mode"] = (status.get("colo") or {}).get("mode")
        figures["colo_exit"] = status.get("colo_exit")
    return figures, run


async def measure_config(
    name: str,
    mixes: list[str],
    load: Load,
    console: Console,
    progress: Progress,
    task: Any,
    meta: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """All mixes on one freshly started pair of configuration ``name``."""
    replicated = SETUPS[name].comparator is not None
    out: dict[str, dict[str, Any]] = {}
    progress.update(task, description=f"{name}: starting {'COLO' if replicated else 'the VM'}")
    started = time.monotonic()
    delay, rearm = meta["checkpoint_delay_ms"], meta["prerelease_rearm_ms"]
    async with running(name, console, delay, rearm) as (local, pair):
        console.log(f"{name}: ready in {time.monotonic() - started:.0f} s")
        meta.setdefault("accel", local.config.vm.accel)
        meta.setdefault("accel_reason", local.accel_reason)
        vm = local.config.vm
        meta.setdefault("guest", {"memory_mb": vm.memory_mb, "vcpus": vm.vcpus})
        if "qemu" not in meta:
            info = await pair.agents[pair.primary.name].call("probe_qemu", accel=vm.accel)
            meta["qemu"] = info.get("version")
        for mix in mixes:
            phase = f"warm-up {load.warmup_s} s, then {load.duration_s} s measured"
            progress.update(task, description=f"{name}: {mix} ({phase})")
            figures, run = await measure_mix(pair, local.deployment.plan, load, mix, replicated)
            out[mix] = figures
            cpu = figures["secondary_cpu_s_per_req"]
            console.log(
                f"{name} {mix}: {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.1f} ms, "
                f"p99 {figures['p99_ms']:.0f} ms, "
                f"{figures['checkpoints_per_min']:.0f} checkpoints/min, "
                f"pre-released {figures['prerelease_ratio']:.0%}, secondary CPU "
                f"{'-' if cpu is None else f'{cpu * 1000:.2f} ms'}/req, {run.errors} errors"
            )
            progress.advance(task)
    return out


# ----- the whole run -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """This host, for the record."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release()}


async def run(
    configs: list[str],
    mixes: list[str],
    load: Load,
    checkpoint_delay_ms: int,
    rearm_ms: int | None,
    console: Console,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench.pair", *sys.argv[1:]]),
        "machine": machine(),
        "duration_s": load.duration_s,
        "warmup_s": load.warmup_s,
        "connections": load.connections,
        "threads": load.threads,
        "keys": load.keys,
        "value_size": load.value_size,
        "put_ratio": {m: MIXES[m] for m in mixes},
        "checkpoint_delay_ms": checkpoint_delay_ms,
        "prerelease_rearm_ms": rearm_ms,
        "configurations": {c: LABELS[c] for c in configs},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "errors": {},
    }
    result: dict[str, Any] = {mix: {} for mix in mixes}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("starting", total=len(configs) * len(mixes))
        for name in configs:
            try:
                figures = await measure_config(name, mixes, load, console, progress, task, meta)
            except Exception as exc:  # one broken configuration must not lose the others
                console.log(f"[red]{name} failed: {type(exc).__name__}: {exc}")
                meta["errors"][name] = f"{type(exc).__name__}: {exc}"
                continue
            for mix, f in figures.items():
                result[mix][name] = f
    meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["targets"] = evaluate_targets(result)
    result["meta"] = meta
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pair", description=__doc__)
    parser.add_argument("--json", type=Path, required=True, help="write the result here")
    parser.add_argument("--png", type=Path, help="draw the chart here (needs matplotlib)")
    parser.add_argument("--duration", type=int, default=20, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up seconds per run")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keys", type=int, default=64)
    parser.add_argument("--value-size", type=int, default=128)
    parser.add_argument("--checkpoint-delay-ms", type=int, default=2000)
    parser.add_argument(
        "--rearm-ms",
        type=int,
        help="(d), (e): checkpoint this long after a write disarmed pre-release "
        "(ProtectionOptions.prerelease_rearm_ms; default: wait for the periodic checkpoint)",
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    parser.add_argument("--mixes", default=",".join(MIXES), help="comma-separated subset")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw --png and reprint from --json"
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    if args.replot:
        result = json.loads(args.json.read_text())
        result["meta"]["targets"] = evaluate_targets(result)
    else:
        configs = [c for c in args.configs.split(",") if c]
        mixes = [m for m in args.mixes.split(",") if m]
        unknown = [c for c in configs if c not in SETUPS] + [m for m in mixes if m not in MIXES]
        if unknown:
            parser.error(f"unknown configuration or mix: {', '.join(unknown)}")
        load = Load(
            args.duration, args.warmup, args.connections, args.threads, args.keys, args.value_size
        )
        result = asyncio.run(
            run(configs, mixes, load, args.checkpoint_delay_ms, args.rearm_ms, console)
        )
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    problems = shape_problems(result)
    if problems:
        console.log(f"[red]incomplete result: {'; '.join(problems)}")
    if args.png is not None:
        from bench.pair_chart import draw_chart

        draw_chart(result, args.png)
    print(format_table(result))
    print()
    print(format_targets(result["meta"]["targets"]))
    return 1 if problems or result["meta"]["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
