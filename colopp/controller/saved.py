"""The pair file: what a foreground ``colopp protect`` leaves for ``status``/``failover``.

It names the agents (address, port), the token file and the roles; it is written 0600.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from colopp.agent.protocol import DEFAULT_PORT
from colopp.controller.agent_client import AgentClient
from colopp.controller.local import write_secret
from colopp.controller.pair import PairController
from colopp.controller.setup import prepare_local_pair
from colopp.errors import ConfigError, StateError
from colopp.lab import Network, Node
from colopp.qemu.argv import ComparatorKind


def save_pair(path: Path, data: dict[str, Any]) -> None:
    """Write the pair file (0600)."""
    write_secret(path, json.dumps(data, indent=2))


def load_agents(path: Path) -> tuple[dict[str, Any], dict[str, AgentClient]]:
    """Read the pair file and build agent clients.

    Raises:
        ConfigError: no pair file (nothing is protected from this state directory).
    """
    try:
        saved = json.loads(path.read_text())
        token = Path(saved["token_file"]).read_text().strip()
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"no protected pair recorded in {path}: {exc}") from exc
    agents = {
        name: AgentClient(name, where["address"], int(where["port"]), token)
        for name, where in saved["agents"].items()
    }
    return saved, agents


async def manual_failover(path: Path, force: bool = False) -> dict[str, Any]:
    """Promote the recorded secondary; refuses while the primary still runs unless forced.

    Raises:
        StateError: no secondary, or the primary still serves (without ``force``).
    """
    saved, agents = load_agents(path)
    primary, secondary = str(saved.get("primary")), saved.get("secondary")
    if secondary is None:
        raise StateError("the pair has no secondary: it already failed over")
    if not force:
        try:
            beat = await agents[primary].call("ping", timeout=3)
            alive = bool(beat.get("vm_alive"))
        except Exception:  # an unreachable primary host counts as gone
            alive = False
        if alive:
            raise StateError(
                f"the primary on {primary} still runs; use --force to fail over anyway"
            )
    result: dict[str, Any] = await agents[str(secondary)].call("failover")
    saved.update(primary=secondary, secondary=None, state="failed_over")
    save_pair(path, saved)
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
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await deployment.start()
        pair = PairController(local.config, deployment.agents, progress=console.log)
        await pair.protect()
        agents = {
            node.value: {
                "address": str(deployment.plan.address(node, Network.MANAGEMENT)),
                "port": DEFAULT_PORT,
            }
            for node in (Node.HOST_A, Node.HOST_B)
        }
        save_pair(
            state_dir / "pair.json",
            {
                "agents": agents,
                "token_file": str(state_dir / "agent.token"),
                "primary": Node.HOST_A.value,
                "secondary": Node.HOST_B.value,
                "state": "protected",
                "service": f"{deployment.plan.guest_address.ip}:80",
                "client_netns": deployment.plan.netns(Node.CLIENT),
            },
        )
        console.log(
            f"protected; service {deployment.plan.guest_address.ip}:80 from netns "
            f"{deployment.plan.netns(Node.CLIENT)}; Ctrl-C stops"
        )
        await stop.wait()
    finally:
        if pair is not None:
            await pair.stop()
        await deployment.stop()
        (state_dir / "pair.json").unlink(missing_ok=True)
