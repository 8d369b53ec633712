"""Bulk traffic (issue #22): ``python -m bench.bulk --json FILE [--duration S]``.

On the two-host lab of ``bench.pair`` (host A on CPU 0, host B and the client on CPU 1;
``--shared-cpus`` turns that off), one freshly started pair per configuration, (a) to (e):
iperf3 client -> guest (``upload``), iperf3 guest -> client (``-R``, ``download_iperf3``) and
wrk GETs of one 64 KiB kvd value (``download_static``, a deterministic large-object
download), each for ``--duration`` seconds, with the pair's checkpoint count and the
comparator's counters sampled around each run. Mbit/s as the client saw it. Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import pair_cpu
from bench.bulk_stats import (
    TRAFFICS,
    evaluate_targets,
    format_table,
    format_targets,
    iperf3_longest_stall_s,
    iperf3_mbit_per_s,
    iperf3_retransmits,
    process_cpu_delta,
    relay_delta,
    shape_problems,
    window_figures,
    wrk_mbit_per_s,
)
from bench.pair import SETUPS, Bench, Load, client_run, machine, sample
from bench.pair_stats import CONFIGS, LABELS, parse_wrk
from colopp.controller.pair import PairController
from colopp.controller.setup import LocalPair, prepare_local_pair
from colopp.domain import ComparatorKind
from colopp.lab import LabPlan
from colopp.lab.cpuset import plan_cpus

#: Its own lab prefix and state directory: never the namespaces of a bench.pair run.
PREFIX = "clpbulk"
STATE_DIR = Path("/var/lib/colopp/bench-bulk")
#: The accelerator probe's verdict, kept in :data:`STATE_DIR` across configurations.
ACCEL_CACHE = "accel.json"


def fresh_state_dir(base: Path, name: str) -> Path:
    """A new state directory under ``base`` for one configuration's pair, seeded with the
    accelerator probe's cached verdict.

    Every configuration (and every run) gets its own: the agents' status files of the
    previous pair (``compare.json``, ``ingress.json``, same paths) were read as the new
    pair's first sample before its processes wrote theirs (session 9: negative counter
    deltas, missing hold times), and two runs at once shared one token file and state.
    """
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(tempfile.mkdtemp(prefix=f"{name[:12]}-", dir=base))
    cached = base / ACCEL_CACHE
    if cached.exists():
        shutil.copy2(cached, path / ACCEL_CACHE)
    return path


VALUE_SIZE = 65536
KEYS = 4
MIX_SCRIPT = Path(__file__).with_name("pair-mix.lua")
#: iperf3's reporting interval (s): the stalls a mean hides show in ``longest_stall_s``.
INTERVAL_S = 0.5


@contextlib.asynccontextmanager
async def running(name: str, bench: Bench) -> AsyncIterator[tuple[LocalPair, PairController]]:
    """Build the lab and start the configuration's VM(s); tear everything down after."""
    setup = SETUPS[name]
    state_dir = fresh_state_dir(STATE_DIR, name)
    local = await prepare_local_pair(
        state_dir,
        None,
        setup.comparator or ComparatorKind.COLOPP,
        bench.console,
        checkpoint_delay_ms=bench.checkpoint_delay_ms,
        prefix=PREFIX,
        # colopp refuses QEMU's colo-compare with offloads (PairConfig: measured, it nearly
        # stops), so (b) runs without them.
        rx_offload=bench.rx_offload and setup.comparator is not ComparatorKind.BUILTIN,
        tx_offload=bench.tx_offload and setup.comparator is not ComparatorKind.BUILTIN,
        **setup.options,
    )
    with contextlib.suppress(OSError):
        shutil.copy2(state_dir / ACCEL_CACHE, STATE_DIR / ACCEL_CACHE)
    local.deployment.cpu_plan = bench.cpu_plan
    pair: PairController | None = None
    try:
        await local.deployment.start()
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
    # Gone only after a configuration that went well: a failed one keeps its logs.
    shutil.rmtree(state_dir, ignore_errors=True)


