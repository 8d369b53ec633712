"""Send the secondary guest's kept output to the client at a promotion (I/O of
:mod:`colopp.ingress.keep`).

The frames go out on the bridge the guest's tap is on, as if the promoted guest had sent
them again: an ``AF_PACKET`` socket on the bridge device, which forwards them to the port
the client is behind. The socket takes a virtio-net header before each frame
(``PACKET_VNET_HDR``), the one QEMU gave the frame when it has one: a frame whose checksum
the guest left to the NIC, or a TCP super-frame, is finished by the host's kernel as QEMU's
tap would have. Needs CAP_NET_RAW, in the tap's network namespace.
"""

from __future__ import annotations

import logging
import socket

from colopp.errors import ColoppError
from colopp.lab.netlink import Rtnl

log = logging.getLogger(__name__)

#: ``setsockopt(SOL_PACKET, PACKET_VNET_HDR)`` (linux/if_packet.h).
PACKET_VNET_HDR = 15
#: ``struct virtio_net_hdr``: what a packet socket takes (QEMU's may be 12 bytes: the
#: first 10 are the same).
VNET_HDR_LEN = 10
_SOL_PACKET = 263
#: ``off`` in the environment (the agent's, which its relay inherits): the kept output is
#: not sent at promotion, left to the guest's own timer (side-by-side failover runs).
RESEND_ENV = "COLOPP_INGRESS_RESEND"


def bridge_of(tap: str) -> str:
    """The bridge ``tap`` is a port of.

    Raises:
        OSError: no such interface, or it is on no bridge.
    """
    try:
        with Rtnl(None) as rtnl:
            bridge = rtnl.master_of(tap)
    except ColoppError as exc:
        raise OSError(str(exc)) from exc
    if bridge is None:
        raise OSError(f"{tap} is on no bridge")
    return bridge


def with_vnet_header(frame: bytes, vnet: int) -> bytes:
    """``frame`` (its QEMU vnet header of ``vnet`` bytes first) as a packet socket with
    ``PACKET_VNET_HDR`` takes it (pure)."""
    header = frame[:VNET_HDR_LEN] if vnet >= VNET_HDR_LEN else bytes(VNET_HDR_LEN)
    return header + frame[vnet:]


def send_to_client(tap: str, frames: list[tuple[bytes, int]]) -> int:
    """Send ``frames`` ((frame, vnet header length), in order) out of ``tap``'s bridge;
    returns how many went. Never raises: what does not go is left to the guest's own
    retransmission (logged)."""
    if not frames:
        return 0
    try:
        bridge = bridge_of(tap)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: send only
    except OSError as exc:
        log.warning("no resend of %d guest frames: %s", len(frames), exc)
        return 0
    sent = 0
    try:
        sock.setsockopt(_SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.bind((bridge, 0))
        for frame, vnet in frames:
            sock.send(with_vnet_header(frame, vnet))
            sent += 1
    except OSError as exc:
        log.warning("resent %d of %d guest frames on %s: %s", sent, len(frames), bridge, exc)
    finally:
        sock.close()
    return sent
