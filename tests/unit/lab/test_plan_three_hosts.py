"""A three-host lab (a fleet's) adds host C and leaves the two-host lab as it was."""

from __future__ import annotations

import pytest

from colopp.errors import ConfigError
from colopp.lab import LAB_HOSTS, Network, Node, plan_lab


def test_the_default_lab_has_no_host_c() -> None:
    plan = plan_lab("t")
    assert plan.namespaces == ("t-sw", "t-client", "t-hosta", "t-hostb")
    assert not plan.cables_of(Node.HOST_C)
    with pytest.raises(ConfigError):
        plan.tap(Node.HOST_C)


def test_a_three_host_lab_cables_host_c_on_every_network() -> None:
    plan = plan_lab("t", hosts=3)
    assert plan.netns(Node.HOST_C) == "t-hostc"
    for network in Network:
        assert str(plan.address(Node.HOST_C, network)).endswith(".12")
    assert str(plan.address6(Node.HOST_C).ip) == "fd63:6f6c:6f70::12"
    assert plan.tap(Node.HOST_C).ifname == "tap-c"
    two = plan_lab("t")
    assert set(two.cables) < set(plan.cables)  # host A, B and the client unchanged
    assert LAB_HOSTS[3] == (Node.HOST_A, Node.HOST_B, Node.HOST_C)


@pytest.mark.parametrize("hosts", [1, 4, 0])
def test_other_host_counts_are_refused(hosts: int) -> None:
    with pytest.raises(ConfigError, match="a lab has 2 or 3 hosts"):
        plan_lab("t", hosts=hosts)
