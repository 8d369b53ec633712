"""Live re-protection: the QMP plan that keeps the guest running while its disk and RAM
are copied to a new secondary, and pauses it only for the switch into COLO (pure).

Why the guest may not simply run between the end of the disk mirror and ``migrate``
(what lost acknowledged writes in earlier trials): the primary's disk is a quorum
(``colo-disk0``, vote-threshold 1) over the local image and, once attached, the
replication child ``replication0`` (block/replication.c, mode=primary). Until QEMU starts
replication at the COLO switch (``replication_start_all`` in migration/colo.c) the
replication driver is in state NONE and answers every write with -EIO, which primary mode
swallows (it records the error and returns 0); the quorum needs one good child, so the
guest's write is acknowledged with only the local image written. Once the mirror job is
cancelled nothing else copies those blocks: the secondary's disk misses every write made
between the cancel and the COLO switch, and after a failover to the secondary those
acknowledged writes are gone (the guest's page cache on the secondary may hide it until
the blocks are read back from disk).

The live plan closes that window instead of avoiding it by freezing the guest:
1. ``drive-mirror`` (background copy mode, see below) copies the disk and keeps copying
   what the guest writes while it runs;
2. ``migrate`` with ``pause-before-switchover``: RAM is pre-copied while the guest runs;
   QEMU stops the guest for the last pass and waits in ``pre-switchover``;
3. in that pause (guest stopped, nothing writes): the mirror is completed
   (``block-job-cancel`` of a ready mirror = complete without pivot: it copies what is
   still dirty, then target == source), the replication child is attached and the
   network filters go in; then ``migrate-continue`` and QEMU starts replication before
   the guest runs again.
So every write the guest made while it ran is on the secondary's disk before COLO starts
(the mirror completes with the guest stopped), and every later one reaches it through
replication. :func:`unreplicated_steps` checks exactly that on a plan.

Why the background copy mode, not ``write-blocking`` (active mirror): before COLO starts
the secondary is no failover target (it has no RAM state yet), so nothing gains from a
guest write waiting for the secondary's disk; but the RAM pre-copy fills the replication
link, and an active mirror made every guest write wait behind the migration stream. A
service that fsyncs (kvd: two per PUT, one thread) then stalled for the whole pre-copy:
the 0.6-2 s client gaps ``bench.inplace`` measured, growing with RAM. In background mode
writes complete locally; the price is that the switch pause includes copying what the
guest wrote since the mirror last caught up (small unless the guest writes faster than the
link).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colopp.colo.sequence import QmpStep
from colopp.domain import Ports

MIRROR_JOB = "resync"
# How the mirror copies while the guest runs (module doc: why not write-blocking).
COPY_MODE = "background"
# What QEMU may leave for the stopped final pass of the RAM pre-copy. The guest is
# stopped for this plus the COLO switch; the pre-copy runs until the rest fits in it.
DOWNTIME_LIMIT_MS = 60
# Pre-copy bandwidth (bytes/s): the replication network is local or dedicated.
MAX_BANDWIDTH = 4 << 30


def live_mirror(peer_repl_ip: str, ports: Ports) -> QmpStep:
    """Copy the whole disk to the new secondary's NBD export, then what the guest writes
    (background mode: guest writes never wait for the secondary; the job completes, with
    the guest stopped, in :func:`cancel_mirror`)."""
    return QmpStep(
        "drive-mirror",
        {
            "device": "colo-disk0",
            "job-id": MIRROR_JOB,
            "target": f"nbd://{peer_repl_ip}:{ports.nbd}/parent0",
            "mode": "existing",
            "format": "raw",
            "sync": "full",
            "copy-mode": COPY_MODE,
        },
    )


def live_migration_setup(checkpoint_delay_ms: int, bandwidth: int = MAX_BANDWIDTH) -> list[QmpStep]:
    """Capabilities and parameters for a pre-copy that pauses before the switchover.

    ``events`` makes QEMU report each migration state (the agent waits for
    ``pre-switchover`` on the event, not by polling). Every parameter a fallback may
    change (colopp.colo.converge) is set again: a QEMU keeps them from its last migration.
    ``bandwidth``: the pre-copy's cap in bytes/s."""
    return [
        QmpStep(
            "migrate-set-capabilities",
            {
                "capabilities": [
                    {"capability": "return-path", "state": True},
                    {"capability": "x-colo", "state": True},
                    {"capability": "pause-before-switchover", "state": True},
                    {"capability": "events", "state": True},
                ]
            },
        ),
        QmpStep(
            "migrate-set-parameters",
            {
                "x-checkpoint-delay": checkpoint_delay_ms,
                "downtime-limit": DOWNTIME_LIMIT_MS,
                "max-bandwidth": bandwidth,
                "avail-switchover-bandwidth": 0,  # 0: QEMU uses the rate it measures
            },
        ),
    ]


