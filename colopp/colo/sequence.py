"""The QMP sequences that start COLO and fail over, as data (pure).

Each builder returns the steps in order; the agent runs them on its local QEMU and stops
at the first error, naming the step. The sequences follow QEMU's COLO documentation
(docs/system/qemu-colo.rst) and upstream's COLO tests for QEMU >= 10.2: ``x-colo`` and
``return-path`` on both sides, ``-incoming defer``, ``yank`` before
``x-colo-lost-heartbeat``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from colopp.domain import ComparatorKind, Ports
from colopp.errors import HMP_ERROR_CLASS, QmpError
from colopp.qmp.monitor import hmp_command

# QEMU's error classes (qapi/error.json) for the errors a step may meet on a side whose
# peer or whose own filters are already gone. QEMU 11 raises:
# - object-del of a missing id: GenericError ("object 'x' not found", qom/object_interfaces.c);
# - chardev-remove of a missing id: GenericError ("Chardev 'x' not found", chardev/char.c);
# - nbd-server-stop with no server: GenericError ("NBD server not running", blockdev-nbd.c);
# - object-add / chardev-add of an existing id: GenericError (duplicate property);
# - yank of an instance that is gone: DeviceNotFound ("Instance not found", util/yank.c).
GENERIC_ERROR = "GenericError"
DEVICE_NOT_FOUND = "DeviceNotFound"


@dataclass(frozen=True)
class QmpStep:
    """One QMP command (or HMP line); ``tolerate`` lists the QEMU error classes that are
    fine for this command here (matched with the command, never on message text)."""

    command: str
    arguments: dict[str, Any] = field(default_factory=dict)
    tolerate: tuple[str, ...] = ()
    hmp: bool = False
    oob: bool = False

    @property
    def error_command(self) -> str:
        """The command a QmpError of this step names."""
        return hmp_command(self.command) if self.hmp else self.command

    def tolerates(self, error: QmpError) -> bool:
        """Is ``error``, raised by this step, fine here (same command, tolerated class)?"""
        return error.command == self.error_command and error.error_class in self.tolerate


def _caps() -> QmpStep:
    return QmpStep(
        "migrate-set-capabilities",
        {
            "capabilities": [
                {"capability": "return-path", "state": True},
                {"capability": "x-colo", "state": True},
            ]
        },
    )


def secondary_prepare(local_repl_ip: str, ports: Ports) -> list[QmpStep]:
    """Make the secondary ready to receive COLO: NBD export of parent0, incoming migration."""
    return [
        _caps(),
        QmpStep(
            "nbd-server-start",
            {"addr": {"type": "inet", "data": {"host": local_repl_ip, "port": str(ports.nbd)}}},
        ),
        QmpStep("nbd-server-add", {"device": "parent0", "writable": True}),
        QmpStep("migrate-incoming", {"uri": f"tcp:{local_repl_ip}:{ports.migration}"}),
    ]


def replication_drive(peer_repl_ip: str, ports: Ports) -> str:
    """The HMP ``drive_add`` line for the primary's replication child (NBD to the secondary)."""
    return (
        "drive_add -n buddy driver=replication,mode=primary,file.driver=nbd,"
        f"file.host={peer_repl_ip},file.port={ports.nbd},file.export=parent0,"
        "node-name=replication0"
    )


def attach_replication(peer_repl_ip: str, ports: Ports) -> list[QmpStep]:
    """Add the replication child (NBD to the secondary's export) to the quorum."""
    return [
        QmpStep(replication_drive(peer_repl_ip, ports), hmp=True),
        QmpStep("x-blockdev-change", {"parent": "colo-disk0", "node": "replication0"}),
    ]


def primary_start(peer_repl_ip: str, ports: Ports, checkpoint_delay_ms: int) -> list[QmpStep]:
    """Attach the replication child to the quorum and migrate into COLO (the guest's
    writes until the switch reach only this side's disk: colopp.colo.live)."""
    return [
        *attach_replication(peer_repl_ip, ports),
        _caps(),
        QmpStep("migrate-set-parameters", {"x-checkpoint-delay": checkpoint_delay_ms}),
        QmpStep("migrate", {"uri": f"tcp:{peer_repl_ip}:{ports.migration}"}),
    ]


_GONE = (GENERIC_ERROR,)  # object-del / chardev-remove of what is already gone


PEER_CHARDEVS = frozenset({"mirror0", "compare1", "red0", "red1"})


