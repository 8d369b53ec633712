"""The pair record: what a controller needs to re-attach to a running pair after a restart.

The agents own QEMU, so the pair keeps serving while no controller runs; the record says
which agents to call, which host is primary, and the pair's state. It is written
atomically, mode 0600, on every state change.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from colopp.agent.specs import vm_from_dict, vm_to_dict
from colopp.colo.state import PairLifecycle, PairState
from colopp.controller.agent_client import AgentClient
from colopp.controller.pair import HostSlot, PairConfig, PairController
from colopp.errors import ConfigError
from colopp.qemu.argv import ComparatorKind, Ports

RECORD_VERSION = 1


def config_to_dict(config: PairConfig) -> dict[str, Any]:
    """JSON-safe form of a PairConfig."""
    return {
        "vm": vm_to_dict(config.vm),
        "base_disk": str(config.base_disk),
        "primary": asdict(config.primary),
        "secondary": asdict(config.secondary),
        "ports": asdict(config.ports),
        "comparator": config.comparator.value,
        "checkpoint_delay_ms": config.checkpoint_delay_ms,
        "boot_timeout": config.boot_timeout,
        "colo_timeout": config.colo_timeout,
        "prerelease": config.prerelease,
        "read_prefixes": list(config.read_prefixes),
        "prerelease_rearm_ms": config.prerelease_rearm_ms,
        "prerelease_scope": config.prerelease_scope,
        "resp_ports": list(config.resp_ports),
        "semiactive": config.semiactive,
    }


def config_from_dict(data: dict[str, Any]) -> PairConfig:
    """Inverse of :func:`config_to_dict`.

    Raises:
        ConfigError: missing or invalid fields.
    """
    try:
        return PairConfig(
            vm=vm_from_dict(data["vm"]),
            base_disk=Path(data["base_disk"]),
            primary=HostSlot(**data["primary"]),
            secondary=HostSlot(**data["secondary"]),
            ports=Ports(**data["ports"]),
            comparator=ComparatorKind(data["comparator"]),
            checkpoint_delay_ms=int(data["checkpoint_delay_ms"]),
            boot_timeout=float(data["boot_timeout"]),
            colo_timeout=float(data["colo_timeout"]),
            prerelease=data.get("prerelease"),
            read_prefixes=tuple(data.get("read_prefixes", ())),
            prerelease_rearm_ms=data.get("prerelease_rearm_ms"),
            prerelease_scope=str(data.get("prerelease_scope", "global")),
            resp_ports=tuple(int(p) for p in data.get("resp_ports", ())),
            semiactive=bool(data.get("semiactive", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"bad pair record: {exc}") from exc


def pair_record(
    pair: PairController, agents: dict[str, tuple[str, int]], token_file: Path
) -> dict[str, Any]:
    """Everything needed to re-attach to ``pair``."""
    return {
        "version": RECORD_VERSION,
        "config": config_to_dict(pair.config),
        "agents": {name: {"address": a, "port": p} for name, (a, p) in agents.items()},
        "token_file": str(token_file),
        "state": pair.state.value,
        "primary": asdict(pair.primary),
        "secondary": asdict(pair.secondary) if pair.secondary else None,
        "standby": asdict(pair.standby) if pair.standby else None,
    }


def save_record(path: Path, record: dict[str, Any]) -> None:
    """Write the record atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2)
    os.replace(tmp, path)


def load_record(path: Path) -> dict[str, Any]:
    """Read a pair record.

    Raises:
        ConfigError: missing, unreadable, or of another version.
    """
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read pair record {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise ConfigError(f"{path} is not a colopp pair record (version {RECORD_VERSION})")
    return record


def attach(
    record: dict[str, Any], name_suffix: str = ""
) -> tuple[PairController, dict[str, AgentClient]]:
    """Rebuild a PairController in the recorded state, with fresh agent clients.

    The caller should then verify the state against the agents (:func:`verify`).
    """
    config = config_from_dict(record["config"])
    try:
        token = Path(record["token_file"]).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read agent token {record['token_file']}: {exc}") from exc
    agents = {
        name: AgentClient(f"{name}{name_suffix}", where["address"], int(where["port"]), token)
        for name, where in record["agents"].items()
    }
    pair = PairController(config, agents)
    pair.lifecycle = PairLifecycle(state=PairState(record["state"]))
    pair.primary = HostSlot(**record["primary"])
    pair.secondary = HostSlot(**record["secondary"]) if record.get("secondary") else None
    pair.standby = HostSlot(**record["standby"]) if record.get("standby") else None
    return pair, agents
