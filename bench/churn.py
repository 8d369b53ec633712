"""Young connections through failovers in a row (issue #18).

``python -m bench.churn (--failovers N | --switchovers N) [--comparator colopp|builtin]
[--open-every 0.1] [--lifetime 30] [--json FILE]``

A protected pair on the lab, the supervisor watching it (automatic re-protection). A client
in the lab's client namespace (``bench.churn_client``) opens a new keep-alive connection
every ``--open-every`` seconds, keeps each ``--lifetime`` seconds with a request every 0.5 s,
and opens one idle connection just before the first failover (silent 60 s, then used).
Then N times in a row: SIGKILL the current primary QEMU (or ask for a switchover) and wait
until the pair is protected again, so each failover hits a pair that was itself re-protected.
Keys: ``connections_opened``, ``connections_broken`` (an error, a reset, a wrong answer or a
request not answered within 5 s), ``writes_lost``, ``idle_broken``. Needs root.

On this 2-core TCG host the guest answers about 70 requests/s in COLO: the issue's rate
(a connection every 0.1 s, ~300 open, ~600 requests/s asked) overloads it and most
connections break on the 5 s timeout before any failover
(``bench/results-churn-f4-overload.json``); ``--open-every 0.5`` (~60 open) is what it
sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.cpu_sample import CpuSampler
from colopp.colo.state import PairState
from colopp.demo.harness import SupervisedPair
from colopp.domain import ComparatorKind
from colopp.lab import Node, netns_argv

STATE_DIR = "/var/lib/colopp/bench-churn"


def _client(sp: SupervisedPair, args: argparse.Namespace) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "bench.churn_client",
        "--target",
        f"{sp.plan.guest_address.ip}:80",
        "--open-every",
        str(args.open_every),
        "--lifetime",
        str(args.lifetime),
        "--write-every",
        str(args.write_every),
        "--pacing",
        args.pacing,
    ]
    return subprocess.Popen(
        netns_argv(sp.plan.netns(Node.CLIENT), argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def _capture(sp: SupervisedPair, path: Path) -> subprocess.Popen[bytes]:
    """tcpdump of the service port in the client's namespace (diagnostics)."""
    argv = ["tcpdump", "-i", "any", "-s", "128", "-w", str(path), "tcp", "port", "80"]
    return subprocess.Popen(
        netns_argv(sp.plan.netns(Node.CLIENT), argv),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _record(sp: SupervisedPair) -> list[list[int]]:
    """The serving side's table of record: [client port, delta] per translated connection."""
    rows = await sp.pair.agents[sp.pair.primary.name].call("translation_record")
    return [[int(row["peer"][1]), int(row["delta"])] for row in rows]


def _young_status(status: dict[str, Any]) -> dict[str, Any]:
    counters = (status.get("comparator") or {}).get("counters") or {}
    return dict((counters.get("shell") or {}).get("young") or {})


def _numbers(status: dict[str, Any]) -> dict[str, Any]:
    """The comparator's non-zero numeric counters (why it checkpointed, what it held)."""
    counters = (status.get("comparator") or {}).get("counters") or {}
    out = {k: v for k, v in counters.items() if isinstance(v, int | float) and v}
    return out | {"divergences": counters.get("divergences")}


def _classify(cmdline: str) -> str | None:
    """This bench's processes by role (see bench.cpu_sample)."""
    if "bench.churn_client" in cmdline:
        return "client"
    if STATE_DIR not in cmdline and "clpchurn" not in cmdline:
        return "driver" if "bench.churn" in cmdline else None
    for needle, name in (
        ("qemu-system", "qemu"),
        ("colopp.compare", "comparator"),
        ("colopp.rewrite", "translator"),
        ("colopp.agent", "agent"),
    ):
        if needle in cmdline:
            return name
    return None


def _say(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    comparator = ComparatorKind(args.comparator)
    options: dict[str, Any] = {"semiactive": args.semiactive}
    if args.prerelease is not None:
        options |= {"prerelease": args.prerelease, "read_prefixes": tuple(args.read_prefix)}
    sp = await SupervisedPair.protect(
        Path(STATE_DIR), None, "clpchurn", comparator, console, **options
    )
    events = args.failovers or args.switchovers
    client: subprocess.Popen[str] | None = None
    sampler = CpuSampler(_classify).start()
    phases: dict[str, tuple[float, float]] = {}
    events_log: list[dict[str, Any]] = []
    capture = _capture(sp, args.capture) if args.capture is not None else None
    try:
        await sp.next_checkpoint()
        sp.supervise()
        client = _client(sp, args)
        started = time.monotonic()
        # Let connections of every age exist, some younger than the last checkpoint.
        await asyncio.sleep(max(args.lifetime / 2, args.steady))  # warm-up, in client time
        phases["steady"] = (started + 5.0, time.monotonic())
        if events:
            _say(client, "idle")
        for event in range(1, events + 1):
            status = await sp.pair.agents[sp.pair.primary.name].call("status")
            at, wall = time.monotonic(), time.time()
            if args.failovers:
                os.kill(int(status["pid"]), signal.SIGKILL)
            else:
                sp.supervisor.request_switchover()
            await sp.wait_for(
                f"event {event}",
                lambda e=event: sp.handled(e) and sp.pair.state is PairState.PROTECTED,
                300,
            )
            incident = sp.incidents[-1]
            if incident.error:
                raise RuntimeError(f"event {event}: {incident.error}")
            console.log(f"event {event}: failover {incident.failover_ms} ms, protected again")
            serving = await sp.pair.agents[sp.pair.primary.name].call("status")
            events_log.append(
                {
                    "event": event,
                    "at": at,
                    "wall": wall,
                    "comparator_young_before": _young_status(status),
                    "checkpoints_before": status.get("checkpoints"),
                    "comparator_before": _numbers(status),
                    "promotion": (serving.get("translation") or {}).get("promotion"),
                    "record": await _record(sp),
                }
            )
            await asyncio.sleep(args.between)  # new young connections before the next one
        if events:
            await asyncio.sleep(max(0.0, 65.0 - args.between * events))  # the idle's silence
        phases["run"] = (started, time.monotonic())
        serving = await sp.pair.agents[sp.pair.primary.name].call("status")
        pauses = sorted(serving.get("checkpoint_pauses_ms") or [0.0])
        _say(client, "stop")
        out, _ = await asyncio.to_thread(client.communicate, None, args.lifetime + 300)
        summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        await sp.unsupervise()
    finally:
        sampler.stop()
        if capture is not None:
            capture.terminate()
            capture.wait()
        if client is not None and client.poll() is None:
            client.kill()
            client.communicate()
        await sp.close()
    kind = "failovers" if args.failovers else "switchovers"
    return {
        kind: events,
        "comparator": comparator.value,
        "open_every_s": args.open_every,
        "lifetime_s": args.lifetime,
        "write_every": args.write_every,
        "pacing": args.pacing,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        **summary,
        "events": (events := _relative(events_log, summary.get("started_monotonic"))),
        "broken_diagnosis": _diagnose(summary.get("broken_detail") or [], events),
        "cpu": {name: sampler.summary(*span) for name, span in phases.items()},
        "checkpoints": {
            "count": serving.get("checkpoints"),
            "pause_ms_p50": round(pauses[len(pauses) // 2], 1),
            "pause_ms_max": round(pauses[-1], 1),
        },
    }


def _diagnose(broken: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per broken connection: the first event after it opened (where it was young, if it
    was), and the events whose table of record carried its client port."""
    out = []
    for row in broken:
        after = [e["event"] for e in events if e["at"] >= row.get("opened_s", 0.0)]
        held = [e["event"] for e in events if row.get("port") in {r[0] for r in e["record"]}]
        out.append(row | {"first_event_after_open": min(after, default=None), "in_record": held})
    return out


def _relative(events: list[dict[str, Any]], started: float | None) -> list[dict[str, Any]]:
    """Event times in the client's clock (seconds since it started; same monotonic clock)."""
    if started is None:
        return events
    return [e | {"at": round(e["at"] - started, 2)} for e in events]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--failovers", type=int, default=0)
    group.add_argument("--switchovers", type=int, default=0)
    parser.add_argument(
        "--steady", type=float, default=0.0, help="seconds of load before the first event"
    )
    parser.add_argument("--write-every", type=int, default=2, help="every Nth request a PUT")
    parser.add_argument("--pacing", choices=["fixed", "after-answer"], default="fixed")
    parser.add_argument("--prerelease", help="COLO++ pre-release rules (colopp comparator)")
    parser.add_argument("--read-prefix", action="append", default=[], help="e.g. /kv/")
    parser.add_argument("--semiactive", action="store_true", help="semi-active secondary")
    parser.add_argument("--comparator", choices=["builtin", "colopp"], default="colopp")
    parser.add_argument("--open-every", type=float, default=0.1)
    parser.add_argument("--lifetime", type=float, default=30.0)
    parser.add_argument("--between", type=float, default=5.0, help="seconds between events")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--capture", type=Path, help="tcpdump of port 80 in the client netns")
    args = parser.parse_args()
    console = Console(stderr=True)
    result = asyncio.run(run(args, console))
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