def peer_yank_instances(available: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """From ``query-yank``: what connects to the peer host (migration, NBD, peer chardevs).

    A dead or cut-off peer leaves these connections hung (no RST ever comes); yanking them
    lets the failover commands run instead of waiting on the peer.
    """
    keep = []
    for instance in available:
        kind = instance.get("type")
        if kind in ("migration", "block-node") or (
            kind == "chardev" and instance.get("id") in PEER_CHARDEVS
        ):
            keep.append(instance)
    return keep


# The agent replaces this step by a ``yank`` of :func:`peer_yank_instances`.
YANK_PEER = QmpStep("yank", {"instances": "peer"}, tolerate=(DEVICE_NOT_FOUND,), oob=True)


def secondary_failover() -> list[QmpStep]:
    """Promote the secondary when the primary is lost: it serves from now on.

    The primary is already gone (dead or fenced) when this runs, so the secondary's
    output path opens first: ``f2`` (which sent the guest's output to the dead
    comparator) is removed and the guest's MAC announced before anything else. A client
    retransmission that arrives during the rest of the sequence is then answered on
    the wire instead of into a dead socket (which would cost the guest a retransmission
    timeout of its own).
    """
    return [
        YANK_PEER,
        QmpStep("object-del", {"id": "f2"}, tolerate=_GONE),
        _announce(),
        QmpStep("nbd-server-stop", tolerate=(GENERIC_ERROR,)),  # not running
        QmpStep("x-colo-lost-heartbeat"),
        QmpStep("object-del", {"id": "f1"}, tolerate=_GONE),
        QmpStep("chardev-remove", {"id": "red1"}, tolerate=_GONE),
        QmpStep("chardev-remove", {"id": "red0"}, tolerate=_GONE),
    ]


def _announce() -> QmpStep:
    # The guest's MAC now lives behind another host's port: switches must learn it now,
    # not when the guest next happens to transmit (clients waiting on a reply would stall).
    return QmpStep("announce-self", {"initial": 20, "max": 200, "rounds": 5, "step": 40})


def primary_failover(comparator: ComparatorKind) -> list[QmpStep]:
    """Let the primary continue alone when the secondary is lost."""
    steps = [
        YANK_PEER,
        QmpStep("x-blockdev-change", {"parent": "colo-disk0", "child": "children.1"}),
        # Its NBD target is gone: QEMU reports the failed final flush, and deletes it anyway.
        # HMP has no error classes: any report of this one command is tolerated.
        QmpStep("drive_del replication0", hmp=True, tolerate=(HMP_ERROR_CLASS,)),
    ]
    if comparator is ComparatorKind.BUILTIN:
        steps += [
            QmpStep("object-del", {"id": "comp0"}, tolerate=_GONE),
            QmpStep("object-del", {"id": "iothread1"}, tolerate=_GONE),
        ]
    steps += [
        QmpStep("object-del", {"id": "mc0"}, tolerate=_GONE),
        QmpStep("object-del", {"id": "m0"}, tolerate=_GONE),
        QmpStep("object-del", {"id": "redire0"}, tolerate=_GONE),
        QmpStep("object-del", {"id": "redire1"}, tolerate=_GONE),
        QmpStep("x-colo-lost-heartbeat"),
    ]
    return steps


def resync_disk(peer_repl_ip: str, ports: Ports) -> QmpStep:
    """Start copying the whole disk to the new secondary's NBD export (``drive-mirror``)."""
    return QmpStep(
        "drive-mirror",
        {
            "device": "colo-disk0",
            "job-id": "resync",
            "target": f"nbd://{peer_repl_ip}:{ports.nbd}/parent0",
            "mode": "existing",
            "format": "raw",
            "sync": "full",
        },
    )


def finish_resync() -> list[QmpStep]:
    """Freeze the guest and end the mirror job; the target now equals the source."""
    return [QmpStep("stop"), QmpStep("block-job-cancel", {"device": "resync"})]


_EXISTS = (GENERIC_ERROR,)  # object-add / chardev-add of an id that exists (duplicate property)


def _chardev(cid: str, addr: dict[str, Any], server: bool) -> QmpStep:
    return QmpStep(
        "chardev-add",
        {"id": cid, "backend": {"type": "socket", "data": {"addr": addr, "server": server}}},
        tolerate=_EXISTS,
    )


def _inet(host: str, port: int) -> dict[str, Any]:
    return {"type": "inet", "data": {"host": host, "port": str(port)}}


def _unix(path: str) -> dict[str, Any]:
    return {"type": "unix", "data": {"path": path}}


def _filter(
    kind: str, fid: str, before_rewriter: bool, vnet_hdr: bool = False, **props: str
) -> QmpStep:
    args: dict[str, Any] = {"qom-type": kind, "id": fid, "netdev": "hn0", **props}
    if vnet_hdr:  # the tap carries a virtio-net header (VmSpec.vnet_hdr)
        args["vnet_hdr_support"] = True
    if before_rewriter:
        # A promoted secondary keeps its filter-rewriter (it still translates sequence
        # numbers of connections opened before failover); new filters go in front of it.
        args |= {"insert": "before", "position": "id=rew0"}
    return QmpStep("object-add", args, tolerate=_EXISTS)


def resume_replication(
    local_repl_ip: str,
    peer_repl_ip: str,
    ports: Ports,
    sockets: tuple[str, str],
    comparator: ComparatorKind,
    has_rewriter: bool,
    client_socket: str | None = None,
    vnet_hdr: bool = False,
    mirror_socket: str | None = None,
) -> list[QmpStep]:
    """After the disk resync: attach replication, rebuild the primary's network path.

    ``sockets`` are the (compare0, compare_out) unix socket paths; ``mirror_socket``, with
    colopp's comparator, where ``mirror0`` listens for the comparator's mirror process
    (``qemu-configs/mirror-batched.conf``; without it, or with QEMU's colo-compare, it
    listens on the replication network); ``client_socket``, when
    colopp's comparator follows client requests, is where a copy of the guest's input goes.
    Chardevs and objects that already exist (a primary that only lost its secondary keeps
    its chardevs) are fine. ``vnet_hdr``: the filters, and QEMU's colo-compare, carry the
    tap's virtio-net header (``vnet_hdr_support``).
    """
    compare0, compare_out = sockets
    if mirror_socket is not None and comparator is ComparatorKind.COLOPP:
        mirror0 = _unix(mirror_socket)
    else:
        mirror0 = _inet(local_repl_ip, ports.mirror)
    steps = [
        QmpStep(replication_drive(peer_repl_ip, ports), hmp=True),
        QmpStep("x-blockdev-change", {"parent": "colo-disk0", "node": "replication0"}),
        _chardev("mirror0", mirror0, server=True),
        _chardev("compare0", _unix(compare0), server=True),
        _chardev("compare_out", _unix(compare_out), server=True),
    ]
    if comparator is ComparatorKind.BUILTIN:
        steps += [
            _chardev("compare1", _inet(local_repl_ip, ports.compare), server=True),
            _chardev("compare0-0", _unix(compare0), server=False),
            _chardev("compare_out0", _unix(compare_out), server=False),
        ]
    steps += [
        _filter("filter-mirror", "m0", has_rewriter, vnet_hdr, queue="tx", outdev="mirror0"),
        _filter(
            "filter-redirector", "redire0", has_rewriter, vnet_hdr, queue="rx", indev="compare_out"
        ),
        _filter(
            "filter-redirector", "redire1", has_rewriter, vnet_hdr, queue="rx", outdev="compare0"
        ),
    ]
    if client_socket is not None and comparator is ComparatorKind.COLOPP:
        steps += [
            _chardev("client0", _unix(client_socket), server=True),
            _filter("filter-mirror", "mc0", has_rewriter, vnet_hdr, queue="tx", outdev="client0"),
        ]
    if comparator is ComparatorKind.BUILTIN:
        steps += [
            QmpStep("object-add", {"qom-type": "iothread", "id": "iothread1"}, tolerate=_EXISTS),
            QmpStep(
                "object-add",
                {
                    "qom-type": "colo-compare",
                    "id": "comp0",
                    "primary_in": "compare0-0",
                    "secondary_in": "compare1",
                    "outdev": "compare_out0",
                    "iothread": "iothread1",
                }
                | ({"vnet_hdr_support": True} if vnet_hdr else {}),
            ),
        ]
    return steps


def migrate_to(peer_repl_ip: str, ports: Ports, checkpoint_delay_ms: int) -> list[QmpStep]:
    """Capabilities, checkpoint period, then migrate into COLO."""
    return [
        _caps(),
        QmpStep("migrate-set-parameters", {"x-checkpoint-delay": checkpoint_delay_ms}),
        QmpStep("migrate", {"uri": f"tcp:{peer_repl_ip}:{ports.migration}"}),
    ]
