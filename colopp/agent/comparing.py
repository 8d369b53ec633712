"""Comparator supervision on a primary side: start colopp's comparator process for the
side's current spec and checkpoint period (replacing one that runs), and stop it.

On a secondary of colopp's comparator (:attr:`SideSpec.ingress_relay`), the ingress
relay (``python -m colopp.ingress``) sits between the primary's mirror and the secondary
QEMU's ``red0``, and between its ``red1`` and the comparator. It keeps the guest's output
the client may lack, sent to the client at promotion (``ingress/keep.py``). Its ACK gate
holds a client frame that acknowledges answer bytes this secondary guest has not sent yet
(the guest's Linux would discard it, request and all, and the client would wait for its
retransmission timeout). Its log keeps every client segment until this guest acknowledges
it, and (when answers may leave early) its receipts tell the comparator
(``--host-receipts``) which client bytes this host holds, so early output need not wait
for this guest's ACK (issue #22, ``docs/architecture.md``, "Held ACKs"). Started right
after QEMU (its chardevs retry every second), told of each checkpoint the secondary loads
(SIGUSR2); at promotion (:func:`promote_ingress`, before the redirectors go) it stops
taking the mirror, sends the client the guest's kept output, hands what the guest has not
acknowledged to the promoted guest on its tap, and exits; stopped with the VM; it also
exits by itself when QEMU is gone.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from colopp.agent.comparator_process import ComparatorProcess, comparator_argv, mirror_batched
from colopp.agent.side import Side
from colopp.compare.config import DEFAULT_RESP_PORTS
from colopp.domain import ComparatorKind, ProtectionOptions, SideSpec

log = logging.getLogger(__name__)


async def start_comparator(side: Side, force_checkpoint: Callable[[], Awaitable[None]]) -> None:
    """(Re)start the side's comparator when the protection uses colopp's; a no-op with
    QEMU's built-in colo-compare. A restarted comparator asks for a checkpoint
    (``force_checkpoint``) since it lost what it held.

    Raises:
        QemuStartError: the comparator cannot be executed.
    """
    spec = side.spec
    if spec.options.comparator is not ComparatorKind.COLOPP:
        return
    await stop_comparator(side)
    side.comparator = ComparatorProcess(
        comparator_argv(
            spec,
            side.checkpoint_delay_ms,
            vnet_hdr=side.vm.vnet_hdr,
            mirror_batched=mirror_batched(spec),
        ),
        spec.run_dir,
        force_checkpoint,
        side.process.alive,
    )
    await side.comparator.start()


async def stop_comparator(side: Side) -> None:
    """Stop the side's comparator, if any (its last counters stay readable); never raises."""
    if side.comparator is not None:
        await side.comparator.stop()


def ingress_argv(
    spec: SideSpec, qemu_pid: int, python: str = sys.executable, *, vnet_hdr: bool = False
) -> list[str]:
    """The ingress relay's command line for one secondary (pure)."""
    return [
        python,
        "-m",
        "colopp.ingress",
        "--mirror-from",
        f"tcp:{spec.peer_repl_ip}:{spec.ports.mirror}",
        "--mirror-to",
        f"listen:unix:{spec.red0_socket}",
        "--output-from",
        f"listen:unix:{spec.red1_socket}",
        "--output-to",
        f"tcp:{spec.peer_repl_ip}:{spec.ports.compare}",
        "--tap",
        spec.tap,
        "--parent-pid",
        str(qemu_pid),
        "--status",
        str(spec.run_dir / "ingress.json"),
        *(["--vnet-hdr"] if vnet_hdr else []),
        *([] if spec.options.host_receipts else ["--no-receipts"]),
        *fence_argv(spec.options),
    ]


def fence_argv(options: ProtectionOptions) -> list[str]:
    """The read rule the relay's write fence follows (``colopp/ingress/fence.py``): the
    comparator's, so a write waits for every read that may have left early (pure)."""
    rules = set() if options.prerelease is None else set(options.prerelease.split(","))
    resp_ports = options.resp_ports
    if not resp_ports and ("all" in rules or "resp_read" in rules):
        resp_ports = DEFAULT_RESP_PORTS  # the comparator's default for the RESP rule
    argv: list[str] = []
    for prefix in options.read_prefixes:
        argv += ["--read-prefix", prefix]
    for port in resp_ports:
        argv += ["--resp-port", str(port)]
    if argv and options.prerelease_scope != "global":
        argv += ["--read-scope", options.prerelease_scope]
    return argv


async def _nothing() -> None:
    return None


async def start_ingress(side: Side) -> None:
    """Start the secondary's ingress relay when its spec wants one (a no-op otherwise).

    Raises:
        QemuStartError: the relay cannot be executed.
    """
    pid = side.process.pid
    if not side.spec.ingress_relay or pid is None:
        return
    await stop_ingress(side)
    relay = ComparatorProcess(
        ingress_argv(side.spec, pid, vnet_hdr=side.vm.vnet_hdr),
        side.spec.run_dir,
        _nothing,
        side.process.alive,
        "ingress",
    )
    await relay.start()
    side.ingress = relay
    side.checkpoints.on_resume = lambda: relay.signal(signal.SIGUSR2)


def promote_ingress(side: Side) -> None:
    """This secondary takes over: the relay stops taking the mirror, hands the log's
    unacknowledged client frames to the promoted guest on its tap, then exits by itself
    (SIGUSR1; not restarted). Call before the redirectors go; never raises."""
    side.checkpoints.on_resume = None
    if side.ingress is not None:
        side.ingress.finish(signal.SIGUSR1)


async def stop_ingress(side: Side) -> None:
    """Stop the side's ingress relay, if any; never raises."""
    relay, side.ingress = side.ingress, None
    side.checkpoints.on_resume = None
    if relay is not None:
        await relay.stop()
