"""PairController.protect_running / unprotect against scripted agents (no processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from colopp.colo.state import PairState
from colopp.controller.pair import PairController
from colopp.controller.seam import ScriptedAgent
from colopp.domain import HostSlot, PairConfig, VmSpec
from colopp.errors import ConfigError

TAKEN = {
    "pid": 42,
    "disk": "/vms/web1.qcow2",
    "disk_size": 1 << 30,
    "vm": VmSpec("web1", None, None, "", memory_mb=1024, mac="52:54:00:aa:00:01").to_dict(),
    "downtime_ms": 30.0,
    "took_s": 1.0,
}


def _pair(refuse: bool = False) -> tuple[PairController, dict[str, ScriptedAgent]]:
    def primary(method: str, params: dict[str, Any]) -> Any:
        if method == "take_over":
            if refuse:
                raise ConfigError("set vhost=off on the tap netdev")
            return TAKEN
        if method == "resume_replication":
            return {"resync_s": 0.1, "precopy_s": 1.0, "switch_ms": 10.0}
        return {"role": "primary", "took_ms": 1.0}

    agents = {
        "hosta": ScriptedAgent("hosta", primary),
        "hostb": ScriptedAgent("hostb", lambda m, p: {"pid": 7, "stopped": True}),
    }
    config = PairConfig(
        VmSpec("web1", None, None, ""),
        Path("/unset"),
        HostSlot("hosta", "ta", "198.18.1.2"),
        HostSlot("hostb", "tb", "198.18.1.3"),
    )
    return PairController(config, agents), agents


def test_a_running_vm_is_taken_over_then_protected_live_onto_a_blank_secondary() -> None:
    pair, agents = _pair()
    result = asyncio.run(pair.protect_running("/run/web1.qmp"))
    assert pair.state is PairState.PROTECTED and result["take_over"]["pid"] == 42
    a = [m for m, _ in agents["hosta"].calls]
    assert a == ["take_over", "resume_replication", "wait_colo"]
    launch = dict(agents["hostb"].calls)["launch"]
    assert launch["blank_size"] == 1 << 30 and launch["vm"]["memory_mb"] == 1024
    assert pair.config.base_disk == Path("/vms/web1.qcow2")
    asyncio.run(pair.unprotect())
    assert pair.state is PairState.FAILED_OVER and pair.standby is None
    assert [m for m, _ in agents["hostb"].calls][-1] == "stop_vm"
    assert [m for m, _ in agents["hosta"].calls][-1] == "failover"


def test_a_refused_take_over_leaves_the_pair_in_error_with_the_reason() -> None:
    pair, agents = _pair(refuse=True)
    with pytest.raises(ConfigError, match="vhost=off"):
        asyncio.run(pair.protect_running("/run/web1.qmp"))
    assert pair.state is PairState.ERROR
    assert agents["hostb"].calls == []
