"""Everything a local protected pair needs before it starts: runtime, image, accel, lab plan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from colopp.controller.local import LocalDeployment, local_deployment
from colopp.domain import ComparatorKind, PairConfig, ProtectionOptions, VmSpec
from colopp.image.builder import GuestImage, build_image
from colopp.image.cmdline import kernel_cmdline
from colopp.lab import Node
from colopp.qemu.accel import choose_accel
from colopp.qemu.runtime import DEFAULT_ROOT, QemuRuntime, provision, runtime_from


@dataclass
class LocalPair:
    """A ready-to-start local pair."""

    runtime: QemuRuntime
    image: GuestImage
    deployment: LocalDeployment
    config: PairConfig
    accel_reason: str


async def prepare_local_pair(
    state_dir: Path,
    qemu_root: Path | None,
    comparator: ComparatorKind,
    console: Console,
    checkpoint_delay_ms: int = 2000,
    prefix: str = "colopp",
    prerelease: str | None = None,
    read_prefixes: tuple[str, ...] = (),
    semiactive: bool = False,
    prerelease_rearm_ms: int | None = None,
    memory_mb: int = 256,
) -> LocalPair:
    """Provision QEMU if needed, build (or reuse) the image, choose the accelerator.

    Raises:
        ColoppError: provisioning, the image build or the lab plan failed.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = qemu_root or DEFAULT_ROOT
    if (root / "usr/bin/qemu-system-x86_64").exists():
        runtime = runtime_from(root)
    else:
        runtime = await asyncio.to_thread(provision, root, step=lambda m: console.log(m))
    console.log(f"QEMU runtime: {runtime.describe()}")
    image = await asyncio.to_thread(build_image, None, console=console)
    deployment = local_deployment(state_dir, root, prefix)
    append = kernel_cmdline(deployment.plan.guest_address.with_prefixlen)
    accel, why = await choose_accel(runtime, image.vmlinuz, image.initrd, append, state_dir)
    console.log(f"accelerator: {accel} ({why})")
    vm = VmSpec(
        "demo",
        image.vmlinuz,
        image.initrd,
        append,
        accel=accel,
        cpu="host" if accel == "kvm" else "qemu64",
        memory_mb=memory_mb,
    )
    config = PairConfig(
        vm,
        image.disk,
        deployment.slot(Node.HOST_A),
        deployment.slot(Node.HOST_B),
        options=ProtectionOptions(
            comparator=comparator,
            checkpoint_delay_ms=checkpoint_delay_ms,
            prerelease=prerelease,
            read_prefixes=read_prefixes,
            semiactive=semiactive,
            prerelease_rearm_ms=prerelease_rearm_ms,
        ),
    )
    config.options.validate()
    return LocalPair(runtime, image, deployment, config, why)
