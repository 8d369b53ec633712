"""``python -m colopp.compare``: run the comparator process.

Example (the primary host; QEMU's chardevs compare0 and compare_out are servers)::

    python -m colopp.compare \\
        --primary-in unix:/run/colopp/compare0.sock \\
        --outdev unix:/run/colopp/compare_out.sock \\
        --secondary-in listen:tcp:198.18.0.10:9004 \\
        --qmp /run/colopp/primary-compare.qmp --status /run/colopp/compare.json

COLO++ pre-release (off by default; see :mod:`colopp.compare.prerelease` for when it is
safe): ``--prerelease`` alone enables the ``retransmission`` and ``ack_only`` rules, plus
``http_read`` when a ``--prerelease-read-prefix`` is given; ``--prerelease RULE,RULE`` names
them (``all`` for every rule). ``--prerelease-read-prefix /kv/`` (repeatable) and
``--prerelease-read-method GET`` (repeatable; default GET and HEAD) say which requests are
reads. ``--prerelease-resp-port 6379`` (repeatable) adds ``resp_read``: Redis commands to
those guest ports are classified too. ``--prerelease-scope key`` lets a write disarm only the
reads of its own resource (see :mod:`colopp.compare.prerelease` for the operator's promise);
the default ``global`` disarms every read. The read rules need the client's frames:
``--client-in unix:PATH`` names the primary QEMU's chardev server that a filter-mirror
(queue=tx) copies the guest's input to; without it the read rules grant nothing.

Address syntax: ``[listen:]unix:PATH`` or ``[listen:]tcp:HOST:PORT``. Without ``--qmp``
checkpoint requests are only counted (``checkpoints_requested`` in the status file) and
SIGUSR1 tells the comparator that a checkpoint finished.
``--mirror-from unix:PATH --mirror-to listen:tcp:HOST:PORT`` starts the mirror child
(``python -m colopp.mirror``, :mod:`colopp.compare.mirror_child`): QEMU's ``mirror0`` to the
secondary host in batches; it dies with the comparator, and a crash of it ends the
comparator (SIGTERM to itself) so that its restart forces a checkpoint.
Exit codes: 0 on SIGTERM/SIGINT,
2 on bad arguments or unreachable sockets, 3 when primary_in or outdev closed, 4 when the
QMP monitor was lost (it can no longer checkpoint: it releases nothing from then on and exits
2 s later unless SIGTERM or a lost path ends it first; the agent restarts it, which forces a
checkpoint). Every exit writes the status file a last time and removes listen sockets.

Environment: ``COLOPP_COMPARE_LOOP=asyncio|uvloop`` picks the event loop (asyncio by default;
uvloop must be installed; anything else exits 2), ``COLOPP_COMPARE_PROFILE=PREFIX`` runs
under a CPU-clock cProfile and dumps ``PREFIX.<pid>`` at exit,
``COLOPP_DATAPATH_SCHED=batch|normal`` its CPU scheduling policy (``batch`` by default, see
:mod:`colopp.datapath_sched`; anything else exits 2).

Status file (``--status``, JSON, mode 0600, replaced atomically every ``--status-interval``
and at exit): the core's counters at top level (``primary_frames_in``,
``secondary_frames_in``, ``released_frames``, ``matched_frames``, ``passthrough_frames``,
``passthrough_by_ethertype`` (frames released uncompared, by EtherType),
``passthrough_ipv6_control`` (IPv6 neighbour discovery and MLD),
``flushed_frames``, ``held_frames``, ``held_bytes``, ``held_secondary_frames``,
``malformed`` by reason, ``divergences`` by reason, ``checkpoints_requested``,
``checkpoints_done``, ``hold_time_buckets`` / ``hold_time_counts``, ``awaiting_checkpoint``,
``tcp_connections``, ...), socket counters under ``shell`` (``shell.qmp``: the QMP monitor
is connected now), then ``pid`` and ``updated_at``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from colopp.compare.addresses import parse_endpoint
from colopp.compare.config import (
    DEFAULT_COMPARE_TIMEOUT_S,
    DEFAULT_LAG_BUDGET_MS,
    DEFAULT_READ_METHODS,
    DEFAULT_RESP_PORTS,
    PRE_RELEASE_RULES,
    PRE_RELEASE_SCOPES,
    CompareConfig,
    PreReleaseConfig,
)
from colopp.compare.mirror_child import MirrorChild, mirror_argv
from colopp.compare.shell import ComparatorShell, ShellOptions
from colopp.datapath_sched import apply_policy
from colopp.errors import ColoppError, ConfigError

_DEFAULTS = CompareConfig()


#: Set to a path prefix: the comparator runs under cProfile and dumps ``PREFIX.<pid>`` at exit.
PROFILE_ENV = "COLOPP_COMPARE_PROFILE"
#: ``asyncio`` (the default) or ``uvloop`` (when installed): the comparator's event loop.
#: Session 12's A/B on the bulk bench: uvloop cut the comparator's CPU by 2-15% and left
#: throughput unchanged, so it stays opt-in and uvloop is not a dependency.
LOOP_ENV = "COLOPP_COMPARE_LOOP"


def loop_runner(choice: str | None = None) -> Callable[[Coroutine[Any, Any, int]], int]:
    """The runner for ``choice`` (default: ``$COLOPP_COMPARE_LOOP``, else asyncio)."""
    choice = os.environ.get(LOOP_ENV, "asyncio") if choice is None else choice
    if choice not in ("asyncio", "uvloop"):
        raise ConfigError(f"{LOOP_ENV}={choice!r} must be asyncio or uvloop")
    if choice == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError as exc:
            raise ConfigError(f"{LOOP_ENV}=uvloop but uvloop is not installed") from exc
        runner: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
        return runner
    return asyncio.run


def build_parser() -> argparse.ArgumentParser:
    """The comparator's command line."""
    p = argparse.ArgumentParser(prog="python -m colopp.compare", description=__doc__.split("\n")[0])
    p.add_argument("--primary-in", required=True, help="primary guest output (QEMU server)")
    p.add_argument("--young-to", help="HOST:PORT: send young TCP offsets there (colopp.rewrite)")
    p.add_argument("--secondary-in", required=True, help="secondary output, e.g. listen:tcp:H:P")
    p.add_argument("--outdev", required=True, help="where released frames go (QEMU server)")
    p.add_argument("--client-in", help="copy of the guest's input (QEMU server; read rule)")
    p.add_argument("--vnet-hdr", action="store_true", help="frames carry a vnet header length")
    p.add_argument("--qmp", help="the comparator's own QMP unix socket on the primary QEMU")
    p.add_argument("--qmp-timeout", type=float, default=5.0, help="seconds per QMP call")
    p.add_argument("--checkpoint-delay", type=int, help="x-checkpoint-delay ms to re-set")
    p.add_argument("--status", type=Path, help="JSON status file, rewritten every interval")
    p.add_argument("--status-interval", type=float, default=0.5)
    p.add_argument("--compare-timeout", type=float, default=DEFAULT_COMPARE_TIMEOUT_S)
    p.add_argument(
        "--max-lag-ms",
        type=int,
        help="checkpoint when a primary frame waits this long for a lagging secondary",
    )
    p.add_argument(
        "--max-lag-early-ms",
        type=int,
        help="frames that left early (pre-release) may wait this long instead of --max-lag-ms",
    )
    p.add_argument(
        "--ack-wait-ms",
        type=int,
        default=None if _DEFAULTS.ack_wait is None else round(_DEFAULTS.ack_wait * 1000),
        help="checkpoint when the guest's ACK waits this long for the secondary's (0: never)",
    )
    p.add_argument(
        "--host-receipts",
        action="store_true",
        help="take the secondary host's receipts on secondary_in (early ACKs; issue 22)",
    )
    p.add_argument("--max-queue-frames", type=int, default=_DEFAULTS.max_queue_frames)
    p.add_argument("--max-queue-bytes", type=int, default=_DEFAULTS.max_queue_bytes)
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument(
        "--prerelease",
        nargs="?",
        const="auto",
        metavar="RULES",
        help=f"pre-release rules, comma-separated: {', '.join(PRE_RELEASE_RULES)} or all",
    )
    p.add_argument(
        "--prerelease-read-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="path prefix whose read requests may be answered early (repeatable)",
    )
    p.add_argument(
        "--prerelease-read-method",
        action="append",
        default=[],
        metavar="METHOD",
        help="read request method (repeatable; default GET and HEAD)",
    )
    p.add_argument(
        "--prerelease-rearm-ms",
        type=int,
        metavar="MS",
        help="after a write disarmed the read rule, checkpoint MS later to re-arm it",
    )
    p.add_argument(
        "--prerelease-scope",
        choices=PRE_RELEASE_SCOPES,
        help="what a write disarms: every read (global, the default) or its resource's (key)",
    )
    p.add_argument(
        "--prerelease-resp-port",
        action="append",
        default=[],
        type=int,
        metavar="PORT",
        help="guest TCP port speaking Redis RESP whose reads may be answered early (repeatable)",
    )
    p.add_argument(
        "--prerelease-lag-budget-ms",
        type=int,
        metavar="MS",
        help="pause pre-release while the secondary lags more than MS (default: never; "
        f"e.g. {DEFAULT_LAG_BUDGET_MS})",
    )
    p.add_argument(
        "--prerelease-ack-lowering",
        action="store_true",
        help="let an early answer leave before the secondary acknowledged its request, with "
        "its ACK lowered (off by default: see colopp.compare.ack_lower for the failover risk)",
    )
    p.add_argument(
        "--mirror-from",
        help="QEMU's mirror0 (unix:PATH): a child (python -m colopp.mirror) sends it on",
    )
    p.add_argument("--mirror-to", help="where the secondary host takes it: listen:tcp:H:P")
    p.add_argument("--mirror-status", type=Path, help="the mirror child's status file")
    p.add_argument(
        "--mirror-allow", action="append", default=[], help="the only host the mirror serves"
    )
    p.add_argument("--log-level", default="INFO")
    return p


