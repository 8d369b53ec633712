"""Per-protection slots of one agent: ports, taps, run directories; routing by protection."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from colopp.agent.allocator import Allocator, SlotTable
from colopp.agent.protections import ProtectionRouter
from colopp.agent.server import AgentServer
from colopp.controller.agent_client import AgentClient
from colopp.errors import ConfigError


def test_each_protection_gets_its_own_ports_tap_and_run_dir(tmp_path: Path) -> None:
    table = SlotTable(tmp_path)
    web, db = table.allocate("web"), table.allocate("db")
    assert (web.slot, db.slot) == (0, 1)
    assert web.ports.to_dict() == {"mirror": 9100, "compare": 9101, "nbd": 9102, "migration": 9103}
    assert db.ports.mirror == 9104
    assert (web.tap, db.tap) == ("cpp0", "cpp1")
    assert web.run_dir == tmp_path / "protections/web" != db.run_dir
    assert table.allocate("web") == web  # idempotent
    table.release("web")
    assert table.allocate("mail").slot == 0  # the freed slot is reused
    assert table.release("nothing") is None


@pytest.mark.parametrize("name", ["", "Web", "../etc", "a" * 40, "web/x", None])
def test_bad_protection_names_are_refused(tmp_path: Path, name: Any) -> None:
    with pytest.raises(ConfigError, match="protection name"):
        SlotTable(tmp_path).allocate(name)


def test_a_full_host_refuses_one_more(tmp_path: Path) -> None:
    table = SlotTable(tmp_path, slots=2)
    table.allocate("a")
    table.allocate("b")
    with pytest.raises(ConfigError, match="all 2 protection slots"):
        table.allocate("c")


@pytest.mark.parametrize(
    ("options", "words"),
    [({"base_port": 80}, "port block"), ({"base_port": 65500}, "port block"),
     ({"tap_prefix": "Bad!"}, "tap prefix"), ({"tap_prefix": "a-very-long-prefix"}, "tap prefix")],
)  # fmt: skip
def test_bad_tables_are_refused(tmp_path: Path, options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        SlotTable(tmp_path, **options)


def test_slots_survive_an_agent_restart_and_release_removes_the_run_dir(tmp_path: Path) -> None:
    first = Allocator(tmp_path)
    web = first.allocate("web")
    first.allocate("db")
    (web.run_dir / "qmp.sock").write_text("")
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(web.run_dir.stat().st_mode) == 0o700
    again = Allocator(tmp_path)
    assert again.allocate("db").slot == 1 and again.allocate("web") == web
    again.release("web")
    assert not web.run_dir.exists()
    assert json.loads(again.path.read_text()) == {"db": 1}


@pytest.mark.parametrize("content", ["[", "[1]", '{"web": "0"}', '{"web": 0, "db": 0}'])
def test_a_damaged_allocation_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "allocations.json").write_text(content)
    with pytest.raises(ConfigError, match="allocations"):
        Allocator(tmp_path)


class FakeSide:
    """A per-protection agent that records what it was asked."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.role: str | None = None
        self.stopped = False

    async def launch(self, role: str) -> dict[str, Any]:
        self.role = role
        return {"pid": 1, "run_dir": str(self.state_dir)}

    async def status(self) -> dict[str, Any]:
        return {"vm_alive": self.role is not None, "role": self.role}

    async def stop_vm(self) -> dict[str, Any]:
        self.stopped = True
        return {}


def test_one_agent_is_primary_for_one_protection_and_secondary_for_another(
    tmp_path: Path,
) -> None:
    default = FakeSide(tmp_path)
    router = ProtectionRouter(
        default,
        FakeSide,
        lambda side: {"launch": side.launch, "status": side.status},  # type: ignore[attr-defined]
        Allocator(tmp_path),
    )

    async def body() -> None:
        server = AgentServer("secret", router.methods(("launch", "status")))
        await server.start("127.0.0.1", 0)
        client = AgentClient("hosta", "127.0.0.1", server.ports[0], "secret")
        try:
            web = await client.call("allocate", protection="web")
            db = await client.call("allocate", protection="db")
            assert web["ports"] != db["ports"] and web["tap"] != db["tap"]
            await client.call("launch", protection="web", role="primary")
            await client.call("launch", protection="db", role="secondary")
            assert (await client.call("status", protection="web"))["role"] == "primary"
            assert (await client.call("status", protection="db"))["role"] == "secondary"
            assert (await client.call("status"))["role"] is None  # the default side
            with pytest.raises(ConfigError, match="no allocation on this host"):
                await client.call("status", protection="mail")
            db_side = router.sides["db"]
            assert await client.call("release", protection="db") == {"released": True}
            assert db_side.stopped and not Path(db["run_dir"]).exists()  # type: ignore[attr-defined]
            assert Path(web["run_dir"]).is_dir()
        finally:
            await client.close()
            await server.close()

    asyncio.run(body())


def test_a_fleet_slot_is_taken_as_given_and_conflicts_are_refused(tmp_path: Path) -> None:
    table = SlotTable(tmp_path)
    web = table.allocate("web", slot=5)
    assert (web.slot, web.tap, web.ports.mirror) == (5, "cpp5", 9120)
    assert table.allocate("web") == web == table.allocate("web", slot=5)
    assert table.allocate("db").slot == 0  # without a slot: the lowest free one
    with pytest.raises(ConfigError, match="slot 5 is held by protection web"):
        table.allocate("mail", slot=5)
    with pytest.raises(ConfigError, match="holds slot 5 here, not 6"):
        table.allocate("web", slot=6)
    assert "mail" not in table.taken  # nothing half-allocated


@pytest.mark.parametrize("slot", [-1, 64, True, "3", 1.0])
def test_bad_slots_are_refused(tmp_path: Path, slot: Any) -> None:
    with pytest.raises(ConfigError, match="slot"):
        SlotTable(tmp_path).allocate("web", slot=slot)
