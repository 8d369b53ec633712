"""The semi-active secondary on an agent: shrink its vCPUs once in COLO, restore them in
full before it is promoted (or stopped), and keep the cap across an agent restart."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from colopp.agent.side import Side
from colopp.domain import Backend
from colopp.errors import ConfigError, QmpError
from colopp.vcpu import VcpuError
from colopp.vcpu.cgroup import find_cpu_controller
from colopp.vcpu.keep import keep_cap
from colopp.vcpu.shrink import restore, shrink

if TYPE_CHECKING:
    from colopp.virt.libvirt_domain import DomainProcess
    from colopp.virt.libvirt_monitor import LibvirtMonitor

log = logging.getLogger(__name__)

# The secondary's vCPU threads share half of the host CPUs QEMU may use and, together, get
# at most this many CPUs of time (a cgroup cap, in short periods: colopp.vcpu.cgroup).
SEMIACTIVE_FRACTION = 0.5
# Half a CPU: enough for the secondary to keep up under the bench's read-mostly load. A
# lower cap (0.25, measured in session 8) makes it lag: every write's answer then waits for
# a checkpoint, the pair answers fewer requests and the CPU per request rises (README, "The
# backup host's CPU"); measured again after the replay fix (session 10: 0.25 and 0.3 raise the
# early share but not the CPU saved per request; README, "A binding cap after the replay fix").
# ``COLOPP_SEMIACTIVE_QUOTA`` (the agent's environment) overrides it.
SEMIACTIVE_QUOTA = 0.5
QUOTA_ENV = "COLOPP_SEMIACTIVE_QUOTA"


def semiactive_quota(environ: Mapping[str, str] = os.environ) -> float:
    """The cap in CPUs: :data:`SEMIACTIVE_QUOTA`, or a valid override (0 < q <= 64)."""
    text = environ.get(QUOTA_ENV)
    if text is None:
        return SEMIACTIVE_QUOTA
    try:
        quota = float(text)
    except ValueError:
        quota = float("nan")
    if not 0 < quota <= 64:  # NaN fails too
        log.warning("%s=%r is not a CPU quota; using %s", QUOTA_ENV, text, SEMIACTIVE_QUOTA)
        return SEMIACTIVE_QUOTA
    return quota


async def shrink_secondary(side: Side) -> None:
    """Shrink (once). A host that cannot (no cpu cgroup controller, affinity refused)
    keeps a full secondary: logged, not fatal; the status shows no ``vcpu`` entry."""
    if side.vcpu is not None:
        return
    if side.backend is Backend.LIBVIRT:
        await _shrink_domain(side)
        return
    try:
        side.vcpu = await shrink(
            side.monitor,
            None,
            semiactive_quota(),
            fraction=SEMIACTIVE_FRACTION,
            cgroup_name=cap_name(side),
        )
    except (VcpuError, ConfigError, QmpError, OSError) as exc:
        log.warning("semi-active shrink failed: %s", exc)


def cap_name(side: Side) -> str:
    """The cgroup of a QEMU-direct secondary's cap (under ``colopp/``)."""
    return f"{side.vm.name}-secondary-{side.process.pid}"


def readopt_vcpus(side: Side, recorded: dict[str, Any] | None) -> None:
    """A restarted agent's view of the shrink in force (``side.vcpu``, from the state file):
    the cgroup cap of a QEMU-direct secondary found, checked and put back where something
    moved (libvirt keeps its own pins and quota in the live domain). Never raises: a cap
    that cannot be re-adopted is logged, and the secondary runs on."""
    state = side.vcpu
    if state is None or state.quota is None or side.backend is Backend.LIBVIRT:
        return
    try:
        controller = find_cpu_controller()
        kept = None
        if controller is not None:
            kept = keep_cap(
                controller,
                cap_name(side),
                state.pid,
                state.thread_ids,
                state.quota,
                (recorded or {}).get("cap"),
            )
    except (VcpuError, ConfigError) as exc:
        log.warning("semi-active cap of %s not re-adopted: %s", side.vm.name, exc)
        return
    if kept is None:
        log.warning("semi-active cap of %s not re-adopted: no cgroup cpu controller", side.vm.name)
        return
    cap, repaired = kept
    side.vcpu = dataclasses.replace(state, cap=cap)
    if repaired:
        log.warning("semi-active cap in %s put back: %s", cap.limited, ", ".join(repaired))
    else:
        log.info(
            "semi-active cap in %s kept (%d us per %d us)", cap.limited, cap.quota_us, cap.period_us
        )


async def restore_vcpus(side: Side) -> None:
    """Undo the shrink, if any; never raises (promotion must go on)."""
    state, side.vcpu = side.vcpu, None
    if state is None:
        return
    try:
        if side.backend is Backend.LIBVIRT:
            from colopp.virt.libvirt_vcpu import restore_domain

            await restore_domain(_domain_of(side), _libvirt_monitor(side), state)
        else:
            await restore(side.monitor, state)
    except (VcpuError, QmpError) as exc:
        log.warning("vCPU restore incomplete: %s", exc)


async def _shrink_domain(side: Side) -> None:
    """libvirt's way: pinVcpuFlags + vcpu_quota (same plan, same fraction and quota)."""
    from colopp.virt.libvirt_vcpu import shrink_domain

    try:
        side.vcpu = await shrink_domain(
            _domain_of(side), _libvirt_monitor(side), semiactive_quota(), SEMIACTIVE_FRACTION
        )
    except (VcpuError, ConfigError, QmpError) as exc:
        log.warning("semi-active shrink (libvirt) failed: %s", exc)


def _domain_of(side: Side) -> DomainProcess:
    from colopp.virt.libvirt_domain import DomainProcess

    assert isinstance(side.process, DomainProcess)
    return side.process


def _libvirt_monitor(side: Side) -> LibvirtMonitor:
    from colopp.virt.libvirt_monitor import LibvirtMonitor

    assert isinstance(side.monitor, LibvirtMonitor)
    return side.monitor
