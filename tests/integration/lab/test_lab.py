"""The lab network against the real kernel: namespaces, bridges, veths, taps, cut cables.

Needs root. Uses its own prefixes (``clptest*``) so a running demo lab is left alone.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from colopp.demo.harness import lab_forwarding
from colopp.demo.lab_report import lab_traffic
from colopp.errors import LabError, StateError
from colopp.lab import Lab, LabPlan, Network, Node, netns_argv, plan_lab
from colopp.lab.netlink import Rtnl, list_namespaces

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's ip for netns exec"),
]

PREFIX = "clptest"
DEADLINE_S = 10.0

# Without iputils' ping, a TCP connect to a closed port proves reachability too: the peer's
# kernel answers with a RST (connection refused); silence means it is cut off.
_TCP_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=float(sys.argv[2])).close()
except ConnectionRefusedError:
    pass
"""


def probe_argv(address: IPv4Address | IPv6Address, wait_s: int) -> list[str]:
    if shutil.which("ping"):
        return ["ping", "-c1", f"-W{wait_s}", "-n", str(address)]
    return [sys.executable, "-c", _TCP_PROBE, str(address), str(wait_s)]


def reaches(netns: str | None, address: IPv4Address | IPv6Address, wait_s: int = 2) -> bool:
    argv = probe_argv(address, wait_s)
    if netns is not None:
        argv = netns_argv(netns, argv)
    return (
        subprocess.run(argv, check=False, capture_output=True, timeout=wait_s + 5).returncode == 0
    )


