"""The pool's configuration and fleet slots: validated, the same ports as the agents'."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from colopp.agent.allocator import SlotTable
from colopp.errors import ConfigError
from colopp.fleet.pool import (
    PoolMember,
    check_members,
    fleet_slot,
    host_slot,
    parse_pool,
    slot_ports,
)

THREE = [
    {"name": "hosta", "address": "198.18.2.10", "repl_ip": "198.18.1.10"},
    {"name": "hostb", "address": "198.18.2.11", "repl_ip": "198.18.1.11", "port": 7401},
    {"name": "hostc", "address": "fd00::12", "slots": 4},
]


def test_a_pool_parses_with_defaults() -> None:
    pool = parse_pool(json.dumps(THREE))
    assert [m.name for m in pool] == ["hosta", "hostb", "hostc"]
    assert pool[1].port == 7401 and pool[0].port == 7400
    assert pool[2].repl_ip == "fd00::12" and pool[2].slots == 4  # repl_ip defaults to address
    assert [PoolMember.from_dict(m.to_dict()) for m in pool] == pool


def changed(index: int, **fields: Any) -> list[dict[str, Any]]:
    hosts = [dict(h) for h in THREE]
    hosts[index] |= fields
    return hosts


@pytest.mark.parametrize(
    ("hosts", "words"),
    [
        (THREE[:2], "at least 3 hosts"),
        (changed(0, name="Host A"), "pool host name"),
        (changed(0, name="../x"), "pool host name"),
        (changed(0, name=None), "pool host name"),
        (changed(1, name="hosta"), "distinct name"),
        (changed(1, address="198.18.2.10"), "distinct address"),
        (changed(2, address="not-an-ip"), "not an IP address"),
        (changed(2, address=12), "must be an IP address"),
        (changed(0, port=0), "port"),
        (changed(0, port="7400"), "port"),
        (changed(0, port=True), "port"),
        (changed(0, slots=0), "slots"),
        (changed(0, shell="rm -rf /"), "unknown fields"),
        ([*THREE[:2], "hostc"], "must be an object"),
    ],
)
def test_bad_pools_are_clear_errors(hosts: list[Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_pool(json.dumps(hosts))


@pytest.mark.parametrize(("text", "words"), [("{", "not JSON"), ('{"a": 1}', "JSON list")])
def test_pool_text_that_is_not_a_list_is_refused(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_pool(text)


def test_check_members_takes_a_smaller_minimum() -> None:
    two = [PoolMember.from_dict(h) for h in THREE[:2]]
    assert check_members(two, minimum=2) == two


def test_fleet_slots_are_the_lowest_free_and_match_the_agents_allocation(tmp_path: Path) -> None:
    assert fleet_slot([]) == 0
    assert fleet_slot([0, 1, 3]) == 2
    with pytest.raises(ConfigError, match="all 2 fleet slots"):
        fleet_slot([0, 1], slots=2)
    table = SlotTable(tmp_path)
    for slot in (0, 1, 7, 63):
        given = table.allocate(f"p{slot}", slot=slot)
        assert given.ports == slot_ports(slot)
        member = PoolMember("hosta", "198.18.2.10", "198.18.1.10")
        assert host_slot(member, slot).tap == given.tap
        assert host_slot(member, slot).repl_ip == "198.18.1.10"
