"""Bulk traffic (issue #22): ``python -m bench.bulk --json FILE [--duration S]``.

On the lab of ``bench.pair`` (one freshly started pair per configuration, (a) to (e)):
iperf3 client -> guest (``upload``), iperf3 guest -> client (``-R``, ``download_iperf3``) and
wrk GETs of one 64 KiB kvd value (``download_static``, a deterministic large-object
download), each for ``--duration`` seconds, with the pair's checkpoint count and the
comparator's counters sampled around each run. Mbit/s as the client saw it. Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from typing import Any

from rich.console import Console

from bench.bulk_stats import (
    TRAFFICS,
    evaluate_targets,
    format_table,
    format_targets,
    iperf3_mbit_per_s,
    iperf3_retransmits,
    shape_problems,
    window_figures,
    wrk_mbit_per_s,
)
from bench.pair import MIX_SCRIPT, SETUPS, machine, running, snapshot
from bench.pair_stats import CONFIGS, LABELS
from colopp.controller.pair import PairController
from colopp.lab import LabPlan, Node, netns_argv

VALUE_SIZE = 65536
KEYS = 4


async def client_run(plan: LabPlan, argv: list[str], env: dict[str, str], limit: float) -> str:
    """Run ``argv`` in the client namespace; its stdout.

    Raises:
        RuntimeError: it failed or hung.
    """
    proc = await asyncio.create_subprocess_exec(
        *netns_argv(plan.netns(Node.CLIENT), argv),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{argv[0]} did not finish within {limit:.0f} s") from None
    if proc.returncode != 0:
        tail = (out + err).decode(errors="replace")[-400:]
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {tail}")
    return out.decode()


async def traffic_run(plan: LabPlan, traffic: str, seconds: int) -> tuple[float, dict[str, Any]]:
    """One measured run of ``traffic``: (Mbit/s, extra figures)."""
    ip = str(plan.guest_address.ip)
    if traffic in ("upload", "download_iperf3"):
        argv = ["iperf3", "-c", ip, "-t", str(seconds), "-J", "--connect-timeout", "5000"]
        if traffic == "download_iperf3":
            argv.append("-R")
        text = await client_run(plan, argv, {}, seconds + 60)
        reverse = traffic == "download_iperf3"
        return iperf3_mbit_per_s(text, reverse=reverse), {
            "sender_retransmits": iperf3_retransmits(text)
        }
    env = {
        "KVD_PUT_RATIO": "0",
        "KVD_KEYS": str(KEYS),
        "KVD_VALUE_SIZE": str(VALUE_SIZE),
    }
    wrk = ["wrk", "-t1", "-c4", "--timeout", "10s", "--latency", "-s", str(MIX_SCRIPT)]
    url = f"http://{ip}:80/"
    await client_run(plan, [*wrk, "-d2s", url], {**env, "KVD_PREFILL": "1"}, 62)
    text = await client_run(plan, [*wrk, f"-d{seconds}s", url], {**env, "KVD_PREFILL": "0"}, 70)
    return wrk_mbit_per_s(text), {"wrk_output": text.splitlines()}


async def measure_config(
    name: str, traffics: list[str], seconds: int, console: Console, meta: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Every traffic on one freshly started pair of configuration ``name``."""
    replicated = SETUPS[name].comparator is not None
    out: dict[str, dict[str, Any]] = {}
    async with running(name, console, meta["checkpoint_delay_ms"], None) as (local, pair):
        meta.setdefault("accel", local.config.vm.accel)
        plan = local.deployment.plan
        for traffic in traffics:
            out[traffic] = await measure_traffic(pair, plan, traffic, seconds, replicated)
            f = out[traffic]
            console.log(
                f"{name} {traffic}: {f['mbit_per_s']:.1f} Mbit/s, {f['checkpoints']} checkpoints, "
                f"mean hold {f['mean_hold_ms']} ms, divergences {f['divergences']}"
            )
    return out


async def measure_traffic(
    pair: PairController, plan: LabPlan, traffic: str, seconds: int, replicated: bool
) -> dict[str, Any]:
    before, _ = await snapshot(pair, replicated)
    mbit, extra = await traffic_run(plan, traffic, seconds)
    after, status = await snapshot(pair, replicated)
    figures = window_figures(
        mbit, after.checkpoints - before.checkpoints, before.counters, after.counters
    )
    figures.update(extra)
    if replicated:
        figures["colo_mode"] = (status.get("colo") or {}).get("mode")
    return figures


async def run(configs: list[str], traffics: list[str], seconds: int, delay_ms: int) -> Any:
    console = Console(stderr=True)
    meta: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench.bulk", *sys.argv[1:]]),
        "machine": machine(),
        "duration_s": seconds,
        "checkpoint_delay_ms": delay_ms,
        "value_size": VALUE_SIZE,
        "configurations": {c: LABELS[c] for c in configs},
        "cpus": "unpinned: the lab's host namespaces share both CPUs",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "errors": {},
    }
    result: dict[str, Any] = {t: {} for t in traffics}
    for name in configs:
        try:
            figures = await measure_config(name, traffics, seconds, console, meta)
        except Exception as exc:  # one broken configuration must not lose the others
            console.log(f"[red]{name} failed: {type(exc).__name__}: {exc}")
            meta["errors"][name] = f"{type(exc).__name__}: {exc}"
            continue
        for traffic, f in figures.items():
            result[traffic][name] = f
    meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["targets"] = evaluate_targets(result)
    result["meta"] = meta
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__)
    parser.add_argument("--json", required=True, help="write the result here")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run")
    parser.add_argument("--checkpoint-delay-ms", type=int, default=2000)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    parser.add_argument("--traffics", default=",".join(TRAFFICS), help="comma-separated subset")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    traffics = [t for t in args.traffics.split(",") if t]
    unknown = [c for c in configs if c not in SETUPS] + [t for t in traffics if t not in TRAFFICS]
    if unknown:
        parser.error(f"unknown configuration or traffic: {', '.join(unknown)}")
    result = asyncio.run(run(configs, traffics, args.duration, args.checkpoint_delay_ms))
    with open(args.json, "w") as fh:
        fh.write(json.dumps(result, indent=2) + "\n")
    print(format_table(result, tuple(configs)))
    print()
    print(format_targets(result["meta"]["targets"]))
    problems = shape_problems(result)
    return 1 if problems or result["meta"]["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
