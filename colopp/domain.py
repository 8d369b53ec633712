"""The domain's own words: the VM, a side, roles, the protection's options (pure).

Everything the controller, the agent, the argv builder, the libvirt backend and the API
share lives here, together with its one JSON form (``to_dict`` / ``from_dict``; every
``from_dict`` validates and raises :class:`~colopp.errors.ConfigError` naming the field).

- :class:`VmSpec`: the protected VM, the same on both sides.
- :class:`ProtectionOptions`: one frozen object per protection (comparator, checkpoint
  period, COLO++ pre-release and semi-active secondary, backend), nested in
  :class:`PairConfig` (the controller's view) and in
  :class:`~colopp.side_request.SideRequest` / :class:`SideSpec` (what an agent is told,
  and what it resolves locally).
- :class:`PairConfig`: everything needed to protect one VM on two hosts.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from colopp.errors import ConfigError

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_MAC_RE = re.compile(r"^(?:[0-9a-f]{2}:){5}[0-9a-f]{2}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
#: What a pre-release read prefix may look like (the API validates with the same pattern).
READ_PREFIX_PATTERN = r"^/[A-Za-z0-9._~/-]{0,127}$"
_PREFIX_RE = re.compile(READ_PREFIX_PATTERN)
_RULES_RE = re.compile(r"^(auto|all|[a-z_]+(,[a-z_]+)*)$")
# The comparator's pre-release rules (colopp.compare.config.PRE_RELEASE_RULES); the one
# that follows client requests needs a copy of the guest's input.
_CLIENT_RULES = frozenset({"http_read", "resp_read"})
#: What a write disarms: every read (global), or only reads of its own resource (key).
PRERELEASE_SCOPES = ("global", "key")


class Role(StrEnum):
    """Which side of the pair a QEMU process plays."""

    PRIMARY = "primary"
    SECONDARY = "secondary"


class ComparatorKind(StrEnum):
    """Who compares the two sides' output: QEMU's colo-compare, or colopp's process."""

    BUILTIN = "builtin"
    COLOPP = "colopp"


class Backend(StrEnum):
    """Who starts and owns a side's QEMU: the agent itself, or the host's libvirtd (the
    VM is then the libvirt domain named after it)."""

    QEMU = "qemu"
    LIBVIRT = "libvirt"


def _fail(what: str, exc: Exception) -> ConfigError:
    return ConfigError(f"bad {what}: {exc}")


def _mapping(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"bad {what}: expected an object, got {type(data).__name__}")
    return data


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Ports:
        """Raises ConfigError: unknown fields or invalid ports."""
        try:
            ports = cls(**{k: int(v) for k, v in _mapping(data, "ports").items()})
        except (TypeError, ValueError) as exc:
            raise _fail("ports", exc) from exc
        ports.validate()
        return ports


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
    # The NIC's tap carries a virtio-net header (a running libvirt domain's does: libvirt
    # opens its tap with IFF_VNET_HDR, and the guest state migrates only into a QEMU whose
    # tap has one too). Every QEMU of the protection then opens its tap with vnet_hdr=on,
    # the COLO filters and colopp's relays carry the header (vnet_hdr_support), and the
    # NIC has every checksum/segmentation offload off, so the header stays inert: frames
    # are whole, with complete checksums, as without it.
    vnet_hdr: bool = False
    # With vnet_hdr: the guest *receives* offloaded frames (virtio-net guest_csum,
    # guest_tso4/6): the client's TCP segments reach it as the sender's GSO super-frames
    # (up to 64 KiB, checksum left to the receiver), one frame where there were up to 45,
    # through the tap, the mirror to the secondary and the comparator's copy alike. What
    # the guest sends stays whole with complete checksums (its send offloads stay off), so
    # the comparison and every rewrite of the guest's output are unchanged.
    rx_offload: bool = False
    # With rx_offload: the guest also *sends* offloaded frames (csum, host_tso4/6): its TCP
    # output leaves as GSO super-frames with the checksum left to the device. The
    # comparator compares byte streams, so both guests may cut them differently; every
    # rewrite of such a frame leaves its checksum field (the pseudo-header's sum) alone.
    tx_offload: bool = False

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if self.rx_offload and not self.vnet_hdr:
            raise ConfigError("rx_offload needs vnet_hdr (the offload travels in that header)")
        if self.tx_offload and not self.rx_offload:
            raise ConfigError("tx_offload needs rx_offload (and vnet_hdr)")
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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kernel"] = None if self.kernel is None else str(self.kernel)
        out["initrd"] = None if self.initrd is None else str(self.initrd)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> VmSpec:
        """Raises ConfigError: unknown or missing fields, or invalid values."""
        data = _mapping(data, "VM spec")
        try:
            kernel, initrd = data["kernel"], data["initrd"]
            vm = cls(
                **{
                    **data,
                    "kernel": None if kernel is None else Path(kernel),
                    "initrd": None if initrd is None else Path(initrd),
                }
            )
        except (TypeError, KeyError) as exc:
            raise _fail("VM spec", exc) from exc
        vm.validate()
        return vm


