"""What a primary or a secondary QEMU is started with: a spec in, argv out (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from colopp.errors import ConfigError
from colopp.qemu.render import render_files
from colopp.qemu.runtime import QemuRuntime

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_MAC_RE = re.compile(r"^(?:[0-9a-f]{2}:){5}[0-9a-f]{2}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
#: What a pre-release read prefix may look like (the API validates with the same pattern).
READ_PREFIX_PATTERN = r"^/[A-Za-z0-9._~/-]{0,127}$"
_PREFIX_RE = re.compile(READ_PREFIX_PATTERN)
_RULES_RE = re.compile(r"^(auto|all|[a-z_]+(,[a-z_]+)*)$")
# The comparator's pre-release rules (colopp.compare.config.PRE_RELEASE_RULES); the one
# that follows client requests needs a copy of the guest's input.
_CLIENT_RULE = "http_read"


class Role(StrEnum):
    """Which side of the pair a QEMU process plays."""

    PRIMARY = "primary"
    SECONDARY = "secondary"


class ComparatorKind(StrEnum):
    """Who compares the two sides' output: QEMU's colo-compare, or colopp's process."""

    BUILTIN = "builtin"
    COLOPP = "colopp"


@dataclass(frozen=True)
class Ports:
    """TCP ports on the replication network (the primary host's, except nbd/migration)."""

    mirror: int = 9003
    compare: int = 9004
    nbd: int = 9999
    migration: int = 9998

    def validate(self) -> None:
        """Raise ConfigError for ports outside 1..65535 or used twice."""
        values = [self.mirror, self.compare, self.nbd, self.migration]
        for port in values:
            if not 1 <= port <= 65535:
                raise ConfigError(f"port {port} is outside 1..65535")
        if len(set(values)) != len(values):
            raise ConfigError(f"ports must differ: {values}")


@dataclass(frozen=True)
class VmSpec:
    """The protected VM, the same on both sides."""

    name: str
    kernel: Path | None  # None (with initrd None, append ""): the firmware boots the disk
    initrd: Path | None
    append: str
    mac: str = "52:54:00:c0:10:01"
    memory_mb: int = 256
    vcpus: int = 1
    accel: str = "tcg"
    cpu: str = "qemu64"

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if not _NAME_RE.match(self.name):
            raise ConfigError(f"VM name {self.name!r} must match {_NAME_RE.pattern}")
        if not _MAC_RE.match(self.mac):
            raise ConfigError(f"MAC {self.mac!r} is not a lower-case aa:bb:cc:dd:ee:ff")
        if self.accel not in ("tcg", "kvm"):
            raise ConfigError(f"accel {self.accel!r} must be tcg or kvm")
        if not 64 <= self.memory_mb <= 1 << 20:
            raise ConfigError(f"memory {self.memory_mb} MiB is out of range")
        if not 1 <= self.vcpus <= 64:
            raise ConfigError(f"vcpus {self.vcpus} is out of range 1..64")
        if (self.kernel is None) != (self.initrd is None) or (self.kernel is None and self.append):
            raise ConfigError("kernel, initrd and append go together (or none: disk boot)")


