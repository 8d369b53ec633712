"""Which other labs a new lab removes: only those holding its management address."""

from __future__ import annotations

from colopp.lab.lab import foreign_labs

CLAIMED = "198.18.2.1"


def test_a_stale_lab_on_the_same_address_is_foreign() -> None:
    links = {"clpadp-mgmt": [CLAIMED, "fe80::1"], "clpnew-mgmt": []}
    assert foreign_labs(links, "clpnew", CLAIMED) == ["clpadp"]


def test_the_own_lab_and_labs_on_other_addresses_are_kept() -> None:
    links = {"clpnew-mgmt": [CLAIMED], "f21sw-mgmt": ["198.19.21.1"], "eth0": [CLAIMED]}
    assert foreign_labs(links, "clpnew", CLAIMED) == []


def test_links_that_are_not_uplinks_are_ignored() -> None:
    links = {"mgmt": [CLAIMED], "x-mgmt0": [CLAIMED], "a-b-mgmt": [CLAIMED]}
    assert foreign_labs(links, "clpnew", CLAIMED) == ["a-b"]
