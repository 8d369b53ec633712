"""The pair record: what a controller needs to re-attach to a running pair after a restart.

The agents own QEMU, so the pair keeps serving while no controller runs; the record says
which agents to call, which host is primary, and the pair's state. It is written
atomically, mode 0600, on every state change.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from colopp.colo.state import PairLifecycle, PairState
from colopp.controller.agent_client import AgentClient
from colopp.controller.pair import PairController
from colopp.domain import HostSlot, PairConfig, ProtectionOptions
from colopp.errors import ConfigError
from colopp.files import write_json_atomic

RECORD_VERSION = 2
# Version 1 kept the protection options flat in the config (and lost ``backend``).
_V1_OPTIONS = (
    "comparator",
    "checkpoint_delay_ms",
    "prerelease",
    "read_prefixes",
    "prerelease_rearm_ms",
    "prerelease_scope",  # flat in the version-1 records of the issue-15 branch
    "resp_ports",
    "semiactive",
    "backend",
)


def config_to_dict(config: PairConfig) -> dict[str, Any]:
    """JSON-safe form of a PairConfig (see :meth:`PairConfig.to_dict`)."""
    return config.to_dict()


def config_from_dict(data: dict[str, Any]) -> PairConfig:
    """Inverse of :func:`config_to_dict`; also reads a version-1 record's flat options.

    Raises:
        ConfigError: missing or invalid fields.
    """
    if isinstance(data, dict) and "options" not in data:
        flat = {k: data[k] for k in _V1_OPTIONS if data.get(k) is not None}
        rest = {k: v for k, v in data.items() if k not in _V1_OPTIONS}
        data = {**rest, "options": ProtectionOptions.from_dict(flat).to_dict()}
    try:
        return PairConfig.from_dict(data)
    except ConfigError as exc:
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
    write_json_atomic(path, record)


def load_record(path: Path) -> dict[str, Any]:
    """Read a pair record.

    Raises:
        ConfigError: missing, unreadable, or of another version.
    """
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read pair record {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("version") not in (1, RECORD_VERSION):
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
