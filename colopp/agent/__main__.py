"""Run one host agent: ``python -m colopp.agent --host hosta --listen 198.18.2.10:7400 ...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from colopp.agent.allocator import Allocator
from colopp.agent.host import RPC_METHODS, HostAgent
from colopp.agent.protections import ProtectionRouter
from colopp.agent.restart import RESTART_GRACE, exit_for_restart, readopt_protections
from colopp.agent.server import AgentServer, raise_open_files_limit
from colopp.agent.serving import RIGHT_METHODS, SERVE_METHODS, ServingRight
from colopp.agent.state_file import PersistentTokenGate
from colopp.errors import ColoppError, ConfigError
from colopp.qemu.runtime import runtime_from
from colopp.tls import server_context, tls_files

log = logging.getLogger("colopp.agent")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="colopp-agent", description=__doc__)
    parser.add_argument("--host", required=True, help="this host's name")
    parser.add_argument(
        "--listen",
        required=True,
        action="append",
        help="IP:PORT to serve on (repeat: management, and replication for peer probes)",
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--token-file", type=Path, required=True, help="0600 file with the token")
    parser.add_argument("--qemu-root", type=Path, default=None)
    parser.add_argument("--qemu-binary", default=None)
    parser.add_argument(
        "--libvirt-uri",
        default=None,
        help="libvirtd of this host for protections with backend libvirt "
        "(default: $COLOPP_LIBVIRT_URI or qemu:///system)",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=1.0,
        help="seconds without controller and peer before a primary fences itself",
    )
    parser.add_argument(
        "--restart-grace",
        type=float,
        default=RESTART_GRACE,
        help="on SIGTERM the agent exits leaving its VM running, and tells the controller "
        "to wait this many seconds for the next agent before failing over",
    )
    parser.add_argument("--tls-cert", type=Path, default=None, help="this agent's certificate")
    parser.add_argument("--tls-key", type=Path, default=None, help="its private key (0600)")
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        help="CA whose client certificates are accepted (with --tls-cert/--tls-key: mutual "
        "TLS only; without all three: plain TCP, for the local lab)",
    )
    return parser.parse_args(argv)


def read_token(path: Path) -> str:
    """Read a token file, refusing one that others can read.

    Raises:
        ConfigError: missing, empty, or group/world accessible.
    """
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"token file {path} must be mode 0600 (is {mode & 0o777:o})")
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM/SIGINT or the ``shutdown`` method."""
    addresses = []
    for listen in args.listen:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--listen {listen!r} must be IP:PORT")
        addresses.append((host, int(port)))
    args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime = runtime_from(args.qemu_root, args.qemu_binary)

    rights: dict[HostAgent, ServingRight] = {}

    def make_agent(state_dir: Path) -> HostAgent:
        made = HostAgent(args.host, state_dir, runtime, args.lease)
        made.agent_port = addresses[0][1]
        if args.libvirt_uri:
            made.libvirt_uri = args.libvirt_uri
        rights[made] = ServingRight(lambda: made.side)  # fleet mode only (hold_right)
        return made

    def methods_of(side: HostAgent) -> dict[str, Any]:
        own = {name: getattr(side, name) for name in RPC_METHODS}
        # A command to serve that carries a fencing token needs this side's right.
        own |= {name: rights[side].guard(own[name]) for name in SERVE_METHODS}
        return own | {name: getattr(rights[side], name) for name in RIGHT_METHODS}

    agent = make_agent(args.state_dir)
    # Fleet mode: calls naming a protection go to that protection's own side.
    router = ProtectionRouter(agent, make_agent, methods_of, Allocator(args.state_dir))  # type: ignore[arg-type]
    done = asyncio.Event()

    async def shutdown() -> dict[str, bool]:
        await agent.stop_vm()
        await router.stop_all()
        done.set()
        return {"shutdown": True}

    methods = router.methods(RPC_METHODS + RIGHT_METHODS)
    methods["shutdown"] = shutdown
    files = tls_files(args.tls_cert, args.tls_key, args.tls_ca)
    tls = server_context(files) if files is not None else None
    gate = PersistentTokenGate(args.state_dir)
    server = AgentServer(read_token(args.token_file), methods, fencing=gate)
    # Before listening: a heartbeat answered before re-adoption would report no VM.
    await agent.readopt()
    await readopt_protections(router)  # fleet mode: each protection's own side
    for host, port in addresses:
        await server.start(host, port, tls)
    loop = asyncio.get_running_loop()
    restart = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, restart.set)
    print(f"colopp agent {args.host} listening on {', '.join(args.listen)}", flush=True)
    if tls is None:
        log.warning(
            "plain TCP on %s: the token crosses the network in clear text; "
            "for a local lab only (give --tls-cert/--tls-key/--tls-ca)",
            ", ".join(args.listen),
        )
    else:
        log.info("mutual TLS: client certificates from %s required", files.ca if files else "")
    stopped = asyncio.create_task(done.wait())
    await asyncio.wait(
        [stopped, asyncio.create_task(restart.wait())], return_when="FIRST_COMPLETED"
    )
    if stopped.done():  # the shutdown method: the VM was stopped on purpose
        await server.close()
        return
    others = [side for side in router.sides.values() if isinstance(side, HostAgent)]
    await exit_for_restart(agent, server, args.restart_grace, others)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    os.umask(0o077)  # QMP and chardev sockets, logs and disks: owner only
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(message)s")
    # Every connection, QEMU's sockets and the comparator's take descriptors: the default
    # soft limit of 1024 is far below what the unit grants (LimitNOFILE).
    raise_open_files_limit()
    try:
        asyncio.run(serve(_parse(argv if argv is not None else sys.argv[1:])))
    except ColoppError as exc:
        print(f"colopp agent: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
