"""Everything a local protected pair needs before it starts: runtime, image, accel, lab plan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from colopp.controller.local import LocalDeployment, local_deployment
from colopp.domain import Backend, ComparatorKind, PairConfig, ProtectionOptions, VmSpec
from colopp.errors import ConfigError
from colopp.image.builder import GuestImage, build_image
from colopp.image.cmdline import kernel_cmdline
from colopp.image.debian import DebianImage, build_debian_image
from colopp.lab import Node
from colopp.qemu.accel import choose_accel
from colopp.qemu.runtime import DEFAULT_ROOT, QemuRuntime, provision, runtime_from

#: The guests a local pair can protect: kvd (kernel + busybox initramfs, 256 MiB, 1 vCPU)
#: or debian (Debian 12 with systemd booting its own disk, 1 GiB, 2 vCPUs).
GUESTS: tuple[str, ...] = ("kvd", "debian")
#: A systemd guest under TCG on shared cores boots in minutes, not seconds.
DEBIAN_BOOT_TIMEOUT_S = 600.0


@dataclass
class LocalPair:
    """A ready-to-start local pair."""

    runtime: QemuRuntime
    image: GuestImage | DebianImage
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
    prerelease_scope: str = "global",
    resp_ports: tuple[int, ...] = (),
    guest: str = "kvd",
    memory_mb: int | None = None,
    backend: Backend = Backend.QEMU,
    vm_name: str = "demo",
    rx_offload: bool = False,
    tx_offload: bool = False,
) -> LocalPair:
    """Provision QEMU if needed, build (or reuse) the image, choose the accelerator.

    ``rx_offload``: the guest receives the client's segments coalesced
    (:attr:`colopp.domain.VmSpec.rx_offload`); ``tx_offload``: it also sends them so
    (:attr:`~colopp.domain.VmSpec.tx_offload`).

    ``backend`` libvirt: the agents run libvirt domains; a domain named ``vm_name`` must be
    defined in the hosts' libvirtd (see :mod:`colopp.virt.libvirt_domain`).

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
    if guest not in GUESTS:
        raise ConfigError(f"unknown guest {guest!r}: one of {', '.join(GUESTS)}")
    deployment = local_deployment(state_dir, root, prefix)
    plan = deployment.plan
    append = kernel_cmdline(
        plan.guest_address.with_prefixlen, ip6_cidr=plan.guest_address6.with_prefixlen
    )
    image: GuestImage | DebianImage
    if guest == "debian":
        qemu_img = runtime.tool_argv("qemu-img")
        image = await asyncio.to_thread(
            build_debian_image,
            None,
            console=console,
            qemu_img=qemu_img,
            guest_address=deployment.plan.guest_address.with_prefixlen,
        )
    else:
        image = await asyncio.to_thread(build_image, None, console=console)
    # The accelerator probe boots the kvd guest (it prints the ready line within seconds);
    # the Debian initramfs would never print it, and KVM hosts would fall back to TCG.
    probe = image
    if not isinstance(probe, GuestImage):
        probe = await asyncio.to_thread(build_image, None, console=console)
    accel, why = await choose_accel(runtime, probe.vmlinuz, probe.initrd, append, state_dir)
    console.log(f"accelerator: {accel} ({why})")
    cpu = "host" if accel == "kvm" else "qemu64"
    if isinstance(image, DebianImage):  # boots its own disk through SeaBIOS and extlinux
        vm = VmSpec(
            vm_name,
            None,
            None,
            "",
            memory_mb=memory_mb or image.memory_mb,
            vcpus=image.vcpus,
            accel=accel,
            cpu=cpu,
            vnet_hdr=rx_offload,
            rx_offload=rx_offload,
            tx_offload=tx_offload,
        )
    else:
        vm = VmSpec(
            vm_name,
            image.vmlinuz,
            image.initrd,
            append,
            accel=accel,
            cpu=cpu,
            vnet_hdr=rx_offload,
            rx_offload=rx_offload,
            tx_offload=tx_offload,
            memory_mb=memory_mb or 256,
        )
    config = PairConfig(
        vm,
        image.disk,
        deployment.slot(Node.HOST_A),
        deployment.slot(Node.HOST_B),
        boot_timeout=DEBIAN_BOOT_TIMEOUT_S if guest == "debian" else 120.0,
        options=ProtectionOptions(
            comparator=comparator,
            checkpoint_delay_ms=checkpoint_delay_ms,
            prerelease=prerelease,
            read_prefixes=read_prefixes,
            semiactive=semiactive,
            prerelease_rearm_ms=prerelease_rearm_ms,
            prerelease_scope=prerelease_scope,
            resp_ports=resp_ports,
            backend=backend,
        ),
    )
    config.options.validate()
    return LocalPair(runtime, image, deployment, config, why)
