"""Where a protection's two hosts come from.

- ``lab``: this machine's lab network, built here exactly as ``colopp demo`` builds it
  (:func:`colopp.controller.setup.prepare_local_pair`), with one agent per host namespace.
  A small holder process keeps the host-wide lab lock while the lab exists, so that the
  lock outlives a killed API (the agents and QEMUs do too) until the lab is torn down.
- ``hosts``: agents already running on two hosts (e.g. deployed by Ansible).
- ``pool``: two hosts of the configured pool (:mod:`colopp_api.live.pool`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from colopp.controller.agent_client import AgentClient
from colopp.controller.local import LocalDeployment
from colopp.controller.seam import Agent
from colopp.controller.setup import prepare_local_pair
from colopp.domain import Backend, ComparatorKind, HostSlot, PairConfig, VmSpec
from colopp.errors import ConfigError
from colopp.lab import LAB_LOCK, Lab, Node, host_lock_fd, plan_lab
from colopp_api.config import Settings, read_secret_file
from colopp_api.schemas import ProtectionCreate

LOCK_MARK = "colopp-api-lab-lock"


@dataclass
class Placement:
    """A pair's configuration plus the agents to drive it."""

    config: PairConfig
    agents: Mapping[str, Agent]
    token: str
    token_file: Path
    runtime: dict[str, Any]
    deployment: LocalDeployment | None = None
    #: Where each host's agent listens (default: the AgentClients' own addresses).
    addresses: dict[str, tuple[str, int]] | None = None

    def agent_addresses(self) -> dict[str, tuple[str, int]]:
        if self.addresses is not None:
            return self.addresses
        return {
            name: (a.host, a.port) for name, a in self.agents.items() if isinstance(a, AgentClient)
        }


def with_colopp_plus(config: PairConfig, spec: ProtectionCreate) -> PairConfig:
    """The pair's COLO++ options (pre-release rules, read prefixes, semi-active secondary)
    and its VM backend."""
    return config.with_options(
        prerelease=spec.prerelease_rules(),
        read_prefixes=tuple(spec.read_prefixes),
        prerelease_rearm_ms=spec.prerelease_rearm_ms,
        prerelease_scope=spec.prerelease_scope,
        resp_ports=tuple(spec.resp_ports),
        semiactive=spec.semiactive,
        backend=Backend(spec.backend),
    )


def spawn_lock_holder(prefix: str) -> int | None:
    """Hand this process's share of the host-wide lab lock to a detached holder process.

    flock belongs to the open file; a child that inherits the descriptor keeps the lock
    held when this process dies, until :func:`release_lock_holder` ends it.
    """
    fd = host_lock_fd()
    if fd is None:
        return None
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import signal; signal.pause()  # {LOCK_MARK} {prefix}"],
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return holder.pid


def _is_holder(pid: int) -> bool:
    try:
        return LOCK_MARK in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def release_lock_holder(pid: int | None) -> None:
    """End the lock holder (it may be our child or, after a restart, an orphan)."""
    if pid is None or not _is_holder(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


async def lab_placement(
    spec: ProtectionCreate, settings: Settings, state_dir: Path, progress: Any
) -> Placement:
    """Build the lab and its agents (waits while another process holds the lab lock).

    Raises:
        ColoppError: provisioning, image, lab or agents failed (what exists is removed).
    """
    local = await prepare_local_pair(
        state_dir,
        settings.qemu_root,
        ComparatorKind(spec.comparator),
        Console(quiet=True),
        checkpoint_delay_ms=spec.checkpoint_delay_ms,
        prefix=settings.lab_prefix,
        guest=spec.guest,
    )
    deployment = local.deployment
    progress(f"building lab {settings.lab_prefix} (waits for {LAB_LOCK})")
    try:
        await deployment.start()
    except BaseException:
        await deployment.stop()
        raise
    plan = deployment.plan
    config = dataclasses.replace(
        local.config, vm=dataclasses.replace(local.config.vm, name=spec.name[:31])
    )
    runtime = {
        "prefix": plan.prefix,
        "state_dir": str(state_dir),
        "lock_holder": spawn_lock_holder(plan.prefix),
        "service": {"address": str(plan.guest_address.ip), "client_netns": plan.netns(Node.CLIENT)},
    }
    return Placement(
        with_colopp_plus(config, spec),
        deployment.agents,
        deployment.token,
        state_dir / "agent.token",
        runtime,
        deployment,
    )


def lab_deployment(runtime: dict[str, Any], settings: Settings, token: str) -> LocalDeployment:
    """The LocalDeployment of an existing lab (after a restart), able to tear it down."""
    plan = plan_lab(str(runtime["prefix"]))
    deployment = LocalDeployment(plan, Path(runtime["state_dir"]), settings.qemu_root)
    deployment.lab = Lab.attach(plan)  # its lock is with the holder process
    deployment.token = token
    return deployment


#: A path that is never there: backend libvirt takes disk and boot from the domain.
UNSET = "/nonexistent"
#: A disk-booted server (firmware, bootloader, systemd) may take minutes under TCG.
DISK_BOOT_TIMEOUT_S = 600.0


def hosts_vm(spec: ProtectionCreate) -> VmSpec:
    """The VM of a ``hosts`` placement: a direct kernel boot when the body names kernel,
    initrd and append, else the firmware boots ``base_disk``. Backend libvirt: the
    domain's own boot wins over the kernel fallbacks set here."""
    direct = spec.backend == "libvirt" or spec.vm.kernel is not None
    return VmSpec(
        spec.name[:31],
        Path(spec.vm.kernel or UNSET) if direct else None,
        Path(spec.vm.initrd or UNSET) if direct else None,
        (spec.vm.append or "") if direct else "",
        mac=spec.vm.mac,
        memory_mb=spec.vm.memory_mb,
        vcpus=spec.vm.vcpus,
        accel=spec.vm.accel,
        cpu="host" if spec.vm.accel == "kvm" else "qemu64",
    )


async def hosts_placement(spec: ProtectionCreate, settings: Settings) -> Placement:
    """Agents on two hosts, already running.

    Raises:
        ConfigError: no agent token file configured, or it is not 0600.
        AgentError: an agent is unreachable.
    """
    assert spec.hosts is not None
    if spec.backend == "qemu" and spec.running_qmp is None and spec.running_domain is None:
        assert spec.base_disk is not None
    if settings.agent_token_file is None:
        raise ConfigError("placement hosts needs COLOPP_AGENT_TOKEN_FILE (the agents' token)")
    token = read_secret_file(settings.agent_token_file)
    vm = hosts_vm(spec)
    slots = [
        HostSlot(h.name, h.tap, str(h.repl_ip)) for h in (spec.hosts.primary, spec.hosts.secondary)
    ]
    config = PairConfig(
        vm,
        Path(spec.base_disk or UNSET),
        slots[0],
        slots[1],
        boot_timeout=DISK_BOOT_TIMEOUT_S if vm.kernel is None else 120.0,
    ).with_options(
        comparator=ComparatorKind(spec.comparator),
        checkpoint_delay_ms=spec.checkpoint_delay_ms,
    )
    agents: dict[str, AgentClient] = {}
    for host in (spec.hosts.primary, spec.hosts.secondary):
        address, port = host.endpoint()
        client = AgentClient(host.name, address, port, token)
        await client.connect(within=4)
        agents[host.name] = client
    runtime = {"service": None}
    return Placement(
        with_colopp_plus(config, spec),
        agents,
        token,
        settings.agent_token_file,
        runtime,
    )