def prerelease_from_args(args: argparse.Namespace) -> PreReleaseConfig:
    """The pre-release settings of parsed arguments. Raises ConfigError on bad ones."""
    prefixes = tuple(args.prerelease_read_prefix)
    methods = tuple(m.upper() for m in args.prerelease_read_method) or DEFAULT_READ_METHODS
    if args.prerelease is None:
        extra = args.prerelease_scope is not None or args.prerelease_resp_port
        if prefixes or args.prerelease_read_method or args.prerelease_rearm_ms is not None:
            raise ConfigError("--prerelease-read-* given without --prerelease")
        if extra or args.prerelease_ack_lowering or args.prerelease_lag_budget_ms is not None:
            raise ConfigError(
                "--prerelease-scope/--prerelease-resp-port/--prerelease-ack-lowering/"
                "--prerelease-lag-budget-ms without --prerelease"
            )
        return PreReleaseConfig()
    resp_ports = tuple(args.prerelease_resp_port) or DEFAULT_RESP_PORTS
    if args.prerelease == "auto":
        rules = {"retransmission", "ack_only"} | ({"http_read"} if prefixes else set())
        rules |= {"resp_read"} if args.prerelease_resp_port else set()
    elif args.prerelease == "all":
        rules = set(PRE_RELEASE_RULES)
    else:
        rules = {r.strip() for r in args.prerelease.split(",") if r.strip()}
        if not rules:
            raise ConfigError("--prerelease needs at least one rule")
    return PreReleaseConfig(
        frozenset(rules),
        prefixes,
        methods,
        args.prerelease_rearm_ms,
        scope=args.prerelease_scope or "global",
        resp_ports=resp_ports,
        lower_acks=args.prerelease_ack_lowering,
        lag_budget_ms=args.prerelease_lag_budget_ms,
    )


