"""bench.fleet's etcd partition, judged by a client that sees answers from both sides.

Three host namespaces, an etcd member in each, and a second network (the service network,
:func:`colopp.arbiter.cluster.add_service_net`) with a client namespace on it. Two sides of
one protection, in hosts 1 and 2, each run the agent's own right to serve
(:class:`colopp.agent.serving.ServingRight`: take the key at etcd, renew it, fence by
SIGSTOP then SIGKILL of the side's process) over a stand-in for the VM: a small HTTP service
that answers its side's name, started only once its side holds the right. Side ``a`` holds
it first. The client asks both sides' service addresses over and over (one thread each, a
new connection per request, short timeouts) and records every answer with its arrival time
(CLOCK_MONOTONIC, one clock for every namespace of the machine).

Then host 1 is cut off from the etcd network only: its member loses the majority, so side
``a`` cannot renew and must fence itself before its lease expires, while the client (and
side ``b``) still reach it over the service network. ``b`` takes the right once the lease
expired and starts serving. ``dual_primary_observed`` is true when the client received any
answer from ``a`` at or after the first answer from ``b``.

Scope: the sides' stand-in services are not COLO VMs; the right to serve and its fencing are
the agent's (``hold_right``), and the verdict is the client's.

``python -m bench.fleet_partition side|serve|client ...`` are the lab's processes.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import http.server
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from colopp.arbiter.cluster import (
    CLIENT_INDEX,
    SERVICE_SUBNET,
    SUBNET,
    EtcdCluster,
    Events,
    Member,
    add_service_net,
    cut,
    delete_netns_lab,
    make_netns_lab,
)

HOSTS = ["f21h1", "f21h2", "f21h3"]
CLIENT = "f21cl"
PORT = 8080
MODULE = "bench.fleet_partition"


def say(event: str, **extra: object) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **extra}) + "\n")
    sys.stdout.flush()


# -- the stand-in VM: answers its side's name ------------------------------------------------
def serve(name: str, listen: str, port: int) -> None:
    body = name.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    http.server.ThreadingHTTPServer((listen, port), Handler).serve_forever()


# -- a side: the agent's right to serve over the stand-in ------------------------------------
class _StandIn:
    def __init__(self, process: Any) -> None:
        self.process = process
        self.comparator = None


async def side(endpoint: str, key: str, name: str, listen: str, ttl: int) -> None:
    from colopp.agent.serving import ServingRight
    from colopp.arbiter.right import FenceAction
    from colopp.errors import ArbiterError
    from colopp.qemu.qemu_process import QemuProcess

    held: list[_StandIn] = []
    right = ServingRight(lambda: held[0] if held else None)
    original = right.fence

    async def fence(action: FenceAction) -> None:
        await original(action)
        say(action.value, name=name)

    right.fence = fence  # type: ignore[method-assign]
    say("started", name=name)
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            try:
                got = await right.hold_right([endpoint], key, ttl)
                break
            except ArbiterError:
                await asyncio.sleep(0.1)
        argv = [sys.executable, "-m", MODULE, "serve", "--name", name, "--listen", listen]
        process = QemuProcess(argv, {}, Path(tmp), probe=True)  # dies with this side
        await process.start()
        held.append(_StandIn(process))
        say("acquired", name=name, token=got["token"])
        try:
            assert right.keeper is not None
            await right.keeper.done.wait()
            say("fenced", name=name, **(await right.right_status()))
        finally:
            process.kill()


# -- the client of both sides ------------------------------------------------------------------
def ask(target: str, answers: list[tuple[float, str]], stop: threading.Event) -> None:
    while not stop.is_set():
        conn = http.client.HTTPConnection(target, PORT, timeout=0.3)
        try:
            conn.request("GET", "/")
            body = conn.getresponse().read().decode(errors="replace")
            answers.append((time.monotonic(), body))
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        stop.wait(0.02)


def client(targets: Sequence[str], duration: float) -> None:
    answers: list[tuple[float, str]] = []  # list.append is atomic
    stop = threading.Event()
    threads = [threading.Thread(target=ask, args=(t, answers, stop)) for t in targets]
    for thread in threads:
        thread.start()
    seen: set[str] = set()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        for _, who in list(answers):
            if who not in seen:
                seen.add(who)
                say("answered", who=who)
        stop.wait(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    say("answers", answers=sorted(answers))


# -- the verdict (pure) ------------------------------------------------------------------------
def verdict(
    answers: Sequence[Sequence[Any]], cut_at: float, isolated: str, other: str
) -> dict[str, Any]:
    """What the client saw: dual when ``isolated`` answered at or after ``other``'s first."""
    from_isolated = [float(t) for t, who in answers if who == isolated]
    from_other = [float(t) for t, who in answers if who == other]
    first_other = min(from_other) if from_other else None
    last_isolated = max(from_isolated) if from_isolated else None
    late = [t for t in from_isolated if first_other is not None and t >= first_other]
    return {
        "dual_primary_observed": bool(late),
        "answers_isolated_before_cut": sum(t < cut_at for t in from_isolated),
        "answers_isolated_after_cut": sum(t >= cut_at for t in from_isolated),
        "answers_other": len(from_other),
        "answers_isolated_after_other_served": len(late),
        "cut_to_last_isolated_answer_s": None
        if last_isolated is None
        else round(last_isolated - cut_at, 3),
        "cut_to_first_other_answer_s": None
        if first_other is None
        else round(first_other - cut_at, 3),
    }


