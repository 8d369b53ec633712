"""What the controller tells an agent about its side (:class:`SideRequest`): the wire form of
a :class:`~colopp.domain.SideSpec` without its paths, which the agent picks."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from colopp.domain import (
    HostSlot,
    PairConfig,
    Ports,
    ProtectionOptions,
    Role,
    SideSpec,
    _bool,
    _fail,
    _mapping,
)
from colopp.errors import ConfigError


@dataclass(frozen=True)
class SideRequest:
    """What the controller tells an agent about its side (the agent picks the paths)."""

    role: Role
    tap: str
    local_repl_ip: str
    peer_repl_ip: str
    ports: Ports = field(default_factory=Ports)
    options: ProtectionOptions = field(default_factory=ProtectionOptions)
    standalone: bool = False

    @classmethod
    def for_slot(
        cls,
        config: PairConfig,
        role: Role,
        slot: HostSlot,
        peer: HostSlot,
        standalone: bool = False,
    ) -> SideRequest:
        """What the agent on ``slot`` is told when it plays ``role`` opposite ``peer``."""
        return cls(
            role, slot.tap, slot.repl_ip, peer.repl_ip, config.ports, config.options, standalone
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role.value,
            "tap": self.tap,
            "local_repl_ip": self.local_repl_ip,
            "peer_repl_ip": self.peer_repl_ip,
            "ports": self.ports.to_dict(),
            "options": self.options.to_dict(),
            "standalone": self.standalone,
        }

    @classmethod
    def from_dict(cls, data: Any) -> SideRequest:
        """Raises ConfigError: unknown role/comparator, bad ports, options or tap name, or
        a field this version does not know (a controller of another version: refused
        loudly rather than run without an option)."""
        data = _mapping(data, "side spec")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown side spec fields: {sorted(unknown)}")
        try:
            request = cls(
                role=Role(data["role"]),
                tap=str(data["tap"]),
                local_repl_ip=str(data["local_repl_ip"]),
                peer_repl_ip=str(data["peer_repl_ip"]),
                ports=Ports.from_dict(data.get("ports", {})),
                options=ProtectionOptions.from_dict(data.get("options", {})),
                standalone=_bool(data.get("standalone", False), "standalone"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail("side spec", exc) from exc
        request.spec(Path("/")).validate()
        return request

    def spec(self, run_dir: Path) -> SideSpec:
        """The agent-local spec: this request with its files under ``run_dir``."""
        return SideSpec(
            role=self.role,
            run_dir=run_dir,
            tap=self.tap,
            disk=run_dir / "disk.qcow2",
            local_repl_ip=self.local_repl_ip,
            peer_repl_ip=self.peer_repl_ip,
            ports=self.ports,
            options=self.options,
            standalone=self.standalone,
        )
