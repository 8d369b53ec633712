"""A fleet on this machine: a three-host lab, an agent per host, small kvd guests.

Used by the fleet integration test and ``bench.fleet``. The guest of the protection in
fleet slot ``k`` answers at ``198.18.0.(100 + k)`` (and ``fd63:6f6c:6f70::(100 + k)``,
hex digits as the lab writes them) with MAC ``52:54:00:c0:11:<k>``, behind tap ``cpp<k>``
on every host (created here, as an operator's host configuration would).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from colopp.controller.local import LocalDeployment, local_deployment
from colopp.domain import ProtectionOptions, VmSpec
from colopp.fleet.fleet import Fleet, FleetProtection
from colopp.fleet.pool import TAP_PREFIX, PoolMember, fleet_slot
from colopp.image.builder import GuestImage, build_image
from colopp.image.cmdline import kernel_cmdline
from colopp.lab import Network, Node
from colopp.qemu.accel import choose_accel
from colopp.qemu.runtime import DEFAULT_ROOT, provision, runtime_from

GUEST_BASE = 100


def guest_address(slot: int) -> ipaddress.IPv4Interface:
    """The service address of the guest in fleet slot ``slot``."""
    return ipaddress.IPv4Interface(f"198.18.0.{GUEST_BASE + slot}/24")


@dataclass
class LocalFleet:
    """The lab, its agents and the fleet over them."""

    deployment: LocalDeployment
    fleet: Fleet
    image: GuestImage
    accel: str
    memory_mb: int

    @classmethod
    async def start(
        cls,
        state_dir: Path,
        qemu_root: Path | None,
        prefix: str,
        taps: int = 3,
        memory_mb: int = 192,
        console: Console | None = None,
    ) -> LocalFleet:
        """Build the three-host lab (waits for the host's lab lock), start the agents and
        make taps ``cpp0`` .. ``cpp<taps - 1>`` on every host.

        Raises:
            ColoppError: provisioning, the image, the lab or an agent failed (what was
                built is removed).
        """
        console = console or Console(quiet=True)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        root = qemu_root or DEFAULT_ROOT
        if (root / "usr/bin/qemu-system-x86_64").exists():
            runtime = runtime_from(root)
        else:
            runtime = await asyncio.to_thread(provision, root, step=console.log)
        image = await asyncio.to_thread(build_image, None, console=console)
        append = kernel_cmdline(guest_address(0).with_prefixlen)
        accel, _why = await choose_accel(runtime, image.vmlinuz, image.initrd, append, state_dir)
        deployment = local_deployment(state_dir, root, prefix, hosts=3)
        try:
            await deployment.start()
            lab = deployment.lab
            assert lab is not None
            for node in deployment.hosts:
                for k in range(taps):  # pyroute2 runs its own loop: not on this one
                    await asyncio.to_thread(lab.add_tap, node, f"{TAP_PREFIX}{k}")
        except BaseException:
            await deployment.stop()
            raise
        plan = deployment.plan
        members = [
            PoolMember(
                node.value,
                str(plan.address(node, Network.MANAGEMENT)),
                str(plan.address(node, Network.REPLICATION)),
                port=deployment.agents[node.value].port,
            )
            for node in deployment.hosts
        ]
        return cls(deployment, Fleet(members, deployment.token), image, accel, memory_mb)

    def vm(self, name: str, slot: int) -> VmSpec:
        """The kvd guest of fleet slot ``slot``."""
        six = ipaddress.IPv6Interface(f"fd63:6f6c:6f70::{GUEST_BASE + slot}/64")
        append = kernel_cmdline(guest_address(slot).with_prefixlen, ip6_cidr=str(six))
        return VmSpec(
            name,
            self.image.vmlinuz,
            self.image.initrd,
            append,
            mac=f"52:54:00:c0:11:{slot:02x}",
            memory_mb=self.memory_mb,
            accel=self.accel,
            cpu="host" if self.accel == "kvm" else "qemu64",
        )

    async def protect(
        self, name: str, options: ProtectionOptions | None = None
    ) -> tuple[FleetProtection, str]:
        """Protect one more guest where placement puts it; the protection and its
        service address (``IP:80``)."""
        slot = fleet_slot(p.slot for p in self.fleet.protections.values())
        made = await self.fleet.protect(
            name, self.vm(name, slot), self.image.disk, options or ProtectionOptions()
        )
        return made, f"{guest_address(made.slot).ip}:80"

    def cut(self, host: str, up: bool = False) -> None:
        """Pull (or plug back) every cable of ``host``: a dead host, as its peers see it."""
        assert self.deployment.lab is not None
        self.deployment.lab.set_node_links(Node(host), up)

    async def close(self) -> None:
        """Stop every protection, the agents and the lab; never raises."""
        try:
            await self.fleet.close()
        finally:
            await self.deployment.stop()
