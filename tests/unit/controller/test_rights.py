"""The right to serve as the controller drives it (fleet etcd mode), with scripted agents."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from colopp.clock import FakeClock
from colopp.colo.state import PairState
from colopp.controller.pair import PairController
from colopp.controller.rights import RIGHT_PARAM, PairRights, right_key
from colopp.controller.seam import ScriptedAgent
from colopp.domain import HostSlot, PairConfig, Role, VmSpec
from colopp.errors import AgentError, ConfigError, NotAcquired

OK = {"role": "primary", "took_ms": 1.0, "boot_s": 1.0, "pid": 1, "version": "11", "runtime": "r"}


def _agent(
    name: str, log: list[tuple[str, str]], refusals: int = 0, dead: bool = False
) -> ScriptedAgent:
    left = [refusals]

    def handler(method: str, params: dict[str, Any]) -> Any:
        log.append((name, method))
        if dead:
            raise AgentError(f"{name} unreachable")
        if method == "hold_right":
            if left[0] > 0:
                left[0] -= 1
                raise NotAcquired("held by agent")
            return {"token": 17 if name == "hostb" else 11, "fence_after_s": 2.0}
        if method == "right_status":
            return {"state": "holding", "token": 11, "may_release": True}
        return OK

    return ScriptedAgent(name, handler)


def _pair(
    rights: bool = True, refusals: int = 0, primary_dead: bool = False
) -> tuple[PairController, dict[str, ScriptedAgent], list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    agents = {
        "hosta": _agent("hosta", log, dead=primary_dead),
        "hostb": _agent("hostb", log, refusals),
    }
    config = PairConfig(
        VmSpec("web1", None, None, ""),
        Path("/unset"),
        HostSlot("hosta", "ta", "198.18.1.2"),
        HostSlot("hostb", "tb", "198.18.1.3"),
    )
    pair = PairController(config, agents, clock=FakeClock())
    if rights:
        pair.rights = PairRights(["http://198.18.9.1:2379"], right_key("web1"))
    pair.lifecycle.move(PairState.LAUNCHING, "test")
    pair.lifecycle.move(PairState.SYNCING, "test")
    pair.lifecycle.move(PairState.PROTECTED, "test")
    return pair, agents, log


def _params(agent: ScriptedAgent, method: str) -> dict[str, Any]:
    return next(p for m, p in agent.calls if m == method)


def test_the_survivor_takes_the_right_once_the_old_lease_is_gone_then_serves_with_its_token() -> (
    None
):
    pair, agents, log = _pair(refusals=3)
    asyncio.run(pair.failover(Role.PRIMARY))
    assert pair.state is PairState.FAILED_OVER
    # The old primary gives the right up first; the survivor retries while its lease lives,
    # and only then is told to serve, with the right's revision as its fencing token.
    assert log == [("hosta", "release_right")] + [("hostb", "hold_right")] * 4 + [
        ("hostb", "failover")
    ]
    assert _params(agents["hostb"], "failover") == {RIGHT_PARAM: 17}
    hold = _params(agents["hostb"], "hold_right")
    assert hold["key"] == "colopp/right/web1" and hold["endpoints"] == ["http://198.18.9.1:2379"]
    assert pair.rights is not None and pair.rights.token == 17


def test_a_lost_primary_host_that_cannot_answer_does_not_stop_the_takeover() -> None:
    pair, agents, _ = _pair(refusals=1, primary_dead=True)
    asyncio.run(pair.failover(Role.PRIMARY))
    assert _params(agents["hostb"], "failover") == {RIGHT_PARAM: 17}


def test_a_survivor_that_never_gets_the_right_never_serves() -> None:
    pair, agents, _ = _pair(refusals=1000)
    with pytest.raises(NotAcquired):
        asyncio.run(pair.failover(Role.PRIMARY))
    assert pair.state is PairState.ERROR
    assert "failover" not in [m for m, _ in agents["hostb"].calls]


def test_losing_the_secondary_the_primary_serves_on_under_its_own_token() -> None:
    pair, agents, _ = _pair()
    asyncio.run(pair.failover(Role.SECONDARY))  # a re-attached controller: token unknown
    assert [m for m, _ in agents["hosta"].calls] == ["right_status", "failover"]
    assert _params(agents["hosta"], "failover") == {RIGHT_PARAM: 11}


def test_single_controller_mode_sends_nothing_new() -> None:
    pair, agents, log = _pair(rights=False)
    asyncio.run(pair.failover(Role.PRIMARY))
    assert log == [("hostb", "failover")] and _params(agents["hostb"], "failover") == {}


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 101])
def test_bad_protection_names_make_no_key(bad: str) -> None:
    with pytest.raises(ConfigError):
        right_key(bad)


def test_rights_need_endpoints_and_a_valid_ttl() -> None:
    with pytest.raises(ConfigError):
        PairRights([], "colopp/right/x")
    with pytest.raises(ConfigError):
        PairRights(["http://e"], "colopp/right/x", ttl=1)


def test_protect_has_the_primary_hold_the_right_once_colo_runs() -> None:
    log: list[tuple[str, str]] = []
    agents = {"hosta": _agent("hosta", log), "hostb": _agent("hostb", log)}
    pair, _, _ = _pair()
    fresh = PairController(pair.config, agents, clock=FakeClock())
    fresh.rights = pair.rights
    asyncio.run(fresh.protect())
    assert fresh.state is PairState.PROTECTED
    assert log[-3:] == [("hosta", "wait_colo"), ("hostb", "wait_colo"), ("hosta", "hold_right")]
    assert fresh.rights is not None and fresh.rights.token == 11


def test_protect_running_has_the_taken_over_primary_hold_the_right_once_colo_runs() -> None:
    log: list[tuple[str, str]] = []
    vm = VmSpec("web1", None, None, "").to_dict()
    taken = {"pid": 7, "disk": "/vms/web1.qcow2", "disk_size": 1 << 30, "vm": vm}
    agents = {}
    for name in ("hosta", "hostb"):
        plain = _agent(name, log)

        def handler(method: str, params: dict[str, Any], plain: ScriptedAgent = plain) -> Any:
            if method == "take_over":
                log.append((plain.name, method))
                return taken
            if method == "resume_replication":
                log.append((plain.name, method))
                return {"fallbacks": []}
            return plain.handler(method, params)

        agents[name] = ScriptedAgent(name, handler)
    pair, _, _ = _pair()
    fresh = PairController(pair.config, agents, clock=FakeClock())
    fresh.rights = pair.rights
    asyncio.run(fresh.protect_running("/run/vms/web1.qmp"))
    assert fresh.state is PairState.PROTECTED
    assert log[0] == ("hosta", "take_over")
    assert log[-3:] == [("hosta", "wait_colo"), ("hostb", "wait_colo"), ("hosta", "hold_right")]
    assert fresh.rights is not None and fresh.rights.token == 11


def test_unsafe_no_fence_is_asked_of_the_holder_only_when_set() -> None:
    pair, agents, _ = _pair()
    assert pair.rights is not None
    asyncio.run(pair.failover(Role.PRIMARY))
    assert "unsafe_no_fence" not in _params(agents["hostb"], "hold_right")
    pair, agents, _ = _pair()
    assert pair.rights is not None
    pair.rights.unsafe_no_fence = True
    asyncio.run(pair.failover(Role.PRIMARY))
    assert _params(agents["hostb"], "hold_right")["unsafe_no_fence"] is True
