"""What the secondary host's relay (:mod:`colopp.ingress.relay`) is told: its four ends and
the switches of its parts (receipts, ACK gate, window pacing, write fence, coalescing)."""

from __future__ import annotations

from dataclasses import dataclass

from colopp.compare.addresses import Endpoint
from colopp.ingress.log import DEFAULT_MAX_BYTES

#: Least seconds between two receipt writes of their own (after client frames): an upload
#: brings a few client frames per read, thousands of reads a second, and each receipt
#: write costs host B a send through the network stack and host A a comparator wake-up.
#: Receipts after guest frames ride in the guest frames' write, at no extra cost.
RECEIPT_INTERVAL_S = 0.001


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """The four ends of the two streams (:mod:`colopp.compare.addresses` syntax)."""

    mirror_from: Endpoint
    mirror_to: Endpoint
    output_from: Endpoint
    output_to: Endpoint
    vnet_hdr: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Follow guest frames with the receipts they made possible (False: the gate only).
    receipts: bool = True
    #: Least seconds between receipt writes of their own (0: after every client read).
    receipt_interval: float = RECEIPT_INTERVAL_S
    #: A client frame that acknowledges more than the secondary sent goes on at once with
    #: its ACK lowered (the client's own ACK follows once the secondary caught up); False:
    #: it waits (at most 0.2 s), and those behind it on its connection (``ackgate.py``).
    gate_lowering: bool = True
    #: Hold client segments past the secondary guest's window until it opens
    #: (:mod:`~colopp.ingress.pacing`); False: forward them as they come.
    window_pacing: bool = True
    #: The read rule of pre-release (path prefixes, RESP ports, HTTP methods): a client's
    #: write waits until the secondary guest answered the reads before it
    #: (:mod:`~colopp.ingress.fence`). Neither prefixes nor ports: no fence.
    read_prefixes: tuple[str, ...] = ()
    resp_ports: tuple[int, ...] = ()
    read_methods: tuple[str, ...] = ("GET", "HEAD")
    #: The comparator's pre-release scope: ``key`` lets the fence look at resources.
    read_scope: str = "global"
    #: Send the comparator the guest's output coalesced (:mod:`~colopp.ingress.coalesce`:
    #: runs of one connection's segments as one); False: every frame as it came.
    coalesce: bool = True
