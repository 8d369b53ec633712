"""A side in fleet mode for tests: the agent's :class:`ServingRight` over a stand-in QEMU
(``sleep``), in whatever network namespace it runs. Prints JSON event lines with the
monotonic time: ``acquired`` (token, pid), then ``stopped`` (the stand-in is SIGSTOPped)
and ``killed`` (it was reaped)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from colopp.agent.serving import ServingRight
from colopp.arbiter.right import FenceAction
from colopp.errors import ArbiterError
from colopp.qemu.qemu_process import QemuProcess


def say(event: str, **extra: object) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **extra}) + "\n")
    sys.stdout.flush()


@dataclass
class StandIn:
    process: QemuProcess
    comparator: None = None


async def run(endpoint: str, key: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process = QemuProcess(["sleep", "600"], {}, Path(tmp))
        await process.start()
        side = StandIn(process)
        right = ServingRight(lambda: side)
        original = right.fence

        async def fence(action: FenceAction) -> None:
            await original(action)
            say("stopped" if action is FenceAction.STOP_OUTPUT else "killed", alive=process.alive())

        right.fence = fence  # type: ignore[method-assign]
        say("started")
        try:
            while True:
                try:
                    held = await right.hold_right([endpoint], key)
                    break
                except ArbiterError:
                    await asyncio.sleep(0.1)
            say("acquired", token=held["token"], pid=process.pid)
            assert right.keeper is not None
            await right.keeper.done.wait()
            say("fenced", **(await right.right_status()))
        finally:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    asyncio.run(run(args.endpoint, args.key))


if __name__ == "__main__":
    main()
