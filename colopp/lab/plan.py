"""The lab network as data: names, addresses, veths, bridges and taps.

Pure: nothing here touches the system, so the whole topology is unit-tested without root.
:mod:`colopp.lab.lab` turns a :class:`LabPlan` into namespaces and links.

Topology (``P`` is the prefix, ``colopp`` by default)::

    namespace   interface          address         joined to
    P-client    svc0               198.18.0.20/24  P-sw: svc (port svc-client)
    P-hosta     br0 (svc0,tap-pvm) 198.18.0.10/24  P-sw: svc (port svc-hosta)
                repl0              198.18.1.10/24  P-sw: repl (port repl-hosta)
                mgmt0              198.18.2.10/24  P-sw: mgmt (port mgmt-hosta)
    P-hostb     br0 (svc0,tap-svm) 198.18.0.11/24  P-sw: svc (port svc-hostb)
                repl0              198.18.1.11/24  P-sw: repl (port repl-hostb)
                mgmt0              198.18.2.11/24  P-sw: mgmt (port mgmt-hostb)
    root        P-mgmt             198.18.2.1/24   P-sw: mgmt (port mgmt-root)
    (guest)     behind tap-pvm / tap-svm: 198.18.0.100/24 on both sides
    P-hostc     (three-host lab only: a fleet) .12 on every network, tap-c

The service network also carries IPv6: a unique-local prefix (:data:`SERVICE_V6`,
fd63:6f6c:6f70::/64) with the same host numbers (client ``::20``, hosts ``::10``/``::11``, the
guest ``::100``). Only the service interfaces have IPv6 enabled (no DAD, no router
solicitations); everything else in the lab keeps IPv6 off.

Every cable is a veth pair whose switch end sits in ``P-sw`` and is enslaved to the network's
bridge; cutting a cable means setting that switch end down (the host end then loses carrier,
as with a pulled cable, and keeps its addresses, so restoring needs no reconfiguration).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

from colopp.errors import ConfigError

#: Every lab address lives in the benchmarking range (RFC 2544); nothing routes outside it.
LAB_RANGE = IPv4Network("198.18.0.0/15")

#: Linux interface names hold at most 15 bytes (IFNAMSIZ - 1).
IFNAME_MAX = 15

DEFAULT_PREFIX = "colopp"

#: The root-namespace veth is ``{prefix}-mgmt``, so the prefix may use 15 - 5 bytes.
PREFIX_MAX = IFNAME_MAX - len("-mgmt")

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]*$")

#: The interface in a host namespace that carries the host's service address.
HOST_BRIDGE = "br0"

LOOPBACK = "lo"

NETNS_RUN_DIR = "/var/run/netns"


class Network(StrEnum):
    """The three lab networks; each is one bridge in the switch namespace."""

    SERVICE = "svc"
    REPLICATION = "repl"
    MANAGEMENT = "mgmt"


class Node(StrEnum):
    """The places a cable can end. ``CONTROLLER`` is the root namespace."""

    CLIENT = "client"
    HOST_A = "hosta"
    HOST_B = "hostb"
    HOST_C = "hostc"  # only in a three-host lab (``plan_lab(prefix, hosts=3)``: a fleet)
    CONTROLLER = "root"


SUBNETS: dict[Network, IPv4Network] = {
    Network.SERVICE: IPv4Network("198.18.0.0/24"),
    Network.REPLICATION: IPv4Network("198.18.1.0/24"),
    Network.MANAGEMENT: IPv4Network("198.18.2.0/24"),
}

#: The service network's IPv6 prefix: unique-local (RFC 4193), never routed outside the lab.
SERVICE_V6 = IPv6Network("fd63:6f6c:6f70::/64")

#: Last octet of each node's address on each network it is cabled to.
_HOST_NUMBERS: dict[tuple[Node, Network], int] = {
    (Node.CLIENT, Network.SERVICE): 20,
    (Node.HOST_A, Network.SERVICE): 10,
    (Node.HOST_B, Network.SERVICE): 11,
    (Node.HOST_A, Network.REPLICATION): 10,
    (Node.HOST_B, Network.REPLICATION): 11,
    (Node.HOST_A, Network.MANAGEMENT): 10,
    (Node.HOST_B, Network.MANAGEMENT): 11,
    (Node.CONTROLLER, Network.MANAGEMENT): 1,
    (Node.HOST_C, Network.SERVICE): 12,
    (Node.HOST_C, Network.REPLICATION): 12,
    (Node.HOST_C, Network.MANAGEMENT): 12,
}

#: The hosts of a lab, by how many it has.
LAB_HOSTS: dict[int, tuple[Node, ...]] = {
    2: (Node.HOST_A, Node.HOST_B),
    3: (Node.HOST_A, Node.HOST_B, Node.HOST_C),
}

#: The protected guest keeps one address on both sides (the SVM takes over the PVM's identity).
GUEST_HOST_NUMBER = 100

#: The guest's tap on each host: the PVM's on host A, the SVM's on host B.
_TAP_NAMES: dict[Node, str] = {
    Node.HOST_A: "tap-pvm",
    Node.HOST_B: "tap-svm",
    Node.HOST_C: "tap-c",
}


@dataclass(frozen=True)
class Cable:
    """One veth pair from a network's bridge in the switch namespace to a node.

    ``netns`` is ``None`` for the root namespace. ``address`` lives on ``address_ifname``:
    the veth itself, or the node's local bridge when ``node_bridge`` is set (hosts join
    their service veth and the guest tap on ``br0``).
    """

    network: Network
    node: Node
    netns: str | None
    switch_port: str
    node_ifname: str
    node_bridge: str | None
    address: IPv4Interface
    #: The IPv6 address on the same interface (service cables only).
    address6: IPv6Interface | None = None

    @property
    def address_ifname(self) -> str:
        """The interface that carries :attr:`address`."""
        return self.node_bridge if self.node_bridge is not None else self.node_ifname


@dataclass(frozen=True)
class TapPlan:
    """A persistent tap for a guest NIC, enslaved to the host's local bridge."""

    node: Node
    netns: str
    ifname: str
    bridge: str