def wait_reachable(
    netns: str | None, address: IPv4Address | IPv6Address, expected: bool = True
) -> None:
    """Poll until ``address`` is (or is no longer) reachable from ``netns``, or fail."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if reaches(netns, address, wait_s=1) == expected:
            return
    state = "reachable" if expected else "unreachable"
    pytest.fail(f"{address} not {state} from {netns or 'root'} within {DEADLINE_S}s")


def lab_leftovers(prefix: str) -> tuple[list[str], list[str]]:
    namespaces = [n for n in list_namespaces() if n.startswith(f"{prefix}-")]
    with Rtnl(None) as root:
        links = [n for n in root.link_names() if n.startswith(f"{prefix}-")]
    return namespaces, links


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab.create(plan_lab(PREFIX)) as created:
        yield created
    assert lab_leftovers(PREFIX) == ([], [])


@pytest.fixture
def plan(lab: Lab) -> LabPlan:
    return lab.plan


def test_client_reaches_both_hosts_on_the_service_network(plan: LabPlan) -> None:
    client = plan.netns(Node.CLIENT)
    wait_reachable(client, plan.address(Node.HOST_A, Network.SERVICE))
    wait_reachable(client, plan.address(Node.HOST_B, Network.SERVICE))


def test_a_stuck_workload_report_shows_where_the_lab_forwards_frames(plan: LabPlan) -> None:
    """``lab_forwarding`` (in ``WorkloadStuck``'s message): the switch's learned MACs and the
    client's neighbours once the client has talked to a host; a namespace that is gone is
    reported, not raised."""
    client = plan.netns(Node.CLIENT)
    host_a = plan.address(Node.HOST_A, Network.SERVICE)
    wait_reachable(client, host_a)
    lines = lab_forwarding(plan)
    assert any(line.startswith(f"{plan.switch_netns} bridge: ") for line in lines), lines
    assert any(line.startswith(f"{client} ip: {host_a} ") for line in lines), lines
    gone = dataclasses.replace(plan, switch_netns=f"{PREFIX}-gone")
    assert any(line.startswith(f"{PREFIX}-gone bridge: exit ") for line in lab_forwarding(gone)), (
        lab_forwarding(gone)
    )


def test_a_stuck_workload_report_shows_what_moved_where(plan: LabPlan) -> None:
    """``lab_traffic`` (in ``WorkloadStuck``'s message): every namespace's interfaces with
    what they received and sent over the window; a namespace that is gone says so."""
    lines = lab_traffic(plan, interval=0.2)
    for netns in plan.namespaces:
        assert any(line.startswith(f"{netns} ") and " packets" in line for line in lines), lines
    gone = dataclasses.replace(plan, switch_netns=f"{PREFIX}-gone")
    assert any(line.startswith(f"{PREFIX}-gone ip: exit ") for line in lab_traffic(gone, 0.0))


def test_service_network_carries_ipv6_and_only_it(plan: LabPlan) -> None:
    client = plan.netns(Node.CLIENT)
    wait_reachable(client, plan.address6(Node.HOST_A).ip)
    wait_reachable(client, plan.address6(Node.HOST_B).ip)
    host_a = plan.netns(Node.HOST_A)
    for ifname, enabled in (("br0", "0"), ("repl0", "1"), ("mgmt0", "1"), ("tap-pvm", "1")):
        argv = netns_argv(host_a, ["cat", f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"])
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        assert out.strip() == enabled, ifname


def test_root_reaches_the_hosts_on_the_management_network(plan: LabPlan) -> None:
    wait_reachable(None, plan.address(Node.HOST_A, Network.MANAGEMENT))
    wait_reachable(None, plan.address(Node.HOST_B, Network.MANAGEMENT))


def test_root_reaches_a_host_agent_by_tcp(plan: LabPlan) -> None:
    host_a = plan.address(Node.HOST_A, Network.MANAGEMENT)
    agent = (
        "import socket, sys\n"
        "server = socket.create_server((sys.argv[1], 0))\n"
        "print(server.getsockname()[1], flush=True)\n"
        "conn, _ = server.accept(); conn.sendall(b'agent'); conn.close()\n"
    )
    argv = netns_argv(plan.netns(Node.HOST_A), [sys.executable, "-c", agent, str(host_a)])
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            with socket.create_connection((str(host_a), port), timeout=DEADLINE_S) as conn:
                assert conn.recv(16) == b"agent"
            assert server.wait(timeout=DEADLINE_S) == 0
        finally:
            server.kill()


def test_hosts_reach_each_other_on_replication(plan: LabPlan) -> None:
    wait_reachable(plan.netns(Node.HOST_A), plan.address(Node.HOST_B, Network.REPLICATION))
    wait_reachable(plan.netns(Node.HOST_B), plan.address(Node.HOST_A, Network.REPLICATION))


def test_guest_taps_are_persistent_plain_taps_on_br0(plan: LabPlan) -> None:
    for node in (Node.HOST_A, Node.HOST_B):
        tap = plan.tap(node)
        with Rtnl(tap.netns) as host:
            assert host.master_of(tap.ifname) == "br0"
            assert host.is_up(tap.ifname)
            info = host.link_info(tap.ifname)
            assert info["kind"] == "tun"
            assert info["IFLA_TUN_TYPE"] == 2  # IFF_TAP
            assert info["IFLA_TUN_PERSIST"] == 1
            assert info["IFLA_TUN_VNET_HDR"] == 0
            assert info["IFLA_TUN_MULTI_QUEUE"] == 0
            assert info["IFLA_TUN_OWNER"] == 0


def test_cut_and_restore_the_replication_link(lab: Lab, plan: LabPlan) -> None:
    host_a = plan.netns(Node.HOST_A)
    host_b_repl = plan.address(Node.HOST_B, Network.REPLICATION)
    wait_reachable(host_a, host_b_repl)
    lab.set_link(Node.HOST_B, Network.REPLICATION, up=False)
    try:
        assert not reaches(host_a, host_b_repl, wait_s=1)
        # The other networks are untouched by a replication partition.
        wait_reachable(host_a, plan.address(Node.HOST_B, Network.MANAGEMENT))
    finally:
        lab.set_link(Node.HOST_B, Network.REPLICATION, up=True)
    wait_reachable(host_a, host_b_repl)


def test_a_dead_host_drops_off_every_network(lab: Lab, plan: LabPlan) -> None:
    client = plan.netns(Node.CLIENT)
    host_b_service = plan.address(Node.HOST_B, Network.SERVICE)
    wait_reachable(client, host_b_service)
    lab.set_node_links(Node.HOST_B, up=False)
    try:
        assert not reaches(client, host_b_service, wait_s=1)
        assert not reaches(None, plan.address(Node.HOST_B, Network.MANAGEMENT), wait_s=1)
    finally:
        lab.set_node_links(Node.HOST_B, up=True)
    wait_reachable(client, host_b_service)
    wait_reachable(None, plan.address(Node.HOST_B, Network.MANAGEMENT))


def test_taps_can_be_replaced(lab: Lab, plan: LabPlan) -> None:
    netns = plan.netns(Node.HOST_B)
    lab.add_tap(Node.HOST_B, "tap-svm2")
    with Rtnl(netns) as host:
        assert host.master_of("tap-svm2") == "br0"
    lab.delete_tap(Node.HOST_B, "tap-svm2")
    lab.delete_tap(Node.HOST_B, "tap-svm2")  # already gone: not an error
    with Rtnl(netns) as host:
        assert "tap-svm2" not in host.link_names()
        assert "tap-svm" in host.link_names()
    # The host's service MAC is pinned, so peers' ARP caches stay right across tap changes.
    wait_reachable(plan.netns(Node.CLIENT), plan.address(Node.HOST_B, Network.SERVICE))


def test_netlink_errors_become_lab_errors_naming_the_operation(lab: Lab) -> None:
    with pytest.raises(LabError, match="tap tap-pvm already exists"):
        lab.add_tap(Node.HOST_A, "tap-pvm")
    with Rtnl(lab.plan.netns(Node.HOST_A)) as host, pytest.raises(LabError) as caught:
        host.add_bridge("br0")
    assert "create bridge br0" in str(caught.value)
    assert caught.value.__cause__ is not None


def test_destroy_leaves_nothing_and_is_idempotent() -> None:
    prefix = "clptestd"
    lab = Lab.create(plan_lab(prefix))
    assert lab_leftovers(prefix) == (sorted(lab.plan.namespaces), [f"{prefix}-mgmt"])
    lab.destroy()
    assert lab_leftovers(prefix) == ([], [])
    lab.destroy()
    with pytest.raises(StateError):
        lab.set_link(Node.HOST_A, Network.REPLICATION, up=False)


def test_create_again_after_a_crash_cleans_up_and_works() -> None:
    prefix = "clptestr"
    plan = plan_lab(prefix)
    Lab.create(plan).abandon()  # "crashes": never destroyed
    with Lab.create(plan):
        assert lab_leftovers(prefix) == (sorted(plan.namespaces), [f"{prefix}-mgmt"])
        wait_reachable(plan.netns(Node.CLIENT), plan.address(Node.HOST_A, Network.SERVICE))
        wait_reachable(None, plan.address(Node.HOST_B, Network.MANAGEMENT))
    assert lab_leftovers(prefix) == ([], [])
