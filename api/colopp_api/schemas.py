"""Request and response bodies of the API (pydantic; the OpenAPI schema comes from here)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from colopp.domain import READ_PREFIX_PATTERN

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
ID_PATTERN = r"^[a-z0-9]{1,32}$"
# Paths and free text carry no control characters (no NUL: PostgreSQL cannot store it;
# no newline: QEMU's command line and config files are line- and comma-sensitive) and
# stay short.
PATH_PATTERN = r"^/[^\x00-\x1f\x7f]{0,4095}$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]{0,1024}$"

Name = Annotated[str, Field(pattern=NAME_PATTERN, description="^[a-z][a-z0-9-]{0,31}$")]
HostPath = Annotated[str, Field(pattern=PATH_PATTERN, max_length=4096)]


class HostSpec(BaseModel):
    """One host of a ``hosts`` placement: its agent (deployed beforehand) and resources."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    agent: str = Field(
        pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}:[0-9]{1,5}$",
        description="the agent's address, IPv4:port",
        examples=["198.18.2.2:7070"],
    )
    tap: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$", description="the guest's tap there")
    repl_ip: ipaddress.IPv4Address = Field(description="this host's replication address")

    @field_validator("agent")
    @classmethod
    def _agent_address(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        ipaddress.IPv4Address(host)  # ValueError → 422
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"agent port {port} is outside 1..65535")
        return value

    def endpoint(self) -> tuple[str, int]:
        host, _, port = self.agent.rpartition(":")
        return host, int(port)


class Hosts(BaseModel):
    """The two hosts of a ``hosts`` placement."""

    model_config = ConfigDict(extra="forbid")

    primary: HostSpec
    secondary: HostSpec

    @model_validator(mode="after")
    def _distinct(self) -> Hosts:
        if self.primary.name == self.secondary.name:
            raise ValueError("primary and secondary must be different hosts")
        return self


