"""``python -m colopp.ingress``: the secondary host's relay (issues #15, #22). The agent
starts it for a secondary whose answers may leave early (``docs/architecture.md``, "Held
ACKs"); ``--no-receipts`` leaves the ACK gate only.

Example (the secondary QEMU's ``red0``/``red1`` chardevs pointed at the two unix sockets)::

    python -m colopp.ingress --mirror-from tcp:198.18.2.1:9003 \\
        --mirror-to listen:unix:/run/colopp/vm1/red0.sock \\
        --output-from listen:unix:/run/colopp/vm1/red1.sock \\
        --output-to tcp:198.18.2.1:9004 --tap clp-tapb --status /run/colopp/vm1/ingress.json

SIGUSR1 is the failover (the promotion of this host): the relay stops taking the mirror,
sends the client the secondary guest's output since its last checkpoint that the client has
not acknowledged (``keep.py``, out of ``--tap``'s bridge), and
hands the log's unacknowledged frames to the promoted guest on ``--tap`` until it
acknowledges them (or ``--replay-deadline``), then exits 0. SIGUSR2: the secondary loaded
a checkpoint (the ACK gate forgets the old guest's output). SIGTERM / SIGINT stop it (0), and
so does the end of ``--parent-pid`` (the secondary QEMU: the relay never outlives it).
The status file (0600) holds the relay's and the log's counters.

``--read-prefix`` / ``--resp-port`` (pre-release's read rule, as the agent gives the
comparator) turn on the write fence (``fence.py``): a client's write waits until the secondary
guest began answering every read delivered before it on other connections
(``COLOPP_INGRESS_WRITE_FENCE=off`` in the environment turns it off: side-by-side runs).

The relay runs as ``SCHED_BATCH`` (``COLOPP_DATAPATH_SCHED=normal`` keeps the default policy:
:mod:`colopp.datapath_sched`).

``--no-coalesce`` (or ``COLOPP_INGRESS_COALESCE=off`` in the environment: side-by-side runs)
sends the comparator every guest frame as it came instead of runs of one connection's
segments as one (``coalesce.py``).

``--no-window-pacing`` (or ``COLOPP_INGRESS_WINDOW_PACING=off`` in the environment, which
the agent passes on: for side-by-side runs) forwards client segments past the secondary
guest's receive window at once instead of holding them until it opens (``pacing.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from colopp.compare.addresses import parse_endpoint
from colopp.compare.status import write_status
from colopp.datapath_sched import apply_policy, restore_default_policy
from colopp.errors import ColoppError, ConfigError
from colopp.ingress.fence import MAX_PENDING_S
from colopp.ingress.log import DEFAULT_MAX_BYTES
from colopp.ingress.options import RECEIPT_INTERVAL_S, RelayOptions
from colopp.ingress.relay import Relay
from colopp.ingress.replay import (
    DEFAULT_DEADLINE_S,
    Replayer,
    guest_frames,
    open_tap_socket,
    send_frame,
)
from colopp.ingress.resend import RESEND_ENV, send_to_client

log = logging.getLogger("colopp.ingress")


def parse_args(argv: list[str] | None) -> tuple[RelayOptions, argparse.Namespace]:
    """The relay's options. Raises ConfigError on a bad address or limit."""
    p = argparse.ArgumentParser(prog="python -m colopp.ingress", description=__doc__)
    p.add_argument("--mirror-from", required=True, help="the primary's mirror0 (tcp:H:P)")
    p.add_argument("--mirror-to", required=True, help="for the secondary's red0 (listen:...)")
    p.add_argument("--output-from", required=True, help="for the secondary's red1 (listen:...)")
    p.add_argument("--output-to", required=True, help="the comparator's secondary_in")
    p.add_argument("--vnet-hdr", action="store_true", help="frames carry vnet headers")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="log size bound")
    p.add_argument("--tap", help="the guest's tap, for the replay at failover")
    p.add_argument("--replay-deadline", type=float, default=DEFAULT_DEADLINE_S)
    p.add_argument("--status", type=Path, help="JSON status file (0600)")
    p.add_argument("--no-receipts", action="store_true", help="the ACK gate only")
    p.add_argument(
        "--no-gate-lowering",
        action="store_true",
        help="hold client frames that run ahead of the secondary instead of lowering their ACK",
    )
    p.add_argument(
        "--no-window-pacing",
        action="store_true",
        help="forward client segments past the guest's receive window at once",
    )
    p.add_argument(
        "--no-coalesce",
        action="store_true",
        help="send the comparator every guest frame as it came (not coalesced)",
    )
    p.add_argument(
        "--receipt-interval-ms",
        type=float,
        default=RECEIPT_INTERVAL_S * 1000,
        help="least time between receipt writes after client frames (0: after every read)",
    )
    p.add_argument(
        "--read-prefix",
        action="append",
        default=[],
        help="pre-release's read rule: HTTP path prefix of reads (repeatable; write fence)",
    )
    p.add_argument(
        "--resp-port",
        action="append",
        type=int,
        default=[],
        help="pre-release's read rule: guest port speaking RESP (repeatable; write fence)",
    )
    p.add_argument(
        "--read-scope",
        choices=("global", "key"),
        default="global",
        help="pre-release's scope: key lets the write fence look at resources",
    )
    p.add_argument("--parent-pid", type=int, help="exit when this process (QEMU) is gone")
    args = p.parse_args(argv)
    if args.max_bytes <= 0 or args.replay_deadline <= 0:
        raise ConfigError("--max-bytes and --replay-deadline must be positive")
    if not 0 <= args.receipt_interval_ms <= 1000:
        raise ConfigError("--receipt-interval-ms must be within 0..1000")
    fence = os.environ.get(FENCE_ENV) != "off"
    options = RelayOptions(
        mirror_from=parse_endpoint(args.mirror_from),
        mirror_to=parse_endpoint(args.mirror_to),
        output_from=parse_endpoint(args.output_from),
        output_to=parse_endpoint(args.output_to),
        vnet_hdr=args.vnet_hdr,
        max_bytes=args.max_bytes,
        receipts=not args.no_receipts,
        receipt_interval=args.receipt_interval_ms / 1000,
        gate_lowering=not args.no_gate_lowering,
        window_pacing=not args.no_window_pacing and os.environ.get(PACING_ENV) != "off",
        read_prefixes=tuple(args.read_prefix) if fence else (),
        resp_ports=tuple(args.resp_port) if fence else (),
        read_scope=args.read_scope,
        coalesce=not args.no_coalesce and os.environ.get(COALESCE_ENV) != "off",
    )
    if any(not 0 < port < 65536 for port in args.resp_port):
        raise ConfigError("--resp-port must be within 1..65535")
    if any(not prefix.startswith("/") or not prefix.isascii() for prefix in args.read_prefix):
        raise ConfigError("--read-prefix must be an ASCII path starting with /")
    if not (options.mirror_to.listen and options.output_from.listen):
        raise ConfigError("--mirror-to and --output-from are listen: addresses (QEMU connects)")
    return options, args


