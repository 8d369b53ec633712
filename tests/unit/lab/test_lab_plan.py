"""The lab plan is pure data: names fit the kernel's limits, addresses stay in the lab range."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colopp.errors import ConfigError
from colopp.lab import (
    LAB_RANGE,
    LabPlan,
    Network,
    Node,
    netns_argv,
    ns_path,
    plan_lab,
)
from colopp.lab.plan import IFNAME_MAX, PREFIX_MAX, SERVICE_V6

valid_prefixes = st.from_regex(rf"\A[a-z][a-z0-9]{{0,{PREFIX_MAX - 1}}}\Z")


def all_ifnames(plan: LabPlan) -> list[str]:
    names = [network.value for network in plan.bridges]
    for cable in plan.cables:
        names += [cable.switch_port, cable.node_ifname]
        if cable.node_bridge is not None:
            names.append(cable.node_bridge)
    names += [tap.ifname for tap in plan.taps]
    return names


@given(valid_prefixes)
def test_every_interface_name_fits_ifnamsiz(prefix: str) -> None:
    plan = plan_lab(prefix)
    for name in all_ifnames(plan):
        assert 0 < len(name) <= IFNAME_MAX, name


@given(valid_prefixes)
def test_namespaces_and_root_links_carry_the_prefix(prefix: str) -> None:
    plan = plan_lab(prefix)
    assert plan.namespaces == (
        f"{prefix}-sw",
        f"{prefix}-client",
        f"{prefix}-hosta",
        f"{prefix}-hostb",
    )
    assert plan.root_links == (f"{prefix}-mgmt",)


def test_addresses_are_inside_the_lab_range_and_unique() -> None:
    plan = plan_lab()
    addresses = [cable.address for cable in plan.cables] + [plan.guest_address]
    for address in addresses:
        assert address.ip in LAB_RANGE
        assert address.network.subnet_of(LAB_RANGE)
    assert len({a.ip for a in addresses}) == len(addresses)


def test_interface_names_are_unique_per_namespace() -> None:
    plan = plan_lab()
    switch_ports = [cable.switch_port for cable in plan.cables]
    assert len(set(switch_ports)) == len(switch_ports)
    for netns in plan.namespaces[1:]:
        names = [c.node_ifname for c in plan.cables if c.netns == netns]
        names += [t.ifname for t in plan.taps if t.netns == netns]
        assert len(set(names)) == len(names), netns


def test_address_table() -> None:
    plan = plan_lab()
    expected = {
        (Node.CLIENT, Network.SERVICE): "198.18.0.20/24",
        (Node.HOST_A, Network.SERVICE): "198.18.0.10/24",
        (Node.HOST_B, Network.SERVICE): "198.18.0.11/24",
        (Node.HOST_A, Network.REPLICATION): "198.18.1.10/24",
        (Node.HOST_B, Network.REPLICATION): "198.18.1.11/24",
        (Node.HOST_A, Network.MANAGEMENT): "198.18.2.10/24",
        (Node.HOST_B, Network.MANAGEMENT): "198.18.2.11/24",
        (Node.CONTROLLER, Network.MANAGEMENT): "198.18.2.1/24",
    }
    assert {(c.node, c.network): str(c.address) for c in plan.cables} == expected
    assert plan.guest_address == IPv4Interface("198.18.0.100/24")
    assert plan.address(Node.HOST_B, Network.REPLICATION) == IPv4Address("198.18.1.11")


def test_hosts_carry_their_service_address_on_br0_with_the_guest_tap() -> None:
    plan = plan_lab()
    for node, tap_name in ((Node.HOST_A, "tap-pvm"), (Node.HOST_B, "tap-svm")):
        service = plan.cable(node, Network.SERVICE)
        assert service.node_bridge == "br0"
        assert service.address_ifname == "br0"
        tap = plan.tap(node)
        assert (tap.ifname, tap.bridge, tap.netns) == (tap_name, "br0", plan.netns(node))
        assert plan.cable(node, Network.REPLICATION).address_ifname == "repl0"


def test_management_uplink_lives_in_the_root_namespace() -> None:
    cable = plan_lab("demo").cable(Node.CONTROLLER, Network.MANAGEMENT)
    assert cable.netns is None
    assert cable.node_ifname == "demo-mgmt"
    assert cable.switch_port == "mgmt-root"


def test_lookups_reject_what_is_not_planned() -> None:
    plan = plan_lab()
    with pytest.raises(ConfigError):
        plan.cable(Node.CLIENT, Network.REPLICATION)
    with pytest.raises(ConfigError):
        plan.netns(Node.CONTROLLER)
    with pytest.raises(ConfigError):
        plan.tap(Node.CLIENT)


@pytest.mark.parametrize("prefix", ["", "Colopp", "a-b", "1abc", "abcdefghijk", "ab c"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigError):
        plan_lab(prefix)


def test_plan_is_frozen_and_hashable() -> None:
    plan = plan_lab()
    assert plan == plan_lab()
    assert hash(plan) == hash(plan_lab())
    with pytest.raises(AttributeError):
        plan.prefix = "other"  # type: ignore[misc]


def test_netns_argv_and_path() -> None:
    assert netns_argv("colopp-hosta", ["ping", "-c1", "198.18.0.11"]) == [
        "ip",
        "netns",
        "exec",
        "colopp-hosta",
        "ping",
        "-c1",
        "198.18.0.11",
    ]
    assert ns_path("colopp-hosta") == "/var/run/netns/colopp-hosta"


def test_service_network_carries_a_unique_local_ipv6_prefix() -> None:
    plan = plan_lab()
    assert SERVICE_V6.subnet_of(IPv6Network("fc00::/7"))  # unique-local: never routed out
    service = [c for c in plan.cables if c.network is Network.SERVICE]
    others = [c for c in plan.cables if c.network is not Network.SERVICE]
    assert all(c.address6 is not None and c.address6.network == SERVICE_V6 for c in service)
    assert all(c.address6 is None for c in others)
    addresses = [c.address6 for c in service] + [plan.guest_address6]
    assert len({a.ip for a in addresses if a is not None}) == len(addresses)
    assert plan.guest_address6 == IPv6Interface("fd63:6f6c:6f70::100/64")
    assert plan.address6(Node.CLIENT) == IPv6Interface("fd63:6f6c:6f70::20/64")
    with pytest.raises(ConfigError):
        plan.address6(Node.CONTROLLER)