class VmOptions(BaseModel):
    """The VM colopp launches (``hosts`` placement; the lab uses colopp's guest image).

    kernel, initrd and append together boot the kernel directly; none of them: the
    firmware boots the disk (``base_disk``) through its own bootloader."""

    model_config = ConfigDict(extra="forbid")

    kernel: HostPath | None = None
    initrd: HostPath | None = None
    append: str | None = Field(None, pattern=TEXT_PATTERN)
    memory_mb: int = Field(256, ge=64, le=1 << 20)
    vcpus: int = Field(1, ge=1, le=64)
    accel: Literal["tcg", "kvm"] = "tcg"
    mac: str = Field("52:54:00:c0:10:01", pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


class ProtectionCreate(BaseModel):
    """POST /v1/protections."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    placement: Literal["lab", "hosts", "pool"] = Field(
        "lab",
        description="lab: this machine's lab; hosts: the two hosts given; pool: two hosts of"
        " the configured pool (COLOPP_POOL) chosen by placement, re-protected onto another"
        " pool host when one dies",
    )
    hosts: Hosts | None = None
    base_disk: HostPath | None = Field(None, description="the VM's disk on both hosts")
    running_qmp: HostPath | None = Field(
        None,
        description="placement hosts, backend qemu: protect the VM already running on the"
        " primary host, reached through this QMP socket, without restarting it (its disk"
        " file, memory and boot come from it; README 'Protecting a running VM' says what it"
        " must look like)",
    )
    running_domain: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.+-]{1,64}$")] | None = Field(
        None,
        description="placement hosts, backend qemu: protect the libvirt domain running on the"
        " primary host (started with virsh start) without restarting it: colopp's QEMU takes"
        " it over by a live migration onto its own disk file (README 'Protecting a running"
        " libvirt domain' says what the domain must look like)",
    )
    vm: VmOptions = Field(default_factory=lambda: VmOptions.model_validate({}))
    comparator: Literal["builtin", "colopp"] = "colopp"
    prerelease: (
        bool | Annotated[str, Field(pattern=r"^(auto|all|[a-z_]{1,32}(,[a-z_]{1,32}){0,15})$")]
    ) = Field(
        False,
        description="COLO++ pre-release (colopp comparator): false (off), true (= auto),"
        " or rules: auto, all, or a comma-separated list",
    )
    read_prefixes: list[Annotated[str, Field(pattern=READ_PREFIX_PATTERN)]] = Field(
        default_factory=list, max_length=16, description="paths whose reads may leave early"
    )
    prerelease_rearm_ms: int | None = Field(
        None,
        ge=1,
        le=60000,
        description="after a write disarmed the read rule, checkpoint this many ms later",
    )
    prerelease_scope: Literal["global", "key"] = Field(
        "global",
        description="what a write disarms: every read (global) or only its own resource's"
        " (key: the operator promises the resources are independent, see the README)",
    )
    resp_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=list,
        max_length=8,
        description="guest ports whose Redis reads may leave early",
    )
    semiactive: bool = Field(False, description="COLO++ semi-active secondary")
    checkpoint_delay_ms: int = Field(2000, ge=100, le=3_600_000)
    auto_reprotect: bool = True
    guest: Literal["kvd", "debian"] = Field(
        "kvd",
        description="lab placement: colopp's kvd guest (kernel + initramfs, 256 MiB, 1 vCPU)"
        " or a Debian 12 server (systemd, boots its disk, redis/nginx/kvd, 1 GiB, 2 vCPUs)",
    )
    backend: Literal["qemu", "libvirt"] = Field(
        "qemu",
        description="who runs each side's QEMU: colopp's agent (qemu), or the host's libvirtd"
        " (libvirt: the VM is the libvirt domain named like the protection)",
    )

    def prerelease_rules(self) -> str | None:
        """The pair's pre-release rules (None = off)."""
        if self.prerelease is True:
            return "auto"
        return self.prerelease or None

    @model_validator(mode="after")
    def _placement(self) -> ProtectionCreate:
        if self.prerelease_rules() is not None and self.comparator != "colopp":
            raise ValueError("prerelease needs comparator colopp")
        if self.prerelease_rearm_ms is not None and not (self.read_prefixes or self.resp_ports):
            raise ValueError("prerelease_rearm_ms needs read_prefixes or resp_ports (a read rule)")
        if any(".." in prefix for prefix in self.read_prefixes):
            raise ValueError("read_prefixes must not contain '..'")
        if self.placement != "lab" and self.guest != "kvd":
            raise ValueError(
                f"guest picks the lab's image: placement {self.placement} brings its own VM"
            )
        if self.placement == "pool" and self.hosts is not None:
            raise ValueError("placement pool chooses the hosts itself: drop hosts")
        if self.placement == "pool" and self.backend != "qemu":
            raise ValueError("placement pool runs backend qemu only")
        if self.placement != "lab":
            needed: list[tuple[str, object]] = []
            if self.placement == "hosts":
                needed.append(("hosts", self.hosts))
            running = self.running_qmp is not None or self.running_domain is not None
            if self.backend == "qemu" and not running:  # libvirt: its own
                needed.append(("base_disk", self.base_disk))
                boot = [
                    ("vm.kernel", self.vm.kernel),
                    ("vm.initrd", self.vm.initrd),
                    ("vm.append", self.vm.append),
                ]
                if any(value is not None for _, value in boot):  # direct kernel boot
                    needed += boot
                # none of them: the firmware boots base_disk (its own bootloader)
            missing = [what for what, value in needed if value is None]
            if missing:
                raise ValueError(f"placement {self.placement} needs {', '.join(missing)}")
        elif self.hosts is not None or self.base_disk is not None:
            raise ValueError("placement lab builds its own hosts and disk: drop hosts/base_disk")
        if self.running_qmp is not None and (self.placement, self.backend) != ("hosts", "qemu"):
            raise ValueError("running_qmp needs placement hosts and backend qemu")
        if self.running_domain is not None:
            if (self.placement, self.backend) != ("hosts", "qemu"):
                raise ValueError(
                    "running_domain needs placement hosts and backend qemu (colopp's QEMU "
                    "takes the domain over; backend libvirt restarts a stopped domain)"
                )
            if self.running_qmp is not None:
                raise ValueError("give running_qmp or running_domain, not both")
        return self


class PoolSide(BaseModel):
    """One side of a pool protection on a pool host."""

    protection: str
    name: str
    role: Literal["primary", "secondary"]


class PoolHostOut(BaseModel):
    """One host of the pool (``COLOPP_POOL``) and the sides it runs."""

    name: str
    address: str
    port: int
    repl_ip: str
    slots: int
    sides: list[PoolSide]


class PoolOut(BaseModel):
    """GET /v1/pool."""

    hosts: list[PoolHostOut]


class Side(BaseModel):
    """One side of the pair as reported."""

    host: str
    pid: int | None = None


class Service(BaseModel):
    """Where clients reach the protected service (lab placement)."""

    address: str
    client_netns: str | None = None


class ProtectionOut(BaseModel):
    """A protection as reported by GET."""

    id: str
    name: str
    placement: str
    state: str
    reason: str | None
    stopped: bool
    primary: Side | None
    secondary: Side | None
    service: Service | None
    options: dict[str, Any]
    checkpoints: int
    last_checkpoint_at: float | None
    counters: dict[str, Any]
    created_at: float
    updated_at: float


class ProtectionList(BaseModel):
    protections: list[ProtectionOut]


class EventOut(BaseModel):
    id: int
    t: float
    type: str
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    next: int | None = Field(description="pass as ?after= for the next page; null at the end")


class MetricSeries(BaseModel):
    samples: list[dict[str, Any]]


class Problem(BaseModel):
    """Every 4xx body."""

    detail: str