def split_plumbing(steps: list[QmpStep]) -> tuple[list[QmpStep], list[QmpStep]]:
    """Split :func:`colopp.colo.sequence.resume_replication`'s steps into what may run
    while the guest runs (chardevs: sockets that carry nothing until a filter uses them)
    and what must wait for the pause (replication child, filters, colo-compare)."""
    early = [s for s in steps if s.command == "chardev-add"]
    late = [s for s in steps if s.command != "chardev-add"]
    return early, late


def peer_links_up(chardevs: list[dict[str, Any]], labels: tuple[str, ...]) -> bool:
    """From ``query-chardev``: are the server chardevs ``labels`` connected by a client?
    (QEMU names an unconnected socket chardev ``disconnected:...``.)"""
    found = {c.get("label"): str(c.get("filename", "")) for c in chardevs}
    return all(label in found and not found[label].startswith("disconnected") for label in labels)


def continue_step() -> QmpStep:
    """Leave ``pre-switchover``: QEMU sends the rest and enters COLO."""
    return QmpStep("migrate-continue", {"state": "pre-switchover"})


def cancel_mirror() -> QmpStep:
    """Complete a ready mirror without pivoting (the target equals the source)."""
    return QmpStep("block-job-cancel", {"device": MIRROR_JOB})


@dataclass(frozen=True)
class PlanPoint:
    """A point of a re-protection plan: a QMP step, or a QEMU-side transition the plan
    waits for (``"<pre-switchover>"``: QEMU stopped the guest; ``"<colo>"``: QEMU started
    replication and resumed the guest)."""

    name: str
    step: QmpStep | None = None


MIRROR_READY = PlanPoint("<mirror-ready>")
COMPARATOR = PlanPoint("<comparator>")
# The secondary's chardevs (started before the primary's servers existed) reconnect on a
# timer (reconnect-ms): until they did, the secondary gets no client input and its output
# reaches no comparator, and the first replies after the switch wait for a compare timeout.
SECONDARY_LINKED = PlanPoint("<secondary-linked>")
PRE_SWITCHOVER = PlanPoint("<pre-switchover>")
MIRROR_DONE = PlanPoint("<mirror-done>")
# Steps of other parts (e.g. moving colopp's sequence translator's filters) that must run
# with the guest stopped, after the primary's filters are in and before COLO starts.
IN_PAUSE = PlanPoint("<in-pause>")
COLO_STARTED = PlanPoint("<colo>")


def live_plan(
    peer_repl_ip: str,
    ports: Ports,
    plumbing: list[QmpStep],
    checkpoint_delay_ms: int,
    bandwidth: int = MAX_BANDWIDTH,
) -> list[PlanPoint]:
    """The live re-protection, in order: QMP steps, and the points where the agent waits
    for QEMU (mirror ready, pre-switchover, mirror done, COLO) or starts the comparator.

    ``plumbing``: :func:`colopp.colo.sequence.resume_replication`'s steps; ``bandwidth``:
    the pre-copy's cap (bytes/s)."""
    early, late = split_plumbing(plumbing)
    return [
        *as_points([live_mirror(peer_repl_ip, ports)]),
        MIRROR_READY,
        *as_points(early),
        COMPARATOR,
        SECONDARY_LINKED,
        *as_points(live_migration_setup(checkpoint_delay_ms, bandwidth)),
        *as_points([QmpStep("migrate", {"uri": f"tcp:{peer_repl_ip}:{ports.migration}"})]),
        PRE_SWITCHOVER,
        *as_points([cancel_mirror()]),
        MIRROR_DONE,
        *as_points(late),
        IN_PAUSE,
        *as_points([continue_step()]),
        COLO_STARTED,
    ]


def unreplicated_steps(points: list[PlanPoint], running: bool = True) -> list[str]:
    """Names of the points after which the guest runs while its writes reach only the
    local disk (no ready mirror and no started replication): each one loses acknowledged
    writes on a failover to the secondary. An empty list is the plan's proof.

    A mirror counts from its start (an active mirror blocks each write on the target;
    a background one copies what is dirty at completion, which happens with the guest
    stopped in a correct plan). ``running``: whether the guest runs at the first point.
    """
    mirror = replication = False
    bad: list[str] = []
    for point in points:
        command = point.step.command if point.step is not None else point.name
        if command in ("drive-mirror", "blockdev-mirror"):
            mirror = True
        elif command == "block-job-cancel":
            mirror = False
        elif command == "stop" or point is PRE_SWITCHOVER:
            running = False
        elif command == "cont":
            running = True
        elif point is COLO_STARTED:
            running = replication = True
        if running and not (mirror or replication):
            bad.append(point.name)
    return bad


def as_points(steps: list[QmpStep]) -> list[PlanPoint]:
    """Steps as plan points named by their command."""
    return [PlanPoint(s.command, s) for s in steps]
