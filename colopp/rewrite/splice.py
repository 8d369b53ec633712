"""Splicing a translator onto a guest's data path, as QMP steps (pure) and paths.

Two ``filter-redirector`` pairs on the guest's netdev ``hn0`` divert each direction to the
translator and inject what it sends back *after themselves* in the filter chain (QEMU's
``redirector_to_filter`` passes injected frames to the next filter in the filter's own
direction; a redirector on ``queue=all`` would inject each frame both ways, hence one pair
per direction):

- ``xo1`` (queue=rx, indev=xlate-out-to) / ``xo0`` (queue=rx, outdev=xlate-out-from): the
  guest's output, translated to the client's sequence space;
- ``xi0`` (queue=tx, outdev=xlate-in-from) / ``xi1`` (queue=tx, indev=xlate-in-to): the
  client's input, translated to the guest's.

They go right in front of ``filter-rewriter`` when the side has one (``rew0``), else at the
tail of the chain (nearest the guest): on the primary the mirror (``m0``) then still copies
the client's input in the client's space, and the comparator's redirector (``redire1``)
sees output already in the client's space.

A translator is spliced only onto a side whose table is not empty: a pair that never
failed over with young connections pays nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from colopp.colo.sequence import DEVICE_NOT_FOUND, GENERIC_ERROR, QmpStep
from colopp.rewrite.relay import RelayOptions

# Tolerated by QEMU error class (never message text, see QmpStep.tolerates): a duplicate
# add and a removal of what is already gone are both GenericError in QEMU 11.
_EXISTS = (GENERIC_ERROR,)
_GONE = (GENERIC_ERROR,)

#: chardev id -> socket file name in the run directory.
CHARDEVS = {
    "xlate-out-from": "xlate-out-from.sock",
    "xlate-out-to": "xlate-out-to.sock",
    "xlate-in-from": "xlate-in-from.sock",
    "xlate-in-to": "xlate-in-to.sock",
}
# In chain order. A frame injected by a redirector goes on to the *next* filter in its
# direction: forward for tx, backward for rx. So the injecting filter follows the diverting
# one for tx (xi0, xi1) and precedes it for rx (xo1, xo0), or frames would loop.
FILTERS = (
    ("xo1", "rx", {"indev": "xlate-out-to"}),
    ("xo0", "rx", {"outdev": "xlate-out-from"}),
    ("xi0", "tx", {"outdev": "xlate-in-from"}),
    ("xi1", "tx", {"indev": "xlate-in-to"}),
)
CONTROL_SOCKET = "xlate-control.sock"
TABLE_FILE = "xlate-table.json"


def relay_options(run_dir: Path, *, vnet_hdr: bool = False) -> RelayOptions:
    """Where the translator of the side living in ``run_dir`` connects and listens."""
    return RelayOptions(
        guest_out_from=run_dir / CHARDEVS["xlate-out-from"],
        guest_out_to=run_dir / CHARDEVS["xlate-out-to"],
        client_in_from=run_dir / CHARDEVS["xlate-in-from"],
        client_in_to=run_dir / CHARDEVS["xlate-in-to"],
        control=run_dir / CONTROL_SOCKET,
        state_file=run_dir / TABLE_FILE,
        vnet_hdr=vnet_hdr,
    )


def splice_steps(run_dir: Path, *, before: str | None, vnet_hdr: bool = False) -> list[QmpStep]:
    """Create the translator's chardevs and filters; ``before`` is the filter id to insert
    them in front of (``"rew0"``), or None for the tail of the chain; ``vnet_hdr``: the
    tap carries a virtio-net header (the redirectors pass it, ``vnet_hdr_support``)."""
    return chardev_steps(run_dir) + filter_steps(before=before, vnet_hdr=vnet_hdr)


def chardev_steps(run_dir: Path) -> list[QmpStep]:
    """The translator's four server chardevs (it can connect before any frame is diverted)."""
    return [
        QmpStep(
            "chardev-add",
            {
                "id": cid,
                "backend": {
                    "type": "socket",
                    "data": {
                        "addr": {"type": "unix", "data": {"path": str(run_dir / name)}},
                        "server": True,
                        "wait": False,
                    },
                },
            },
            tolerate=_EXISTS,
        )
        for cid, name in CHARDEVS.items()
    ]


