"""Bare arbitration processes for tests and demos; one JSON line per event on stdout.

``python -m colopp.arbiter hold --endpoint URL --key K --name N``: take the right to serve
``K`` (waiting while another holder has it), keep it, and report fencing (``stop-output``,
``kill-qemu``, ``fenced``) with the monotonic time of each (CLOCK_MONOTONIC is one clock for
every network namespace of a machine, so a test compares two holders' times).

``python -m colopp.arbiter elect --endpoint URL --name N``: a controller replica's election.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time

from colopp.arbiter.election import LeaderElection
from colopp.arbiter.etcd import EtcdGateway
from colopp.arbiter.keeper import RightKeeper
from colopp.arbiter.right import FenceAction
from colopp.arbiter.timing import LeaseTiming
from colopp.clock import SystemClock
from colopp.errors import ArbiterError


def say(event: str, **extra: object) -> None:
    """One event line, stamped with the monotonic clock."""
    line = {"event": event, "t": time.monotonic(), **extra}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def hold(gateway: EtcdGateway, key: str, name: str, timing: LeaseTiming) -> None:
    """Take ``key`` once it is free, keep it until fenced."""

    async def fence(action: FenceAction) -> None:
        say(action.value, name=name)

    while True:
        keeper = RightKeeper(gateway, key, name, timing, SystemClock(), fence)
        try:
            token = await keeper.acquire()
        except ArbiterError:
            await asyncio.sleep(0.1)
            continue
        say("acquired", name=name, token=token)
        await keeper.done.wait()
        say("fenced", name=name, token=token, reason=keeper.right.reason)
        return


async def elect(gateway: EtcdGateway, name: str, timing: LeaseTiming) -> None:
    """Campaign forever, reporting each term."""

    async def lead(token: int) -> None:
        say("elected", name=name, token=token)
        try:
            await asyncio.Event().wait()
        finally:
            say("deposed", name=name, token=token)

    await LeaderElection(gateway, name, lead, timing).run()


async def _run(args: argparse.Namespace) -> None:
    timing = LeaseTiming(ttl=args.ttl)
    gateway = EtcdGateway(args.endpoint, timeout=timing.request_timeout)
    say("started", name=args.name)
    try:
        if args.verb == "hold":
            await hold(gateway, args.key, args.name, timing)
        else:
            await elect(gateway, args.name, timing)
    finally:
        await gateway.aclose()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run until done (hold) or killed (elect)."""
    parser = argparse.ArgumentParser(prog="python -m colopp.arbiter")
    parser.add_argument("verb", choices=["hold", "elect"])
    parser.add_argument("--endpoint", action="append", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--key", default="colopp/protection/demo")
    parser.add_argument("--ttl", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