@dataclass(frozen=True)
class ProtectionOptions:
    """How one protection runs; the same on both sides and across re-protections."""

    comparator: ComparatorKind = ComparatorKind.BUILTIN
    checkpoint_delay_ms: int = 2000
    # COLO++ (colopp's comparator only): pre-release rules (None = off; ``auto``, ``all``
    # or a comma-separated list) and the path prefixes whose reads may leave early.
    prerelease: str | None = None
    read_prefixes: tuple[str, ...] = ()
    prerelease_rearm_ms: int | None = None  # checkpoint this long after a write (read rule)
    prerelease_scope: str = "global"  # what a write disarms: every read, or its key's
    resp_ports: tuple[int, ...] = ()  # guest ports whose Redis reads may leave early
    # Secondary only: shrink its vCPUs once in COLO, restore them before promotion.
    semiactive: bool = False
    backend: Backend = Backend.QEMU

    @property
    def client_frames(self) -> bool:
        """Does the comparator need a copy of the guest's input (the read rule)?"""
        if self.comparator is not ComparatorKind.COLOPP or self.prerelease is None:
            return False
        if self.prerelease == "auto":
            return bool(self.read_prefixes or self.resp_ports)
        return self.prerelease == "all" or bool(_CLIENT_RULES & set(self.prerelease.split(",")))

    @property
    def ingress_relay(self) -> bool:
        """Does the secondary's replication go through the relay on its host
        (``python -m colopp.ingress``: the client's bytes and the guest's output kept there
        for a failover, the ACK gate, window pacing)? Yes with colopp's comparator and QEMU
        started by colopp (issue #22: the output the comparator held dies with host A)."""
        return self.comparator is ComparatorKind.COLOPP and self.backend is Backend.QEMU

    @property
    def host_receipts(self) -> bool:
        """Does the relay tell the comparator which client bytes its host holds (receipts,
        ``--host-receipts``)? When answers may leave early (pre-release's read rule, issues
        #15/#22)."""
        return self.client_frames and self.ingress_relay

    def validate(self) -> None:
        """Raise ConfigError naming the first bad option."""
        if not 1 <= self.checkpoint_delay_ms <= 3_600_000:
            raise ConfigError(f"checkpoint delay {self.checkpoint_delay_ms} ms is out of range")
        if self.prerelease is not None and not _RULES_RE.match(self.prerelease):
            raise ConfigError(f"pre-release rules {self.prerelease!r} must match auto, all or a,b")
        if self.prerelease_rearm_ms is not None and not 1 <= self.prerelease_rearm_ms <= 60000:
            raise ConfigError(f"re-arm delay {self.prerelease_rearm_ms} ms is out of 1..60000")
        if self.prerelease_scope not in PRERELEASE_SCOPES:
            raise ConfigError(f"pre-release scope {self.prerelease_scope!r} is not global/key")
        if len(self.resp_ports) > 8 or any(not 0 < port < 65536 for port in self.resp_ports):
            raise ConfigError(f"RESP ports {list(self.resp_ports)}: at most 8, each 1..65535")
        for prefix in self.read_prefixes:
            if not _PREFIX_RE.match(prefix) or ".." in prefix:
                raise ConfigError(f"read prefix {prefix!r} must match {_PREFIX_RE.pattern}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparator"], out["backend"] = self.comparator.value, self.backend.value
        out["read_prefixes"] = list(self.read_prefixes)
        out["resp_ports"] = list(self.resp_ports)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ProtectionOptions:
        """Raises ConfigError: unknown fields or invalid values."""
        data = _mapping(data, "protection options")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown protection options: {sorted(unknown)}")
        try:
            rearm = data.get("prerelease_rearm_ms")
            prerelease = data.get("prerelease")
            options = cls(
                comparator=ComparatorKind(data.get("comparator", ComparatorKind.BUILTIN.value)),
                checkpoint_delay_ms=int(data.get("checkpoint_delay_ms", 2000)),
                prerelease=None if prerelease is None else str(prerelease),
                read_prefixes=tuple(str(p) for p in data.get("read_prefixes", ())),
                prerelease_rearm_ms=None if rearm is None else int(rearm),
                prerelease_scope=str(data.get("prerelease_scope", "global")),
                resp_ports=tuple(int(p) for p in data.get("resp_ports", ())),
                semiactive=_bool(data.get("semiactive", False), "semiactive"),
                backend=Backend(data.get("backend", Backend.QEMU.value)),
            )
        except (TypeError, ValueError) as exc:
            raise _fail("protection options", exc) from exc
        options.validate()
        return options


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, not {value!r}")
    return value


