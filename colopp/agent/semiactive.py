"""The semi-active secondary on an agent: shrink its vCPUs once in COLO, restore them in
full before it is promoted (or stopped)."""

from __future__ import annotations

import logging

from colopp.agent.side import Side
from colopp.errors import ConfigError, QmpError
from colopp.vcpu import VcpuError
from colopp.vcpu.shrink import restore, shrink

log = logging.getLogger(__name__)

# The secondary's vCPU threads share half of the host CPUs QEMU may use and, together, get
# at most this many CPUs of time (a cgroup cap).
SEMIACTIVE_FRACTION = 0.5
SEMIACTIVE_QUOTA = 0.5


async def shrink_secondary(side: Side) -> None:
    """Shrink (once). A host that cannot (no cpu cgroup controller, affinity refused)
    keeps a full secondary: logged, not fatal; the status shows no ``vcpu`` entry."""
    if side.vcpu is not None:
        return
    try:
        side.vcpu = await shrink(
            side.monitor,
            None,
            SEMIACTIVE_QUOTA,
            fraction=SEMIACTIVE_FRACTION,
            cgroup_name=f"{side.vm.name}-secondary-{side.process.pid}",
        )
    except (VcpuError, ConfigError, QmpError, OSError) as exc:
        log.warning("semi-active shrink failed: %s", exc)


async def restore_vcpus(side: Side) -> None:
    """Undo the shrink, if any; never raises (promotion must go on)."""
    state, side.vcpu = side.vcpu, None
    if state is None:
        return
    try:
        await restore(side.monitor, state)
    except VcpuError as exc:
        log.warning("vCPU restore incomplete: %s", exc)