def etcd_partition(ttl: int, duration: float = 25.0) -> dict[str, Any]:
    """Run the partition (see the module); root only."""
    if os.geteuid() != 0:
        return {"dual_primary_observed": None, "skipped": "needs root (network namespaces)"}
    make_netns_lab(HOSTS)
    procs: list[Events] = []
    try:
        add_service_net(HOSTS, CLIENT)
        with tempfile.TemporaryDirectory() as tmp:
            members = [
                Member(f"m{i}", f"{SUBNET}.{i}", 2379, 2380, ns) for i, ns in enumerate(HOSTS, 1)
            ]
            cluster = EtcdCluster(members, Path(tmp))
            try:
                cluster.start()
                return _partition(members, ttl, duration, procs)
            finally:
                for proc in procs:
                    proc.kill()
                cluster.stop()
    finally:
        delete_netns_lab([*HOSTS, CLIENT])


def _partition(
    members: list[Member], ttl: int, duration: float, procs: list[Events]
) -> dict[str, Any]:
    key = ["--key", "colopp/protection/bench", "--ttl", str(ttl)]

    def start_side(i: int, name: str) -> Events:
        listen = f"{SERVICE_SUBNET}.{i + 1}"
        argv = ["side", "--endpoint", members[i].client_url, "--name", name, "--listen", listen]
        made = Events([*argv, *key], HOSTS[i], module=MODULE)
        procs.append(made)
        return made

    a = start_side(0, "a")
    a.wait_for("acquired", timeout=60)
    b = start_side(1, "b")
    b.wait_for("started", timeout=30)
    targets = [f"{SERVICE_SUBNET}.1", f"{SERVICE_SUBNET}.2"]
    watcher = Events(["client", "--duration", str(duration), *targets], CLIENT, module=MODULE)
    procs.append(watcher)
    watcher.wait_for("answered", timeout=30)  # from a, the only side serving yet
    cut_at = time.monotonic()
    cut(1)  # host 1 off the etcd network; still on the service network
    stop = a.wait_for("stop-output", timeout=30)
    kill = a.wait_for("kill-qemu", timeout=30)
    got_b = b.wait_for("acquired", timeout=60)
    seen = watcher.wait_for("answers", timeout=duration + 30)["answers"]
    return {
        **verdict(seen, cut_at, "a", "b"),
        "cut_to_stop_output_s": round(stop["t"] - cut_at, 3),
        "cut_to_kill_s": round(kill["t"] - cut_at, 3),
        "cut_to_other_acquired_s": round(got_b["t"] - cut_at, 3),
        "ttl_s": ttl,
        "client_at": f"{SERVICE_SUBNET}.{CLIENT_INDEX}",
        "scope": "a client in its own namespace asks both sides' service addresses; the"
        " sides run the agent's right to serve (etcd lease, SIGSTOP then SIGKILL) over a"
        " stand-in HTTP service, not COLO VMs; host 1 is cut from the etcd network only",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("side")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--listen", required=True)
    s.add_argument("--ttl", type=int, default=3)
    v = verbs.add_parser("serve")
    v.add_argument("--name", required=True)
    v.add_argument("--listen", required=True)
    c = verbs.add_parser("client")
    c.add_argument("--duration", type=float, default=25.0)
    c.add_argument("targets", nargs="+")
    p = verbs.add_parser("run")
    p.add_argument("--ttl", type=int, default=3)
    args = parser.parse_args(argv)
    if args.verb == "side":
        asyncio.run(side(args.endpoint, args.key, args.name, args.listen, args.ttl))
    elif args.verb == "serve":
        serve(args.name, args.listen, PORT)
    elif args.verb == "client":
        client(args.targets, args.duration)
    else:
        print(json.dumps(etcd_partition(args.ttl), indent=2))


if __name__ == "__main__":
    main()