@dataclass(frozen=True)
class LabPlan:
    """The whole lab: namespaces, bridges, cables and taps. Build it with :func:`plan_lab`."""

    prefix: str
    switch_netns: str
    node_netns: tuple[tuple[Node, str], ...]
    bridges: tuple[Network, ...]
    cables: tuple[Cable, ...]
    taps: tuple[TapPlan, ...]
    guest_address: IPv4Interface
    guest_address6: IPv6Interface

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace the lab creates, switch first."""
        return (self.switch_netns, *(netns for _, netns in self.node_netns))

    @property
    def root_links(self) -> tuple[str, ...]:
        """The interfaces the lab puts in the root namespace (the management uplink)."""
        return tuple(c.node_ifname for c in self.cables if c.netns is None)

    def netns(self, node: Node) -> str:
        """The namespace of ``node``; raises :class:`ConfigError` for the root namespace."""
        for candidate, netns in self.node_netns:
            if candidate == node:
                return netns
        raise ConfigError(f"{node} has no lab namespace")

    def cable(self, node: Node, network: Network) -> Cable:
        """The cable from ``network`` to ``node``; raises :class:`ConfigError` if none."""
        for cable in self.cables:
            if cable.node == node and cable.network == network:
                return cable
        raise ConfigError(f"{node} is not cabled to the {network} network")

    def cables_of(self, node: Node) -> tuple[Cable, ...]:
        """Every cable ending at ``node``."""
        return tuple(c for c in self.cables if c.node == node)

    def address(self, node: Node, network: Network) -> IPv4Address:
        """The address of ``node`` on ``network`` (no prefix length)."""
        return self.cable(node, network).address.ip

    def address6(self, node: Node) -> IPv6Interface:
        """The IPv6 address of ``node`` on the service network (with its prefix length)."""
        address = self.cable(node, Network.SERVICE).address6
        if address is None:
            raise ConfigError(f"{node} has no IPv6 service address")
        return address

    def tap(self, node: Node) -> TapPlan:
        """The guest tap planned on host ``node``."""
        for tap in self.taps:
            if tap.node == node:
                return tap
        raise ConfigError(f"{node} has no guest tap")


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can name lab namespaces and links, else raise ConfigError."""
    if not _PREFIX_RE.match(prefix) or len(prefix) > PREFIX_MAX:
        raise ConfigError(
            f"lab prefix {prefix!r} must be 1-{PREFIX_MAX} lowercase letters or digits,"
            " starting with a letter"
        )
    return prefix