def filter_steps(*, before: str | None, vnet_hdr: bool = False) -> list[QmpStep]:
    """The translator's four redirectors (see :func:`splice_steps`)."""
    steps: list[QmpStep] = []
    for fid, queue, dev in FILTERS:
        args: dict[str, Any] = {
            "qom-type": "filter-redirector",
            "id": fid,
            "netdev": "hn0",
            "queue": queue,
            **dev,
        }
        if vnet_hdr:
            args["vnet_hdr_support"] = True
        if before is not None:
            args |= {"insert": "before", "position": f"id={before}"}
        steps.append(QmpStep("object-add", args, tolerate=_EXISTS))
    return steps


def resume_steps() -> list[QmpStep]:
    """Turn the translator's filters back on after a secondary's failover.

    ``x-colo-lost-heartbeat`` on a secondary sends ``COLO_EVENT_FAILOVER`` to every filter of
    every netdev, and QEMU's default handler (``net/filter.c`` ``default_handle_event``, used
    by every filter that has none of its own: ``filter-redirector`` and ``filter-mirror``
    included; only ``filter-rewriter`` has its own) sets the filter's ``status`` to ``off``.
    Off, the four redirectors pass frames untranslated: the promoted guest's inherited
    connections would reach the client in the guest's sequence space and hang (issue 18:
    connections young at failover N broke at failover N+1; silent ones survived until
    re-protection re-created the filters).
    """
    return [
        QmpStep(
            "qom-set",
            {"path": f"/objects/{fid}", "property": "status", "value": "on"},
            # A side whose filters are gone must still fail over.
            tolerate=(GENERIC_ERROR, DEVICE_NOT_FOUND),
        )
        for fid, _, _ in FILTERS
    ]


def promotion_steps(failover: list[QmpStep], *, spliced: bool) -> list[QmpStep]:
    """A secondary's ``failover`` steps, with :func:`resume_steps` right after
    ``x-colo-lost-heartbeat`` when a translator is spliced (frames pass untranslated only
    between those two commands)."""
    if not spliced:
        return list(failover)
    out: list[QmpStep] = []
    for step in failover:
        out.append(step)
        if step.command == "x-colo-lost-heartbeat":
            out += resume_steps()
    return out


def rewriter_off_steps(rewriter: str = "rew0") -> list[QmpStep]:
    """Switch the promoted side's ``filter-rewriter`` off (docs/rewrite.md, "Limit (3)").

    After ``x-colo-lost-heartbeat`` QEMU's rewriter keeps translating every connection it
    holds a non-zero offset for, garbage ones included: a handshake whose client ACK reached
    it after a checkpoint load holds ``-(ack - 1)``, and the promoted guest answers that
    connection with ``RST seq 1`` for good. Off, it passes frames untouched (``net/filter.c``
    skips a filter whose ``status`` is off) and colopp's translator applies the whole table
    of record, which holds each connection's true offset. Run only once the translator has
    that table (a side without young connections has nothing to lose either way).
    """
    return [
        QmpStep(
            "qom-set",
            {"path": f"/objects/{rewriter}", "property": "status", "value": "off"},
            # A side without a rewriter (never a COLO secondary) must still fail over.
            tolerate=(GENERIC_ERROR, DEVICE_NOT_FOUND),
        )
    ]


def unsplice_steps() -> list[QmpStep]:
    """Remove the translator's filters (diverting pairs first) and chardevs."""
    steps = [QmpStep("object-del", {"id": fid}, tolerate=_GONE) for fid in ("xo0", "xi0")]
    steps += [QmpStep("object-del", {"id": fid}, tolerate=_GONE) for fid in ("xo1", "xi1")]
    steps += [QmpStep("chardev-remove", {"id": cid}, tolerate=_GONE) for cid in CHARDEVS]
    return steps
