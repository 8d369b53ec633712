"""VM and side specs as they travel between controller and agent (pure)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from colopp.errors import ConfigError
from colopp.qemu.argv import ComparatorKind, Ports, Role, SideSpec, VmSpec


def vm_to_dict(vm: VmSpec) -> dict[str, Any]:
    """JSON-safe form of a VmSpec."""
    out = asdict(vm)
    out["kernel"] = None if vm.kernel is None else str(vm.kernel)
    out["initrd"] = None if vm.initrd is None else str(vm.initrd)
    return out


def vm_from_dict(data: dict[str, Any]) -> VmSpec:
    """Inverse of :func:`vm_to_dict`.

    Raises:
        ConfigError: unknown or missing fields, or invalid values.
    """
    try:
        kernel, initrd = data["kernel"], data["initrd"]
        vm = VmSpec(
            **{
                **data,
                "kernel": None if kernel is None else Path(kernel),
                "initrd": None if initrd is None else Path(initrd),
            }
        )
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"bad VM spec: {exc}") from exc
    vm.validate()
    return vm


def side_request(
    role: Role,
    tap: str,
    local_repl_ip: str,
    peer_repl_ip: str,
    ports: Ports,
    comparator: ComparatorKind,
    **options: Any,
) -> dict[str, Any]:
    """What the controller tells an agent about its side (the agent picks paths).

    ``options``: the COLO++ fields of :class:`SideSpec` (``prerelease``, ``read_prefixes``,
    ``semiactive``, ``standalone``).
    """
    return {
        "role": role.value,
        "tap": tap,
        "local_repl_ip": local_repl_ip,
        "peer_repl_ip": peer_repl_ip,
        "ports": asdict(ports),
        "comparator": comparator.value,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
    }


def side_from_request(data: dict[str, Any], run_dir: Path) -> SideSpec:
    """Build the agent-local SideSpec for a controller's side request.

    Raises:
        ConfigError: unknown role/comparator, bad ports or tap name.
    """
    try:
        side = SideSpec(
            role=Role(data["role"]),
            run_dir=run_dir,
            tap=str(data["tap"]),
            disk=run_dir / "disk.qcow2",
            local_repl_ip=str(data["local_repl_ip"]),
            peer_repl_ip=str(data["peer_repl_ip"]),
            ports=Ports(**data.get("ports", {})),
            comparator=ComparatorKind(data.get("comparator", "builtin")),
            prerelease=None if data.get("prerelease") is None else str(data["prerelease"]),
            read_prefixes=tuple(str(p) for p in data.get("read_prefixes", ())),
            prerelease_rearm_ms=(
                None
                if data.get("prerelease_rearm_ms") is None
                else int(data["prerelease_rearm_ms"])
            ),
            semiactive=bool(data.get("semiactive", False)),
            standalone=bool(data.get("standalone", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"bad side spec: {exc}") from exc
    side.validate()
    return side