def _address(node: Node, network: Network) -> IPv4Interface:
    subnet = SUBNETS[network]
    ip = subnet.network_address + _HOST_NUMBERS[(node, network)]
    return ipaddress.IPv4Interface(f"{ip}/{subnet.prefixlen}")


def _address6(host_number: int) -> IPv6Interface:
    # The IPv4 host number written in hex digits (::20, ::10, ::100): easy to read side by side.
    ip = SERVICE_V6.network_address + int(str(host_number), 16)
    return IPv6Interface(f"{ip}/{SERVICE_V6.prefixlen}")


def plan_lab(prefix: str = DEFAULT_PREFIX, hosts: int = 2) -> LabPlan:
    """Plan the lab for ``prefix`` with ``hosts`` host namespaces (2, or 3 for a fleet:
    host C at .12 on every network, tap ``tap-c``).

    Raises:
        ConfigError: a bad prefix or host count.
    """
    check_prefix(prefix)
    if hosts not in LAB_HOSTS:
        raise ConfigError(f"a lab has {' or '.join(map(str, LAB_HOSTS))} hosts, not {hosts}")
    node_netns = {node: f"{prefix}-{node}" for node in (Node.CLIENT, *LAB_HOSTS[hosts])}
    cables = []
    for (node, network), number in _HOST_NUMBERS.items():
        if node is not Node.CONTROLLER and node not in node_netns:
            continue
        on_host = node in _TAP_NAMES
        cables.append(
            Cable(
                network=network,
                node=node,
                netns=node_netns.get(node),
                switch_port=f"{network}-{node}",
                node_ifname=f"{prefix}-mgmt" if node is Node.CONTROLLER else f"{network}0",
                node_bridge=HOST_BRIDGE if on_host and network is Network.SERVICE else None,
                address=_address(node, network),
                address6=(_address6(number) if network is Network.SERVICE else None),
            )
        )
    taps = tuple(
        TapPlan(node=node, netns=node_netns[node], ifname=ifname, bridge=HOST_BRIDGE)
        for node, ifname in _TAP_NAMES.items()
        if node in node_netns
    )
    guest_ip = SUBNETS[Network.SERVICE].network_address + GUEST_HOST_NUMBER
    return LabPlan(
        prefix=prefix,
        switch_netns=f"{prefix}-sw",
        node_netns=tuple(node_netns.items()),
        bridges=tuple(Network),
        cables=tuple(cables),
        taps=taps,
        guest_address=IPv4Interface(f"{guest_ip}/{SUBNETS[Network.SERVICE].prefixlen}"),
        guest_address6=_address6(GUEST_HOST_NUMBER),
    )


def netns_argv(netns: str, argv: list[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``netns`` (``ip netns exec``)."""
    return ["ip", "netns", "exec", netns, *argv]


def ns_path(netns: str) -> str:
    """The bind-mount path of a named namespace, as ``ip netns`` and pyroute2 use it."""
    return f"{NETNS_RUN_DIR}/{netns}"
