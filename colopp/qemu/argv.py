"""What a primary or a secondary QEMU is started with: a spec in, argv out (pure)."""

from __future__ import annotations

import os
from pathlib import Path

from colopp.domain import READ_PREFIX_PATTERN, ComparatorKind, Ports, Role, SideSpec, VmSpec
from colopp.qemu.render import render_files
from colopp.qemu.runtime import QemuRuntime

# The domain's words are defined in colopp.domain; re-exported for older callers.
__all__ = [
    "READ_PREFIX_PATTERN",
    "ComparatorKind",
    "Ports",
    "Role",
    "SideSpec",
    "VmSpec",
    "qemu_argv",
    "template_names",
    "template_values",
]


#: ``COLOPP_MIRROR=qemu`` in the agent's environment: with colopp's comparator, the primary
#: QEMU keeps its own TCP ``mirror0`` (no mirror process; the comparator follows, since it
#: looks for the unix socket): for side-by-side runs (README, Bulk traffic, session 20).
MIRROR_ENV = "COLOPP_MIRROR"


def mirror_process_wanted() -> bool:
    """Not turned off by :data:`MIRROR_ENV` (the agent's environment, read where it starts
    QEMU or adds a primary's chardevs; the builders here stay pure)."""
    return os.environ.get(MIRROR_ENV) != "qemu"


def template_names(side: SideSpec, *, batched_mirror: bool = True) -> list[str]:
    """Which templates make up one side's command line (``batched_mirror``: with colopp's
    comparator, ``mirror0`` is the mirror process's unix socket)."""
    if side.role is Role.SECONDARY:
        relayed = side.ingress_relay or side.rewriter_relay
        red = "secondary-relay.conf" if relayed else "secondary-red.conf"
        return ["vm.conf", red, "secondary.conf"]
    if side.standalone:
        return ["vm.conf", "standalone.conf"]
    if side.options.comparator is ComparatorKind.BUILTIN:
        return ["vm.conf", "primary.conf", "mirror-tcp.conf", "compare-builtin.conf"]
    mirror = "mirror-batched.conf" if batched_mirror else "mirror-tcp.conf"
    names = ["vm.conf", "primary.conf", mirror]
    if side.options.client_frames:
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
        "vnet_hdr": "on" if vm.vnet_hdr else "off",
        "tap": side.tap,
        "disk": side.disk,
        "active_disk": side.active_disk,
        "hidden_disk": side.hidden_disk,
        "serial_log": side.serial_log,
        "pidfile": side.pidfile,
        "qmp_socket": side.qmp_socket,
        "qmp_compare_socket": side.qmp_compare_socket,
        "compare0_socket": side.compare0_socket,
        "mirror_socket": side.mirror_socket,
        "compare_out_socket": side.compare_out_socket,
        "client_socket": side.client_socket,
        "local_repl_ip": side.local_repl_ip,
        "peer_repl_ip": side.peer_repl_ip,
        "mirror_port": side.ports.mirror,
        "compare_port": side.ports.compare,
        "red0_socket": side.red0_socket,
        "red1_socket": side.red1_socket,
    }


def qemu_argv(
    runtime: QemuRuntime,
    vm: VmSpec,
    side: SideSpec,
    folder: Path | None = None,
    *,
    batched_mirror: bool = True,
) -> list[str]:
    """The full argv that starts one side's QEMU.

    Raises:
        ConfigError: invalid spec or template.
    """
    vm.validate()
    side.validate()
    names = template_names(side, batched_mirror=batched_mirror)
    if vm.kernel is not None:  # direct kernel boot; without it SeaBIOS boots the disk
        names.insert(1, "kernel.conf")
    if vm.vnet_hdr:  # the NIC's offloads off (its tap's virtio-net header stays inert)
        names.append(
            "vnet-hdr-rxtx.conf"
            if vm.tx_offload
            else "vnet-hdr-rx.conf"
            if vm.rx_offload
            else "vnet-hdr.conf"
        )
    body = render_files(names, template_values(vm, side), folder)
    return [*runtime.system_argv(), *body]
