"""Side by side (issue 15): ``python -m bench.pair --json FILE [--png FILE] [--quick]``.

Six configurations of the same guest, on a lab that models two hosts (each host namespace's
processes confined to its own CPUs by a cpuset cgroup: host A on CPU 0, host B and the client
on CPU 1, see :mod:`colopp.lab.cpuset`; ``--shared-cpus`` turns that off): (a) the guest
unreplicated (on host A), (b) QEMU COLO with its colo-compare, (c) colopp's comparator, (d) (c)
with pre-release (key scope: ``/kv/{key}`` and Redis keys), (e) (d) with a semi-active
secondary, and (c) with a semi-active secondary. Three mixes: ``read_mostly`` (HTTP to kvd,
5% PUT), ``write_heavy`` (HTTP, 50% PUT), ``redis_read_mostly`` (RESP to redis-server, 5%
SET).

Two passes, each configuration on a freshly started pair (comparators cannot be swapped on
a running pair): the **closed loop** (:mod:`bench.loadgen` ``--closed``, keep-alive
connections), then the **open loop** (:mod:`bench.loadgen`, wrk2-style fixed schedule) at
half of the lowest closed-loop rate measured on that mix, the same rate for every
configuration. After the closed loop, the first configuration's closed loop runs once more
(``closed_loop_repeat``, ``drift``: its rate at the end over its rate at the start; not with
``--quick`` or ``--no-repeat``): the closed-loop figures of a run whose drift strays far from 1
are not comparable. Every window is preceded by a warm-up that also stores every key. Around each
window: the comparator's counters, each host's process CPU and each host's CPU busy. Needs
root. ``--quick``: 5 s windows, configurations (a), (c), (e), mixes read_mostly and
redis_read_mostly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
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

from bench import pair_cpu
from bench.pair_figures import (
    CONFIGS,
    LABELS,
    MIXES,
    LoadRun,
    Sample,
    closed_figures,
    drift,
    evaluate_targets,
    format_report,
    open_figures,
    open_rate,
    shape_problems,
)
from bench.pair_stats import proc_cpu_seconds
from colopp.agent.semiactive import semiactive_quota
from colopp.controller.local import processes_in_netns
from colopp.controller.pair import PairController
from colopp.controller.setup import GUESTS, LocalPair, prepare_local_pair
from colopp.lab import LabPlan, Node, netns_argv
from colopp.lab.cpuset import CpuPlan, cpu_busy, plan_cpus
from colopp.qemu.argv import ComparatorKind

PREFIX = "clpbnch"
STATE_DIR = Path("/var/lib/colopp/bench-pair")
READ_PREFIXES = ("/kv/",)
RESP_PORT = 6379
QUICK_CONFIGS = ("unreplicated", "colopp", "colopp_prerelease_semiactive")
QUICK_MIXES = ("read_mostly", "redis_read_mostly")
_PRERELEASE = {
    "prerelease": "auto",
    "read_prefixes": READ_PREFIXES,
    "resp_ports": (RESP_PORT,),
    "prerelease_scope": "key",
}


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
    "colopp_prerelease": PairSetup(ComparatorKind.COLOPP, dict(_PRERELEASE)),
    "colopp_prerelease_semiactive": PairSetup(
        ComparatorKind.COLOPP, {**_PRERELEASE, "semiactive": True}
    ),
    "colopp_semiactive": PairSetup(ComparatorKind.COLOPP, {"semiactive": True}),
}


@dataclass(frozen=True)
class Load:
    """The client load, the same for every configuration."""

    duration_s: int
    warmup_s: int
    connections: int
    keys: int
    value_size: int


@dataclass
class Bench:
    """One bench run's fixed parts."""

    load: Load
    checkpoint_delay_ms: int
    cpu_plan: CpuPlan | None
    console: Console
    meta: dict[str, Any]
    #: Which guest the runs protect (``--guest``): kvd (the default) or debian.
    guest: str = "kvd"
    #: Where to keep the figures so far after each configuration (a long run cut short on
    #: a shared machine still leaves what it measured; ``meta.partial`` says so).
    partial: Path | None = None
    #: ``--open-rates``: skip the closed loop and offer these rates (mix -> req/s).
    open_rates: dict[str, float] | None = None
    #: Repeat the first configuration's closed loop at the end (``drift``; off with
    #: ``--quick`` and ``--no-repeat``).
    repeat_first: bool = False
    #: ``--rx-offload``: the guest receives coalesced frames (VmSpec.rx_offload) in every
    #: configuration but QEMU's colo-compare (colopp refuses it with offloads: PairConfig).
    rx_offload: bool = False
    #: ``--tx-offload`` (with ``--rx-offload``): it also sends them (VmSpec.tx_offload).
    tx_offload: bool = False

    def save_partial(self, result: dict[str, Any]) -> None:
        if self.partial is not None:
            data = {**result, "meta": {**self.meta, "partial": True}}
            self.partial.write_text(json.dumps(data, indent=2) + "\n")