async def traffic_run(
    bench: Bench, plan: LabPlan, traffic: str, seconds: int
) -> tuple[float, dict[str, Any]]:
    """One measured run of ``traffic``: (Mbit/s, extra figures)."""
    ip = str(plan.guest_address.ip)
    if traffic in ("upload", "download_iperf3"):
        argv = ["iperf3", "-c", ip, "-t", str(seconds), "-J", "-i", str(INTERVAL_S)]
        argv += ["--connect-timeout", "5000"]
        if traffic == "download_iperf3":
            argv.append("-R")
        text = await client_run(bench, plan, argv, {}, seconds)
        reverse = traffic == "download_iperf3"
        return iperf3_mbit_per_s(text, reverse=reverse), {
            "sender_retransmits": iperf3_retransmits(text),
            "longest_stall_s": iperf3_longest_stall_s(text),
        }
    env = {
        "KVD_PUT_RATIO": "0",
        "KVD_KEYS": str(KEYS),
        "KVD_VALUE_SIZE": str(VALUE_SIZE),
    }
    wrk = ["wrk", "-t1", "-c4", "--timeout", "10s", "--latency", "-s", str(MIX_SCRIPT)]
    url = f"http://{ip}:80/"
    # One connection: its first KEYS requests PUT every key in turn. (A quarter of the GETs
    # still answer 404 in some runs, as with four connections: ``not_found`` counts them.)
    prefill = [w if w != "-c4" else "-c1" for w in wrk]
    await client_run(bench, plan, [*prefill, "-d2s", url], {**env, "KVD_PREFILL": "1"}, 2)
    text = await client_run(bench, plan, [*wrk, f"-d{seconds}s", url], {**env}, seconds)
    run = parse_wrk(text)
    return wrk_mbit_per_s(text), {
        "requests": run.requests,
        "errors": run.errors,
        "p99_ms": run.p99_ms,
        "p50_ms": run.p50_ms,
        "not_found": run.statuses.get("not_found", 0),
        "wrk_output": text.splitlines(),
    }


async def measure_config(name: str, traffics: list[str], bench: Bench) -> dict[str, dict[str, Any]]:
    """Every traffic on one freshly started pair of configuration ``name``."""
    replicated = SETUPS[name].comparator is not None
    out: dict[str, dict[str, Any]] = {}
    async with running(name, bench) as (local, pair):
        bench.meta.setdefault("accel", local.config.vm.accel)
        plan = local.deployment.plan
        for traffic in traffics:
            f = await measure_traffic(bench, pair, plan, traffic, replicated)
            out[traffic] = f
            hold = f["mean_hold_ms"]
            bench.console.log(
                f"{name} {traffic}: {f['mbit_per_s']:.1f} Mbit/s, {f['checkpoints']} "
                f"checkpoints, mean hold {'-' if hold is None else f'{hold:.1f}'} ms, "
                f"divergences {f['divergences']}, CPU busy {f['host_cpu_busy_s']}"
            )
    return out


async def measure_traffic(
    bench: Bench, pair: PairController, plan: LabPlan, traffic: str, replicated: bool
) -> dict[str, Any]:
    load_before = os.getloadavg()
    before = await sample(bench, pair, plan, replicated)
    mbit, extra = await traffic_run(bench, plan, traffic, bench.load.duration_s)
    after = await sample(bench, pair, plan, replicated)
    load_after = os.getloadavg()
    figures = window_figures(
        mbit, after.checkpoints - before.checkpoints, before.counters, after.counters
    )
    figures.update(extra)
    figures["window_s"] = after.at - before.at
    # What else ran on the machine: the 1-minute load average around the window, and how
    # the CPUs were shared (meta.two_hosts: None when both host namespaces shared them).
    figures["loadavg_1m"] = [round(load_before[0], 2), round(load_after[0], 2)]
    figures["host_cpu_busy_s"] = {
        h: round(after.cpu_busy_s[h] - before.cpu_busy_s.get(h, 0.0), 2) for h in after.cpu_busy_s
    }
    # Who used each host's CPU (what limits a configuration when a host is saturated),
    # and what host B's relay carried (pre-release configurations only).
    figures["process_cpu_s"] = process_cpu_delta(before.role_cpu_s, after.role_cpu_s)
    figures["relay"] = relay_delta(before.ingress, after.ingress)
    # CPU that processes outside the lab took from each CPU (other work on the machine):
    # a window where it is high measured who was disturbed, not the configuration.
    figures["outside_lab_cpu"] = pair_cpu.outside_share(before.cpu, after.cpu, figures["window_s"])
    if replicated:
        status = await pair.agents[pair.primary.name].call("status")
        figures["colo_mode"] = (status.get("colo") or {}).get("mode")
    return figures