async def serve(relay: Relay, args: argparse.Namespace) -> None:
    """Run until SIGTERM/SIGINT, or until the replay after SIGUSR1 is over."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    promoted = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    loop.add_signal_handler(signal.SIGUSR1, promoted.set)
    loop.add_signal_handler(signal.SIGUSR2, relay.checkpoint)
    await relay.start()
    waiters = [asyncio.create_task(done.wait()), asyncio.create_task(promoted.wait())]
    try:
        while not done.is_set():
            _write(relay, args, None)
            if args.parent_pid is not None and not _alive(args.parent_pid):
                log.info("process %d is gone: stopping", args.parent_pid)
                return
            await asyncio.wait(waiters, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            if promoted.is_set() and not done.is_set():
                # The failover's own path: woken frames must not wait for a CPU slice.
                restore_default_policy()
                _write(relay, args, await replay(relay, args, done))
                return
    finally:
        for task in waiters:
            task.cancel()
        await relay.stop()


async def replay(relay: Relay, args: argparse.Namespace, done: asyncio.Event) -> dict[str, Any]:
    """Hand the log to the promoted guest on ``--tap``; returns what happened."""
    frames = relay.promote()
    if args.tap is None:
        log.error("promoted without --tap: %d frames not handed over", len(frames))
        return {"frames": len(frames), "handed_over": False}
    sock = open_tap_socket(args.tap)
    # The guest's output the client may lack goes to it now, beside the replay.
    resend = asyncio.create_task(resend_output(relay, args.tap))
    loop = asyncio.get_running_loop()
    now = time.monotonic()
    replayer = Replayer(relay.log, functools.partial(send_frame, sock), now, args.replay_deadline)
    replayer.keep_order(*relay.fence_handover, now + MAX_PENDING_S)

    wake = asyncio.Event()  # a push moved the next round earlier

    def readable() -> None:
        for frame in guest_frames(sock):
            replayer.guest_frame(frame)
        if replayer.push(time.monotonic()):
            wake.set()

    loop.add_reader(sock.fileno(), readable)
    try:
        while not done.is_set():
            at = replayer.tick(time.monotonic())
            if at is None:
                break
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, at - time.monotonic()))
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    resent = await resend
    left = len(relay.log.unacked())
    owed = len(relay.log.owed_acks)
    if left or owed:
        log.error(
            "replay gave up: %d frames not acknowledged by the promoted guest, %d client"
            " ACKs its output never reached",
            left,
            owed,
        )
    return {
        "frames": len(frames),
        "resent_to_client": resent,
        "rounds": replayer.rounds,
        "pushed": replayer.pushed,
        "acks_sent": replayer.acks_sent,
        "unacknowledged": left,
        "acks_owed": owed,
    }


async def resend_output(relay: Relay, tap: str) -> int:
    """Send the client the secondary guest's kept output (``keep.py``) out of ``tap``'s
    bridge: what was kept at the promotion at once, then what the guest sent through
    ``red1`` until QEMU let go of it (the promotion's steps take the redirectors away: that
    output went to the dead comparator). Returns the frames sent."""
    if os.environ.get(RESEND_ENV) == "off":  # side-by-side runs: the guest's timer only
        relay.keep.take()
        return 0
    sent = await asyncio.to_thread(send_to_client, tap, relay.keep.take())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(relay.output_closed.wait(), LATE_OUTPUT_WAIT_S)
    return sent + await asyncio.to_thread(send_to_client, tap, relay.keep.take())


def _write(relay: Relay, args: argparse.Namespace, replayed: dict[str, Any] | None) -> None:
    if args.status is None:
        return
    status: dict[str, Any] = {
        **relay.stats,
        **relay.gate.counters(),
        **(relay.pacing.counters if relay.pacing is not None else {}),
        **(relay.fence.counters() if relay.fence is not None else {}),
        **relay.keep.counters(),
        "bytes_kept": relay.log.bytes_kept,
        "frames_refused": relay.log.frames_refused,
        "promoted": relay.promoted,
        "updated_at": time.time(),
    }
    if replayed is not None:
        status["replay"] = replayed
    with contextlib.suppress(ColoppError):
        write_status(args.status, status)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Seconds a promoted relay waits for the guest's last output through ``red1``.
LATE_OUTPUT_WAIT_S = 1.0
#: Set to a path prefix: the relay runs under cProfile and dumps ``PREFIX.<pid>`` at exit
#: (as ``COLOPP_COMPARE_PROFILE`` does for the comparator).
PROFILE_ENV = "COLOPP_INGRESS_PROFILE"
#: ``off``: as ``--no-window-pacing`` (side-by-side runs through the agents).
PACING_ENV = "COLOPP_INGRESS_WINDOW_PACING"
#: ``off``: the guest's output goes to the comparator frame by frame (side-by-side runs).
COALESCE_ENV = "COLOPP_INGRESS_COALESCE"
#: ``off``: no write fence whatever the read rule (side-by-side runs through the agents).
FENCE_ENV = "COLOPP_INGRESS_WRITE_FENCE"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        options, args = parse_args(argv)
        log.info("scheduling policy: %s", apply_policy())
        profile = os.environ.get(PROFILE_ENV)
        if profile:  # where host B's CPU goes (bench work; cProfile slows it ~2x)
            profiler = cProfile.Profile(time.thread_time)  # CPU, not wall-clock time
            try:
                profiler.runcall(asyncio.run, serve(Relay(options), args))
            finally:
                profiler.dump_stats(f"{profile}.{os.getpid()}")
            return 0
        asyncio.run(serve(Relay(options), args))
    except (ColoppError, OSError) as exc:
        print(f"ingress relay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