# ----- sampling ------------------------------------------------------------------------


def process_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by ``pids`` (processes that vanished count 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            total += proc_cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), ticks)
    return total


async def sample(bench: Bench, pair: PairController, plan: LabPlan, replicated: bool) -> Sample:
    """The pair now: comparator counters, checkpoints, per-host CPU."""
    primary = await pair.agents[pair.primary.name].call("status")
    counters = (primary.get("comparator") or {}).get("counters") or {}
    ingress: dict[str, Any] = {}
    if replicated and pair.secondary is not None:
        secondary = await pair.agents[pair.secondary.name].call("status")
        ingress = (secondary.get("ingress") or {}).get("counters") or {}
    hosts = {"hosta": Node.HOST_A, "hostb": Node.HOST_B}
    process_cpu = {
        name: process_cpu_seconds(processes_in_netns(plan.netns(node)))
        for name, node in hosts.items()
    }
    busy: dict[str, float] = {}
    if bench.cpu_plan is not None:
        stat = Path("/proc/stat").read_text()
        ticks = os.sysconf("SC_CLK_TCK")
        busy = {
            name: cpu_busy(stat, bench.cpu_plan.cpus[node], ticks) for name, node in hosts.items()
        }
    return Sample(
        at=time.monotonic(),
        role_cpu_s={
            name: pair_cpu.role_cpu_seconds(processes_in_netns(plan.netns(node)))
            for name, node in hosts.items()
        },
        checkpoints=int(primary.get("checkpoints") or 0) if replicated else 0,
        counters=counters,
        host_process_cpu_s=process_cpu,
        cpu_busy_s=busy,
        cpu=pair_cpu.take(bench.cpu_plan),
        loadavg=os.getloadavg(),
        ingress=ingress,
    )


# ----- the client ----------------------------------------------------------------------


async def client_run(
    bench: Bench, plan: LabPlan, argv: list[str], env: dict[str, str], limit: float
) -> str:
    """Run ``argv`` in the client namespace (on the client's CPUs); its stdout.

    Raises:
        RuntimeError: the client failed or hung.
    """
    argv = netns_argv(plan.netns(Node.CLIENT), argv)
    if bench.cpu_plan is not None:  # outside: `ip netns exec` remounts /sys
        argv = bench.cpu_plan.wrap(Node.CLIENT, argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{argv[0]} did not finish within {limit + 60} s") from None
    if proc.returncode != 0:
        raise RuntimeError(
            f"client exited {proc.returncode}: {err.decode(errors='replace')[-400:]}"
        )
    return out.decode()


def loadgen_argv(
    bench: Bench, plan: LabPlan, mix: str, seconds: float, rate: float | None, prefill: bool
) -> list[str]:
    proto, put_ratio = MIXES[mix]
    load = bench.load
    return [
        sys.executable, "-m", "bench.loadgen", "--proto", proto,
        "--host", str(plan.guest_address.ip), "--connections", str(load.connections),
        *(["--rate", f"{rate:.3f}"] if rate else ["--closed"]),
        "--duration", str(seconds), "--put-ratio", str(put_ratio), "--keys", str(load.keys),
        "--value-size", str(load.value_size), *(["--prefill"] if prefill else []),
    ]  # fmt: skip


async def run_load(
    bench: Bench, plan: LabPlan, mix: str, seconds: float, rate: float | None, prefill: bool
) -> LoadRun:
    """One window of load (bench.loadgen, closed loop when ``rate`` is None): one client
    program for both loops and both protocols, so the same client cost on the client's CPU
    and its own account of every error."""
    text = await client_run(
        bench,
        plan,
        loadgen_argv(bench, plan, mix, seconds, rate, prefill),
        {"PYTHONPATH": str(Path(__file__).parent.parent)},
        seconds,
    )
    out = json.loads(text.strip().splitlines()[-1])
    if "fatal" in out:
        raise RuntimeError(f"loadgen: {out['fatal']}")
    return LoadRun(
        out["requests"], out["rps"], out["p50_ms"], out["p99_ms"], out["p999_ms"],
        out["errors"], offered_rps=rate, detail={"error_samples": out["error_samples"]},
    )  # fmt: skip


# ----- one configuration ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(name: str, bench: Bench) -> AsyncIterator[tuple[LocalPair, PairController]]:
    """Build the lab and start the configuration's VM(s); tear everything down after."""
    setup = SETUPS[name]
    local = await prepare_local_pair(
        STATE_DIR,
        None,
        setup.comparator or ComparatorKind.COLOPP,
        bench.console,
        checkpoint_delay_ms=bench.checkpoint_delay_ms,
        prefix=PREFIX,
        guest=bench.guest,
        **setup.options,
    )
    local.deployment.cpu_plan = bench.cpu_plan
    pair: PairController | None = None
    try:
        await local.deployment.start()  # inside: a failed start still tears down what began
        pair = PairController(local.config, local.deployment.agents, progress=bench.console.log)
        if setup.comparator is None:
            await pair.launch_alone()
        else:
            await pair.protect()
        yield local, pair
    finally:
        if pair is not None:
            await pair.stop()
        await local.deployment.stop()


async def measure_config(
    name: str, mixes: list[str], bench: Bench, rates: dict[str, float] | None
) -> dict[str, dict[str, Any]]:
    """Every mix on one freshly started pair: closed loop (``rates`` None) or open loop."""
    replicated = SETUPS[name].comparator is not None
    out: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    async with running(name, bench) as (local, pair):
        plan = local.deployment.plan
        bench.console.log(f"{name}: ready in {time.monotonic() - started:.0f} s")
        bench.meta.setdefault("accel", local.config.vm.accel)
        for mix in mixes:
            rate = None if rates is None else rates.get(mix)
            if rates is not None and rate is None:
                continue
            if bench.load.warmup_s > 0:
                await run_load(bench, plan, mix, bench.load.warmup_s, None, prefill=True)
            before = await sample(bench, pair, plan, replicated)
            run = await run_load(bench, plan, mix, bench.load.duration_s, rate, prefill=False)
            after = await sample(bench, pair, plan, replicated)
            figures = (closed_figures if rate is None else open_figures)(before, after, run)
            out[mix] = figures
            bench.console.log(
                f"{name} {mix} {'closed' if rate is None else f'open {rate:.0f}/s'}: "
                f"{run.rps:.0f} req/s p50 {run.p50_ms:.1f} ms p99 {run.p99_ms:.0f} ms, "
                f"early {figures['prerelease_share']:.0%}, {run.errors} errors, "
                f"CPU busy {figures['host_cpu_busy']}"
            )
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
    load = os.getloadavg()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_at_start": load,
    }