#: The longest socket file name colopp puts in a side's run directory (the translator's).
LONGEST_SOCKET_NAME = "xlate-out-from.sock"
#: sun_path holds 108 bytes with the terminating NUL.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class SideSpec:
    """One side's local resources (the agent resolves paths under ``run_dir``)."""

    role: Role
    run_dir: Path
    tap: str
    disk: Path
    local_repl_ip: str
    peer_repl_ip: str
    ports: Ports = field(default_factory=Ports)
    options: ProtectionOptions = field(default_factory=ProtectionOptions)
    # Primary only: run the VM unreplicated (no COLO filters), e.g. as a baseline.
    standalone: bool = False

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
    def mirror_socket(self) -> Path:
        """Primary with colopp's comparator: where QEMU's ``mirror0`` listens for the mirror
        process (``python -m colopp.mirror``), which sends it on to the secondary host."""
        return self.run_dir / "mirror0.sock"

    @property
    def mirror_status(self) -> Path:
        """The mirror process's status file (``peer_connected``, counters)."""
        return self.run_dir / "mirror.json"

    @property
    def compare_out_socket(self) -> Path:
        return self.run_dir / "compare_out.sock"

    @property
    def red0_socket(self) -> Path:
        """Secondary with the ingress relay: where its QEMU takes the client's frames."""
        return self.run_dir / "red0.sock"

    @property
    def red1_socket(self) -> Path:
        """Secondary with the ingress relay: where its QEMU sends the guest's output."""
        return self.run_dir / "red1.sock"

    @property
    def ingress_relay(self) -> bool:
        """Does this secondary's replication go through the relay on its host
        (``python -m colopp.ingress``)? See :attr:`ProtectionOptions.ingress_relay`."""
        return self.role is Role.SECONDARY and self.options.ingress_relay

    @property
    def rewriter_relay(self) -> bool:
        """Does this secondary's replication go through the agent's learning relay
        (:mod:`colopp.agent.rewriter_relay`)? Yes on QEMU's ``colo-compare`` with QEMU
        started by colopp: no colopp comparator learns the young offsets there."""
        return (
            self.role is Role.SECONDARY
            and self.options.comparator is ComparatorKind.BUILTIN
            and self.options.backend is Backend.QEMU
        )

    @property
    def active_disk(self) -> Path:
        return self.run_dir / "active.qcow2"

    @property
    def hidden_disk(self) -> Path:
        return self.run_dir / "hidden.qcow2"

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        longest = self.run_dir / LONGEST_SOCKET_NAME
        if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
            # QEMU refuses the socket with a GenericError that would surface much later
            # (a redirector's chardev "not found" at re-protection), so refuse it here.
            raise ConfigError(
                f"run directory {self.run_dir} is too long for UNIX sockets: {longest} is "
                f"{len(os.fsencode(longest))} bytes, the limit is {MAX_SOCKET_PATH}; "
                "use a shorter state directory"
            )
        if not _IFNAME_RE.match(self.tap):
            raise ConfigError(f"tap name {self.tap!r} is not a valid interface name")
        self.ports.validate()
        self.options.validate()
        if self.standalone and self.role is not Role.PRIMARY:
            raise ConfigError("only a primary can run standalone (unreplicated)")