def options_from_args(argv: list[str]) -> ShellOptions:
    """Parse ``argv`` into ShellOptions. Raises ConfigError on a bad address or limit."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config = CompareConfig(
        compare_timeout=args.compare_timeout,
        checkpoint_retry=args.compare_timeout,
        max_lag=None if args.max_lag_ms is None else args.max_lag_ms / 1000.0,
        max_lag_early=None if args.max_lag_early_ms is None else args.max_lag_early_ms / 1000.0,
        ack_wait=args.ack_wait_ms / 1000.0 if args.ack_wait_ms else None,
        max_queue_frames=args.max_queue_frames,
        max_queue_bytes=args.max_queue_bytes,
    )
    prerelease = prerelease_from_args(args)
    return ShellOptions(
        primary_in=parse_endpoint(args.primary_in),
        secondary_in=parse_endpoint(args.secondary_in),
        outdev=parse_endpoint(args.outdev),
        client_in=parse_endpoint(args.client_in) if args.client_in else None,
        vnet_hdr=args.vnet_hdr,
        qmp=args.qmp,
        qmp_timeout=args.qmp_timeout,
        checkpoint_delay_ms=args.checkpoint_delay,
        status=args.status,
        status_interval=args.status_interval,
        connect_timeout=args.connect_timeout,
        config=config,
        prerelease=prerelease,
        young_to=_host_port(args.young_to) if args.young_to else None,
        host_receipts=args.host_receipts,
    )


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--young-to {text!r} must be HOST:PORT")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """Run the comparator until stopped; return the process exit code."""
    mirror: MirrorChild | None = None
    try:
        args = sys.argv[1:] if argv is None else argv
        options = options_from_args(args)
        apply_policy()  # SCHED_BATCH; before any thread or child, which inherit it
        mirror = MirrorChild.start(mirror_argv(build_parser().parse_args(args)))
        run = loop_runner()
        profile = os.environ.get(PROFILE_ENV)
        if profile:  # where the CPU goes on a live pair (bench work; cProfile slows it ~2x)
            profiler = cProfile.Profile(time.thread_time)  # CPU, not wall-clock time
            try:
                return profiler.runcall(run, ComparatorShell(options).run())
            finally:
                profiler.dump_stats(f"{profile}.{os.getpid()}")
        return run(ComparatorShell(options).run())
    except ColoppError as exc:
        print(f"colopp.compare: {exc}", file=sys.stderr)
        return 2
    finally:
        if mirror is not None:
            mirror.stop()


if __name__ == "__main__":
    sys.exit(main())