async def run(configs: list[str], mixes: list[str], bench: Bench) -> dict[str, Any]:
    result: dict[str, Any] = {
        "closed_loop": {m: {} for m in mixes},
        "open_loop": {m: {} for m in mixes},
    }
    for name in configs if bench.open_rates is None else ():
        try:
            figures = await measure_config(name, mixes, bench, None)
        except Exception as exc:  # one broken configuration must not lose the others
            bench.console.log(f"[red]{name} (closed loop) failed: {type(exc).__name__}: {exc}")
            bench.meta["errors"][f"closed_loop.{name}"] = f"{type(exc).__name__}: {exc}"
            continue
        for mix, f in figures.items():
            result["closed_loop"][mix][name] = f
        bench.save_partial(result)
    if bench.repeat_first and bench.open_rates is None and len(configs) > 1:
        # The first configuration again, last: how far the machine drifted in between.
        first = configs[0]
        bench.meta["repeated_config"] = first
        try:
            again = await measure_config(first, mixes, bench, None)
        except Exception as exc:
            bench.console.log(f"[red]{first} (repeat) failed: {type(exc).__name__}: {exc}")
            bench.meta["errors"][f"closed_loop_repeat.{first}"] = f"{type(exc).__name__}: {exc}"
        else:
            result["closed_loop_repeat"] = {mix: {first: f} for mix, f in again.items()}
            result["drift"] = drift({m: result["closed_loop"][m].get(first) for m in mixes}, again)
            bench.save_partial(result)
    if bench.open_rates is not None:  # --open-rates: no closed loop, these rates
        rates = {m: r for m, r in bench.open_rates.items() if m in mixes}
    else:
        rates = {m: r for m in mixes if (r := open_rate(result["closed_loop"][m])) is not None}
    bench.meta["open_loop_rates"] = rates
    for name in configs:
        try:
            figures = await measure_config(name, mixes, bench, rates)
        except Exception as exc:
            bench.console.log(f"[red]{name} (open loop) failed: {type(exc).__name__}: {exc}")
            bench.meta["errors"][f"open_loop.{name}"] = f"{type(exc).__name__}: {exc}"
            continue
        for mix, f in figures.items():
            result["open_loop"][mix][name] = f
        bench.save_partial(result)
    return result


