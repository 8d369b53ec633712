"""Run the controller for one pair: ``python -m colopp.controller --record PAIR.json``.

It re-attaches to the pair the record describes (the agents kept it serving while no
controller ran), checks it against the agents, supervises it (automatic failover,
fencing, re-protection) and rewrites the record on every state change. A status file
(0600) says when it attached and what it found. Killing it with SIGKILL and starting it
again leaves the pair serving; the new process re-attaches in well under a second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from colopp.colo.state import Transition
from colopp.controller.agent_client import AgentClient
from colopp.controller.store import attach, load_record, pair_record, save_record
from colopp.controller.supervisor import Incident, PairSupervisor
from colopp.errors import ColoppError
from colopp.files import write_json_atomic

log = logging.getLogger("colopp.controller")


def write_status(path: Path | None, status: dict[str, Any]) -> None:
    """Atomically write the controller's status (0600)."""
    if path is None:
        return
    write_json_atomic(path, status)


async def run(record_path: Path, status_path: Path | None) -> None:
    """Attach, supervise until SIGTERM/SIGINT."""
    started = time.time()
    record = load_record(record_path)
    pair, agents = attach(record)
    addresses = {name: (a.host, a.port) for name, a in agents.items()}
    token_file = Path(record["token_file"])
    token = token_file.read_text().strip()
    status: dict[str, Any] = {"pid": os.getpid(), "started_at": started}

    def persist(step: Transition | None = None) -> None:
        save_record(record_path, pair_record(pair, addresses, token_file))
        status.update(
            state=pair.state.value,
            primary=pair.primary.name,
            secondary=pair.secondary.name if pair.secondary else None,
            updated_at=time.time(),
        )
        if step is not None:
            log.info("pair: %s -> %s %s", step.source, step.target, step.reason)
        write_status(status_path, status)

    def incident(found: Incident) -> None:
        status.setdefault("incidents", []).append(vars(found))
        persist()

    verified = await pair.verify()
    status.update(attached_at=time.time(), consistent=verified["consistent"])
    pair.lifecycle.on_change = persist
    persist()
    log.info("attached to %s pair in %.2fs", pair.state, time.time() - started)
    beat = {n: AgentClient(f"{n}-hb", h, p, token) for n, (h, p) in addresses.items()}
    supervisor = PairSupervisor(pair, beat, on_incident=incident)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.stop)
    # `colopp switchover` asks the running controller by SIGUSR1.
    loop.add_signal_handler(signal.SIGUSR1, supervisor.request_switchover)
    try:
        await supervisor.run()
    finally:
        await supervisor.close()
        for agent in agents.values():
            await agent.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m colopp.controller", description=__doc__)
    parser.add_argument("--record", type=Path, required=True, help="the pair record (JSON)")
    parser.add_argument("--status", type=Path, help="write the controller's status here")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s controller %(message)s")
    try:
        asyncio.run(run(args.record, args.status))
    except ColoppError as exc:
        print(f"colopp controller: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
