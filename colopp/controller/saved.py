"""The CLI's view of a pair on this machine: ``colopp protect`` writes the pair record
(``STATE_DIR/pair.json``, see :mod:`colopp.controller.store`) that ``status``,
``failover``, ``controller`` and ``switchover`` then use."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from colopp.clock import SystemClock
from colopp.colo.state import PairState
from colopp.controller.agent_client import AgentClient
from colopp.controller.pair import PairController
from colopp.controller.seam import fence
from colopp.controller.setup import prepare_local_pair
from colopp.controller.store import attach, load_record, pair_record, save_record
from colopp.domain import ComparatorKind, Role
from colopp.errors import StateError
from colopp.lab import Node


def load_agents(path: Path) -> tuple[dict[str, Any], dict[str, AgentClient]]:
    """Read the pair record and build agent clients.

    Raises:
        ConfigError: no record (nothing is protected from this state directory).
    """
    record = load_record(path)
    _, agents = attach(record)
    return record, agents


async def manual_failover(path: Path, force: bool = False) -> dict[str, Any]:
    """Promote the recorded secondary; refuses while the primary still runs unless forced.

    Raises:
        StateError: the pair is not protected, or the primary still serves (no ``force``).
    """
    record = load_record(path)
    pair, agents = attach(record)
    if pair.state is not PairState.PROTECTED or pair.secondary is None:
        raise StateError(f"the pair is {pair.state}: nothing to fail over to")
    if not force:
        try:
            alive = bool((await agents[pair.primary.name].call("ping", timeout=3))["vm_alive"])
        except Exception:  # an unreachable primary host counts as gone
            alive = False
        if alive:
            raise StateError(
                f"the primary on {pair.primary.name} still runs; use --force to fail over anyway"
            )
    else:
        await fence(agents[pair.primary.name], SystemClock(), timeout=10.0)
    result = await pair.failover(Role.PRIMARY)
    addresses = {name: (a.host, a.port) for name, a in agents.items()}
    save_record(path, pair_record(pair, addresses, Path(record["token_file"])))
    return result


async def protect_local(
    state_dir: Path, comparator: ComparatorKind, qemu_root: Path | None, console: Console
) -> None:
    """Protect the demo VM on the lab and hold it until SIGINT/SIGTERM, then tear down."""
    local = await prepare_local_pair(state_dir, qemu_root, comparator, console)
    deployment = local.deployment
    pair: PairController | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        console.log(f"{sig.name}: stopping the pair")
        stop.set()

    record = state_dir / "pair.json"
    try:
        await deployment.start()
        pair = PairController(local.config, deployment.agents, progress=console.log)
        await pair.protect()
        addresses = {name: (a.host, a.port) for name, a in deployment.agents.items()}
        save_record(record, pair_record(pair, addresses, state_dir / "agent.token"))
        # Only now: pyroute2's forked helpers (used while the lab is built) inherit
        # asyncio's signal wake-up socket, and their exits would read as our SIGTERM.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        console.log(
            f"protected; service {deployment.plan.guest_address.ip}:80 from netns "
            f"{deployment.plan.netns(Node.CLIENT)}; record {record}. Supervise it with "
            f"`colopp controller --record {record} --status {state_dir / 'controller.json'}`;"
            " Ctrl-C here stops the pair"
        )
        await stop.wait()
    finally:
        if pair is not None:
            await pair.stop()
        await deployment.stop()
        record.unlink(missing_ok=True)