def parse_rates(text: str, parser: argparse.ArgumentParser) -> dict[str, float]:
    """``mix=rate,...`` -> {mix: rate}; exits through ``parser`` on a bad item."""
    rates: dict[str, float] = {}
    for item in text.split(","):
        mix, sep, rate = item.partition("=")
        try:
            rates[mix] = float(rate)
        except ValueError:
            parser.error(f"--open-rates: {item!r} is not mix=req/s")
        if not sep or mix not in MIXES:
            parser.error(f"--open-rates: {item!r} is not mix=req/s")
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pair", description=__doc__)
    parser.add_argument("--json", type=Path, required=True, help="write the result here")
    parser.add_argument("--png", type=Path, help="draw the chart here (needs matplotlib)")
    parser.add_argument("--quick", action="store_true", help="5 s windows, (a), (c), (e), 2 mixes")
    parser.add_argument("--duration", type=int, help="measured seconds per window (default 20)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per window (default 5)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--keys", type=int, default=64)
    parser.add_argument("--value-size", type=int, default=128)
    parser.add_argument("--checkpoint-delay-ms", type=int, default=2000)
    parser.add_argument("--guest", choices=GUESTS, default="kvd", help="the protected guest")
    parser.add_argument("--shared-cpus", action="store_true", help="do not model two hosts")
    parser.add_argument("--configs", help="comma-separated subset")
    parser.add_argument("--mixes", help="comma-separated subset")
    parser.add_argument(
        "--open-rates",
        help="open loop only, at these rates (e.g. read_mostly=76.7,redis_read_mostly=172.6)",
    )
    parser.add_argument(
        "--no-repeat",
        action="store_true",
        help="do not repeat the first configuration's closed loop at the end (drift check)",
    )
    parser.add_argument("--replot", action="store_true", help="only redraw and reprint --json")
    args = parser.parse_args()
    console = Console(stderr=True)
    if args.png is not None and importlib.util.find_spec("matplotlib") is None:
        parser.error("--png needs matplotlib: pip install -e '.[bench]' (scripts/setup.sh does)")
    if args.replot:
        result = json.loads(args.json.read_text())
        result["targets"] = evaluate_targets(result)
    else:
        configs = (args.configs or ",".join(QUICK_CONFIGS if args.quick else CONFIGS)).split(",")
        mixes = (args.mixes or ",".join(QUICK_MIXES if args.quick else MIXES)).split(",")
        unknown = [c for c in configs if c not in SETUPS] + [m for m in mixes if m not in MIXES]
        if unknown:
            parser.error(f"unknown configuration or mix: {', '.join(unknown)}")
        duration = args.duration or (5 if args.quick else 20)
        warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
        cpu_plan = None if args.shared_cpus else plan_cpus(PREFIX, sorted(os.sched_getaffinity(0)))
        meta: dict[str, Any] = {
            "command": shlex.join(["python", "-m", "bench.pair", *sys.argv[1:]]),
            "machine": machine(),
            "quick": args.quick,
            "guest": args.guest,
            "duration_s": duration,
            "warmup_s": warmup,
            "connections": args.connections,
            "keys": args.keys,
            "value_size": args.value_size,
            "mixes": {m: {"protocol": MIXES[m][0], "write_share": MIXES[m][1]} for m in mixes},
            "checkpoint_delay_ms": args.checkpoint_delay_ms,
            # the agents inherit this environment: COLOPP_SEMIACTIVE_QUOTA reaches them
            "semiactive_quota": semiactive_quota(),
            "two_hosts": None if cpu_plan is None else cpu_plan.describe(),
            "configurations": {c: LABELS[c] for c in configs},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "errors": {},
        }
        load = Load(duration, warmup, args.connections, args.keys, args.value_size)
        bench = Bench(
            load, args.checkpoint_delay_ms, cpu_plan, console, meta, args.guest, args.json
        )
        bench.repeat_first = not (args.quick or args.no_repeat)
        if args.open_rates:
            bench.open_rates = parse_rates(args.open_rates, parser)
            meta["open_only"] = True
        result = asyncio.run(run(configs, mixes, bench))
        meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        result["targets"] = evaluate_targets(result)
        result["meta"] = meta
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    problems = shape_problems(result, quick=bool(result.get("meta", {}).get("quick")))
    if problems:
        console.log(f"[red]incomplete result: {'; '.join(problems[:10])}")
    if args.png is not None:
        from bench.pair_chart import draw_chart

        draw_chart(result, args.png)
    print(format_report(result))
    return 1 if problems or result.get("meta", {}).get("errors") else 0


if __name__ == "__main__":
    raise SystemExit(main())
