"""Every protection option survives config → record → re-attach → re-protect (no processes).

The API re-attaches pairs through the saved record after a restart; an option lost on the
way changes what the automatic re-protection starts (e.g. a libvirt protection's new
secondary started with the QEMU backend).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from colopp.colo.state import PairState
from colopp.controller.pair import PairController
from colopp.controller.store import attach, config_from_dict, config_to_dict, pair_record
from colopp.domain import (
    Backend,
    ComparatorKind,
    HostSlot,
    PairConfig,
    Ports,
    ProtectionOptions,
    VmSpec,
)
from colopp.side_request import SideRequest


def _config(backend: Backend) -> PairConfig:
    """A config where every field differs from its default."""
    return PairConfig(
        vm=VmSpec(
            name="rt",
            kernel=Path("/k"),
            initrd=Path("/i"),
            append="console=ttyS0",
            mac="52:54:00:aa:bb:cc",
            memory_mb=512,
            vcpus=2,
            accel="kvm",
            cpu="host",
        ),
        base_disk=Path("/base.qcow2"),
        primary=HostSlot("hosta", "tapa", "198.18.1.2"),
        secondary=HostSlot("hostb", "tapb", "198.18.1.3"),
        ports=Ports(mirror=9103, compare=9104, nbd=9199, migration=9198),
        options=ProtectionOptions(
            comparator=ComparatorKind.COLOPP,
            checkpoint_delay_ms=3000,
            prerelease="http_read,tcp_ack",
            read_prefixes=("/static", "/img"),
            prerelease_rearm_ms=250,
            prerelease_scope="key",
            resp_ports=(6379,),
            semiactive=True,
            backend=backend,
        ),
        boot_timeout=33.0,
        colo_timeout=44.0,
    )


def test_every_option_differs_from_its_default() -> None:
    """Guards the test itself: a new PairConfig field or option must be set in _config()."""
    defaults = PairConfig(
        vm=_config(Backend.QEMU).vm,
        base_disk=Path("/x"),
        primary=HostSlot("a", "t", "1"),
        secondary=HostSlot("b", "t", "2"),
    )
    config = _config(Backend.LIBVIRT)
    for f in dataclasses.fields(PairConfig):
        if f.name in ("vm", "base_disk", "primary", "secondary"):
            continue
        assert getattr(config, f.name) != getattr(defaults, f.name), f.name
    for f in dataclasses.fields(ProtectionOptions):
        assert getattr(config.options, f.name) != getattr(defaults.options, f.name), f.name


class _RecordingAgent:
    """Answers every call with what the pair expects and records it."""

    def __init__(self, name: str, calls: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.name = name
        self.port = 7400
        self.calls = calls

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> Any:
        self.calls.append((self.name, method, params))
        return {"pid": 1, "resync_s": 0.0, "took_ms": 1.0, "boot_s": 1.0}

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("backend", list(Backend))
def test_options_survive_record_reattach_and_reprotect(backend: Backend, tmp_path: Path) -> None:
    config = _config(backend)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config

    token_file = tmp_path / "token"
    token_file.write_text("secret\n")
    pair = PairController(config, {})
    pair.lifecycle.move(PairState.LAUNCHING, "t")
    pair.lifecycle.move(PairState.SYNCING, "t")
    pair.lifecycle.move(PairState.PROTECTED, "t")
    pair.lifecycle.move(PairState.FAILING_OVER, "t")
    pair.lifecycle.move(PairState.FAILED_OVER, "t")
    pair.primary, pair.secondary, pair.standby = config.secondary, None, config.primary
    agents = {"hosta": ("198.18.2.2", 7400), "hostb": ("198.18.2.3", 7400)}
    record = json.loads(json.dumps(pair_record(pair, agents, token_file)))

    attached, _clients = attach(record)
    assert attached.config == config
    assert attached.state is PairState.FAILED_OVER

    calls: list[tuple[str, str, dict[str, Any]]] = []
    attached.agents = {n: _RecordingAgent(n, calls) for n in ("hosta", "hostb")}  # type: ignore[misc]
    asyncio.run(attached.reprotect())
    launches = [params for host, method, params in calls if method == "launch"]
    assert len(launches) == 1 and [c[0] for c in calls if c[1] == "launch"] == ["hosta"]
    sent = json.loads(json.dumps(launches[0]))
    side = SideRequest.from_dict(sent["side"]).spec(tmp_path / "run")
    assert side.options == config.options
    assert side.options.backend is backend
    assert side.ports == config.ports
    assert VmSpec.from_dict(sent["vm"]) == config.vm
    resumed = [params for _h, method, params in calls if method == "resume_replication"]
    assert resumed[0]["checkpoint_delay_ms"] == 3000


def test_a_version_1_record_is_read_with_its_flat_options() -> None:
    config = _config(Backend.QEMU)
    old = config.to_dict()
    del old["options"]
    old |= config.options.to_dict()
    del old["backend"]  # version 1 never wrote it
    assert config_from_dict(old) == config