def write(path: str, result: dict[str, Any], meta: dict[str, Any]) -> None:
    """The result so far, with its targets (after each configuration: a run cut short
    keeps what it measured)."""
    meta["targets"] = evaluate_targets(result)
    with open(path, "w") as fh:
        fh.write(json.dumps({**result, "meta": meta}, indent=2) + "\n")


async def run(configs: list[str], traffics: list[str], bench: Bench, path: str) -> dict[str, Any]:
    result: dict[str, Any] = {t: {} for t in traffics}
    for name in configs:
        write(path, result, bench.meta)
        try:
            figures = await measure_config(name, traffics, bench)
        except Exception as exc:  # one broken configuration must not lose the others
            bench.console.log(f"[red]{name} failed: {type(exc).__name__}: {exc}")
            bench.meta["errors"][name] = f"{type(exc).__name__}: {exc}"
            continue
        for traffic, f in figures.items():
            result[traffic][name] = f
    write(path, result, bench.meta)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__)
    parser.add_argument("--json", required=True, help="write the result here")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run")
    parser.add_argument("--checkpoint-delay-ms", type=int, default=2000)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    parser.add_argument("--traffics", default=",".join(TRAFFICS), help="comma-separated subset")
    parser.add_argument("--shared-cpus", action="store_true", help="do not model two hosts")
    parser.add_argument(
        "--rx-offload",
        action="store_true",
        help="the guest receives coalesced frames (not in (b): see PairConfig)",
    )
    parser.add_argument(
        "--tx-offload",
        action="store_true",
        help="with --rx-offload: the guest sends them too (not in (b))",
    )
    args = parser.parse_args()
    if args.tx_offload and not args.rx_offload:
        parser.error("--tx-offload needs --rx-offload")
    configs = [c for c in args.configs.split(",") if c]
    traffics = [t for t in args.traffics.split(",") if t]
    unknown = [c for c in configs if c not in SETUPS] + [t for t in traffics if t not in TRAFFICS]
    if unknown:
        parser.error(f"unknown configuration or traffic: {', '.join(unknown)}")
    cpu_plan = None if args.shared_cpus else plan_cpus(PREFIX, sorted(os.sched_getaffinity(0)))
    meta: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench.bulk", *sys.argv[1:]]),
        "machine": machine(),
        "duration_s": args.duration,
        "checkpoint_delay_ms": args.checkpoint_delay_ms,
        "value_size": VALUE_SIZE,
        "configurations": {c: LABELS.get(c, c) for c in configs},
        "two_hosts": None if cpu_plan is None else cpu_plan.describe(),
        "rx_offload": args.rx_offload,
        "tx_offload": args.tx_offload,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "errors": {},
    }
    load = Load(args.duration, 0, 4, KEYS, VALUE_SIZE)
    bench = Bench(load, args.checkpoint_delay_ms, cpu_plan, Console(stderr=True), meta)
    bench.rx_offload = args.rx_offload
    bench.tx_offload = args.tx_offload
    result = asyncio.run(run(configs, traffics, bench, args.json))
    meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["loadavg_at_finish"] = os.getloadavg()
    meta["targets"] = evaluate_targets(result)
    result["meta"] = meta
    with open(args.json, "w") as fh:
        fh.write(json.dumps(result, indent=2) + "\n")
    print(format_table(result, tuple(configs)))
    print()
    print(format_targets(result["meta"]["targets"]))
    problems = shape_problems(result)
    return 1 if problems or result["meta"]["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