@dataclass(frozen=True)
class SideSpec:
    """One side's local resources."""

    role: Role
    run_dir: Path
    tap: str
    disk: Path
    local_repl_ip: str
    peer_repl_ip: str
    ports: Ports = field(default_factory=Ports)
    comparator: ComparatorKind = ComparatorKind.BUILTIN
    # COLO++ (colopp's comparator only): pre-release rules (None = off; ``auto``, ``all``
    # or a comma-separated list) and the path prefixes whose reads may leave early.
    prerelease: str | None = None
    read_prefixes: tuple[str, ...] = ()
    prerelease_rearm_ms: int | None = None  # checkpoint this long after a write (read rule)
    # Secondary only: shrink its vCPUs once in COLO, restore them before promotion.
    semiactive: bool = False
    # Primary only: run the VM unreplicated (no COLO filters), e.g. as a baseline.
    standalone: bool = False

    @property
    def client_frames(self) -> bool:
        """Does the comparator need a copy of the guest's input (the read rule)?"""
        if self.comparator is not ComparatorKind.COLOPP or self.prerelease is None:
            return False
        if self.prerelease == "auto":
            return bool(self.read_prefixes)
        return self.prerelease == "all" or _CLIENT_RULE in self.prerelease.split(",")

    @property
    def client_socket(self) -> Path:
        return self.run_dir / "client0.sock"

    @property
    def qmp_socket(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def qmp_compare_socket(self) -> Path:
        return self.run_dir / "qmp-compare.sock"

    @property
    def serial_log(self) -> Path:
        return self.run_dir / "serial.log"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def compare0_socket(self) -> Path:
        return self.run_dir / "compare0.sock"

    @property
    def compare_out_socket(self) -> Path:
        return self.run_dir / "compare_out.sock"

    @property
    def active_disk(self) -> Path:
        return self.run_dir / "active.qcow2"

    @property
    def hidden_disk(self) -> Path:
        return self.run_dir / "hidden.qcow2"

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if not _IFNAME_RE.match(self.tap):
            raise ConfigError(f"tap name {self.tap!r} is not a valid interface name")
        self.ports.validate()
        if self.prerelease is not None and not _RULES_RE.match(self.prerelease):
            raise ConfigError(f"pre-release rules {self.prerelease!r} must match auto, all or a,b")
        if self.prerelease_rearm_ms is not None and not 1 <= self.prerelease_rearm_ms <= 60000:
            raise ConfigError(f"re-arm delay {self.prerelease_rearm_ms} ms is out of 1..60000")
        for prefix in self.read_prefixes:
            if not _PREFIX_RE.match(prefix) or ".." in prefix:
                raise ConfigError(f"read prefix {prefix!r} must match {_PREFIX_RE.pattern}")
        if self.standalone and self.role is not Role.PRIMARY:
            raise ConfigError("only a primary can run standalone (unreplicated)")


def template_names(side: SideSpec) -> list[str]:
    """Which templates make up one side's command line."""
    if side.role is Role.SECONDARY:
        return ["vm.conf", "secondary.conf"]
    if side.standalone:
        return ["vm.conf", "standalone.conf"]
    names = ["vm.conf", "primary.conf"]
    if side.comparator is ComparatorKind.BUILTIN:
        names.append("compare-builtin.conf")
    elif side.client_frames:
        names.append("compare-client.conf")
    return names


def template_values(vm: VmSpec, side: SideSpec) -> dict[str, object]:
    """The placeholder values for one side."""
    return {
        "name": f"{vm.name}-{side.role.value}",
        "accel": vm.accel,
        "cpu": vm.cpu,
        "memory_mb": vm.memory_mb,
        "vcpus": vm.vcpus,
        "kernel": vm.kernel,
        "initrd": vm.initrd,
        "append": vm.append,
        "mac": vm.mac,
        "tap": side.tap,
        "disk": side.disk,
        "active_disk": side.active_disk,
        "hidden_disk": side.hidden_disk,
        "serial_log": side.serial_log,
        "pidfile": side.pidfile,
        "qmp_socket": side.qmp_socket,
        "qmp_compare_socket": side.qmp_compare_socket,
        "compare0_socket": side.compare0_socket,
        "compare_out_socket": side.compare_out_socket,
        "client_socket": side.client_socket,
        "local_repl_ip": side.local_repl_ip,
        "peer_repl_ip": side.peer_repl_ip,
        "mirror_port": side.ports.mirror,
        "compare_port": side.ports.compare,
    }


def qemu_argv(
    runtime: QemuRuntime, vm: VmSpec, side: SideSpec, folder: Path | None = None
) -> list[str]:
    """The full argv that starts one side's QEMU.

    Raises:
        ConfigError: invalid spec or template.
    """
    vm.validate()
    side.validate()
    names = template_names(side)
    if vm.kernel is not None:  # direct kernel boot; without it SeaBIOS boots the disk
        names.insert(1, "kernel.conf")
    body = render_files(names, template_values(vm, side), folder)
    return [*runtime.system_argv(), *body]