@dataclass(frozen=True)
class HostSlot:
    """One host as the pair sees it: its agent, the guest tap there, its replication IP."""

    name: str
    tap: str
    repl_ip: str

    @classmethod
    def from_dict(cls, data: Any) -> HostSlot:
        """Raises ConfigError: missing or unknown fields."""
        try:
            return cls(**_mapping(data, "host slot"))
        except TypeError as exc:
            raise _fail("host slot", exc) from exc


@dataclass(frozen=True)
class PairConfig:
    """Everything needed to protect one VM on two hosts."""

    vm: VmSpec
    base_disk: Path
    primary: HostSlot
    secondary: HostSlot
    ports: Ports = field(default_factory=Ports)
    options: ProtectionOptions = field(default_factory=ProtectionOptions)
    boot_timeout: float = 120.0
    colo_timeout: float = 90.0

    def __post_init__(self) -> None:
        # Measured with QEMU 11.1.3 (session 15, README "Bulk traffic"): colo-compare fed
        # offloaded frames (rx_offload) moved 0.1-0.4 Mbit/s in COLO where it moves 150-700
        # without them, and an iperf3 run through a failover stood still for 1.8-2 s.
        # An inert header (vnet_hdr alone, a libvirt domain's) is fine.
        if self.vm.rx_offload and self.options.comparator is ComparatorKind.BUILTIN:
            raise ConfigError(
                "rx_offload and tx_offload need colopp's comparator: QEMU's colo-compare "
                "nearly stops with offloaded frames"
            )

    def with_options(self, **changes: Any) -> PairConfig:
        """A copy with some protection options changed (validated)."""
        options = replace(self.options, **changes)
        options.validate()
        return replace(self, options=options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "vm": self.vm.to_dict(),
            "base_disk": str(self.base_disk),
            "primary": asdict(self.primary),
            "secondary": asdict(self.secondary),
            "ports": self.ports.to_dict(),
            "options": self.options.to_dict(),
            "boot_timeout": self.boot_timeout,
            "colo_timeout": self.colo_timeout,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PairConfig:
        """Raises ConfigError: missing or invalid fields."""
        data = _mapping(data, "pair config")
        try:
            return cls(
                vm=VmSpec.from_dict(data["vm"]),
                base_disk=Path(data["base_disk"]),
                primary=HostSlot.from_dict(data["primary"]),
                secondary=HostSlot.from_dict(data["secondary"]),
                ports=Ports.from_dict(data["ports"]),
                options=ProtectionOptions.from_dict(data["options"]),
                boot_timeout=float(data["boot_timeout"]),
                colo_timeout=float(data["colo_timeout"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail("pair config", exc) from exc
