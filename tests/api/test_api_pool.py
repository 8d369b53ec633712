"""``pool`` placement: the pool in the settings (validated), placement spread over it with
fleet slots, clear refusals; the HTTP view of the pool."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from colopp.controller.pair import PairController
from colopp.controller.seam import ScriptedAgent
from colopp.domain import PairConfig, VmSpec
from colopp.errors import ConfigError
from colopp.fleet.placement import Sides
from colopp.fleet.pool import host_slot
from colopp.fleet.routed import ProtectionAgent
from colopp_api.config import Settings
from colopp_api.db.store import Store, make_engine, migrate
from colopp_api.live.manager import Conflict, ProtectionManager
from colopp_api.live.runner import ProtectionRunner
from colopp_api.schemas import ProtectionCreate
from tests.api.conftest import READ, WRITE, ApiServer
from tests.api.test_api_hostile import HOST_PATHS, hosts_body
from tests.unit.fleet.fleet_sim import sim_pool

POOL = [
    {"name": "hosta", "address": "127.0.0.2", "repl_ip": "198.18.1.10"},
    {"name": "hostb", "address": "127.0.0.3", "repl_ip": "198.18.1.11"},
    {"name": "hostc", "address": "127.0.0.4", "repl_ip": "198.18.1.12"},
]


def pool_body(name: str) -> dict[str, Any]:
    return {"name": name, "placement": "pool", **HOST_PATHS}


def settings(tmp_path: Path, pool: list[dict[str, Any]] | None = POOL) -> Settings:
    env = {"COLOPP_API_STATE_DIR": str(tmp_path), "COLOPP_API_TOKEN": "w"}
    if pool is not None:
        env["COLOPP_POOL"] = json.dumps(pool)
    return Settings.from_env(env)


def test_the_pool_setting_is_parsed_and_bad_pools_name_the_variable(tmp_path: Path) -> None:
    got = settings(tmp_path)
    assert [m.name for m in got.pool] == ["hosta", "hostb", "hostc"]
    assert got.pool[0].port == 7400
    assert settings(tmp_path, None).pool == ()
    for bad, words in [
        (POOL[:2], "at least 3 hosts"),
        ([*POOL[:2], {**POOL[2], "name": "hosta"}], "distinct name"),
        ([*POOL[:2], {**POOL[2], "name": "Host;rm"}], "pool host name"),
        ([*POOL[:2], {**POOL[2], "address": "nowhere"}], "not an IP address"),
    ]:
        with pytest.raises(ConfigError, match=f"COLOPP_POOL.*{words}"):
            settings(tmp_path, bad)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"hosts": hosts_body("web", 7400)["hosts"]}, "drop hosts"),
        ({"backend": "libvirt"}, "backend qemu only"),
        ({"guest": "debian"}, "brings its own VM"),
        ({"base_disk": None}, "needs base_disk"),
    ],
)
def test_bad_pool_bodies_are_refused(extra: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        ProtectionCreate.model_validate(pool_body("web") | extra)


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProtectionManager]:
    got = settings(tmp_path)
    engine = make_engine(got.database_url)
    migrate(engine, got.database_url)
    monkeypatch.setattr(ProtectionRunner, "start_protect", lambda self: None)  # placement only
    made = ProtectionManager(Store(engine), got)
    yield made
    asyncio.run(made.close())


def test_pool_protections_spread_with_their_own_slots_and_both_roles_per_host(
    manager: ProtectionManager,
) -> None:
    async def main() -> list[dict[str, Any]]:
        return [await manager.create(ProtectionCreate(**pool_body(f"vm{i}"))) for i in range(3)]

    rows = asyncio.run(main())
    runtimes = [row["runtime"] for row in rows]
    assert [r["slot"] for r in runtimes] == [0, 1, 2]
    assert [r["sides"] for r in runtimes] == [
        ["hosta", "hostb"],
        ["hostc", "hosta"],
        ["hostb", "hostc"],
    ]
    assert [r["protection"] for r in runtimes] == [f"p{row['id']}" for row in rows]
    assert manager.placed() == {r["protection"]: Sides(*r["sides"]) for r in runtimes}
    for row in rows:
        assert manager.runners[row["id"]].elsewhere == manager.elsewhere


def test_without_a_pool_a_pool_protection_is_a_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = settings(tmp_path, None)
    engine = make_engine(got.database_url)
    migrate(engine, got.database_url)
    made = ProtectionManager(Store(engine), got)
    try:
        with pytest.raises(Conflict, match="COLOPP_POOL"):
            asyncio.run(made.create(ProtectionCreate(**pool_body("web"))))
    finally:
        asyncio.run(made.close())


def test_the_pool_over_http_and_a_refusal_without_a_pool(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    api = ApiServer(tmp_path / "with", database, COLOPP_POOL=json.dumps(POOL))
    bare = ApiServer(tmp_path / "bare", f"sqlite:///{tmp_path / 'bare.sqlite'}")
    try:
        api.start()
        got = httpx.get(f"{api.url}/v1/pool", headers={"Authorization": f"Bearer {READ}"})
        assert got.status_code == 200
        hosts = got.json()["hosts"]
        assert [(h["name"], h["address"], h["sides"]) for h in hosts] == [
            (p["name"], p["address"], []) for p in POOL
        ]
        assert httpx.get(f"{api.url}/v1/pool").status_code == 401
        bare.start()
        refused = httpx.post(
            f"{bare.url}/v1/protections",
            json=pool_body("web"),
            headers={"Authorization": f"Bearer {WRITE}"},
        )
        assert refused.status_code == 422
        assert "placement pool needs COLOPP_POOL" in refused.text
    finally:
        api.kill(signal.SIGTERM)
        bare.kill(signal.SIGTERM)


def test_the_manager_re_protects_a_pool_pair_onto_the_least_loaded_answering_host(
    manager: ProtectionManager,
) -> None:
    members, pool, _ = sim_pool(["hosta", "hostb", "hostc", "hostd"])
    manager.settings = dataclasses.replace(manager.settings, pool=tuple(members))

    async def main() -> None:
        rows = [await manager.create(ProtectionCreate(**pool_body(f"vm{i}"))) for i in range(2)]
        runner = manager.runners[rows[0]["id"]]
        name, slot = runner.runtime["protection"], runner.runtime["slot"]
        agents = {
            m.name: ProtectionAgent(ScriptedAgent(m.name, pool[m.name].answer), name, slot)
            for m in members
        }
        primary, secondary = runner.runtime["sides"]
        config = PairConfig(
            VmSpec("vm0", Path("/k"), Path("/i"), "x"),
            Path("/d"),
            host_slot(members[0], slot),
            host_slot(members[1], slot),
        )
        pair = PairController(config, agents)
        pair.primary = host_slot(next(m for m in members if m.name == primary), slot)
        pair.secondary, pair.standby = None, host_slot(members[1], slot)
        runner.pair = pair
        pool["hostc"].reachable = False  # answering hosts only
        got = await manager.elsewhere(pair, {secondary})
        assert got is not None and got.name not in (primary, secondary, "hostc")
        assert got.tap == f"cpp{slot}"
        assert pool[got.name].sides[name].slot == slot  # reserved there

    asyncio.run(main())


def test_pool_pairs_hold_a_right_to_serve_only_in_fleet_mode_with_agent_endpoints(
    tmp_path: Path,
) -> None:
    from colopp_api.live.pool import pair_rights

    base = {"COLOPP_API_STATE_DIR": str(tmp_path), "COLOPP_API_TOKEN": "w"}
    base["COLOPP_POOL"] = json.dumps(POOL)
    runtime = {"protection": "p7", "slot": 0}
    assert pair_rights(Settings.from_env(base), runtime) is None
    agents = {"COLOPP_RIGHT_ENDPOINTS": "http://198.18.9.1:2379,http://198.18.9.2:2379"}
    # Without fleet mode (no election) the right is not held: one controller decides.
    assert pair_rights(Settings.from_env({**base, **agents}), runtime) is None
    fleet = {**base, **agents, "COLOPP_ETCD_ENDPOINTS": "http://127.0.0.1:2379"}
    rights = pair_rights(Settings.from_env(fleet), runtime)
    assert rights is not None and rights.key == "colopp/right/p7"
    assert rights.endpoints == ["http://198.18.9.1:2379", "http://198.18.9.2:2379"]
    with pytest.raises(ConfigError, match="COLOPP_RIGHT_ENDPOINTS"):
        Settings.from_env({**fleet, "COLOPP_RIGHT_ENDPOINTS": "ftp://x"})
