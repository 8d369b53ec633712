"""libvirt domain XML for COLO sides, and the checks on a user's domain (pure).

libvirt has no COLO support: what it can express (name, memory, vCPUs, CPU model, direct
kernel boot, serial log, the emulator) is libvirt XML; the COLO network filters, chardevs,
the quorum/replication disks and ``-incoming defer`` go into ``<qemu:commandline>``, from
the same qemu-configs templates the QEMU-direct backend renders. The NIC is a
``<qemu:commandline>`` netdev too: libvirt's own ``<interface type='ethernet'>`` always opens
the tap with a vnet header, and colopp's filters need ``vnet_hdr=off`` and ``vhost=off``.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from colopp.domain import SideSpec, VmSpec
from colopp.errors import ConfigError
from colopp.qemu.argv import template_names, template_values
from colopp.qemu.render import render_files

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
NETNS_ENV = "COLOPP_NETNS"
# vm.conf lines libvirt renders itself from the XML (or that it must own, like -name).
_LIBVIRT_OWNS = {
    "-name",
    "-accel",
    "-cpu",
    "-m",
    "-smp",
    "-nodefaults",
    "-display",
    "-vga",
    "-kernel",
    "-initrd",
    "-append",
    "-serial",
    "-pidfile",
}


def side_domain_name(vm_name: str, host: str) -> str:
    """The libvirt name of the COLO side of ``vm_name`` on ``host`` (one side per host;
    the name stays when the side changes role at a failover)."""
    return f"colopp-{vm_name}-{host}"


@dataclass(frozen=True)
class DomainTemplate:
    """What colopp takes from the user's domain."""

    name: str
    memory_mb: int
    vcpus: int
    kernel: Path | None
    initrd: Path | None
    cmdline: str | None
    mac: str | None
    domain_type: str
    disk: Path | None = None  # the one disk COLO replicates (copied to each side)


def _text(root: ET.Element, path: str) -> str | None:
    found = root.find(path)
    return found.text.strip() if found is not None and found.text else None


def _memory_mb(root: ET.Element) -> int:
    node = root.find("memory")
    if node is None or not node.text:
        raise ConfigError("domain XML has no <memory>")
    factor = {"b": 1 / 1048576, "bytes": 1 / 1048576, "kib": 1 / 1024, "k": 1 / 1024}
    factor |= {"mib": 1, "m": 1, "gib": 1024, "g": 1024}
    unit = node.get("unit", "KiB").lower()
    if unit not in factor:
        raise ConfigError(f"domain <memory unit='{unit}'> is not understood")
    return int(int(node.text) * factor[unit])


def check_protectable(xml: str) -> DomainTemplate:
    """Read a user's domain and refuse what COLO cannot protect, naming what to change.

    Raises:
        ConfigError: not parseable, or a configuration COLO cannot replicate.
    """
    try:
        # The XML comes from the local libvirtd (root-owned), not from the network.
        root = ET.fromstring(xml)  # noqa: S314
    except ET.ParseError as exc:
        raise ConfigError(f"domain XML does not parse: {exc}") from exc
    name = _text(root, "name") or "?"
    problems: list[str] = []
    interfaces = root.findall("devices/interface")
    if len(interfaces) != 1:
        problems.append(f"it has {len(interfaces)} <interface>s; COLO protects exactly one NIC")
    mac: str | None = None
    for nic in interfaces:
        driver = nic.find("driver")
        backend = driver.get("name") if driver is not None else None
        if backend in (None, "vhost") and nic.find("model[@type='virtio']") is not None:
            problems.append(
                "its virtio <interface> uses vhost-net (COLO's filter-mirror/redirector/"
                "rewriter refuse vhost): add <driver name='qemu'/> to the <interface>"
            )
        if nic.get("type") not in ("ethernet", "bridge"):
            problems.append(
                f"its <interface type='{nic.get('type')}'> cannot be replicated: use "
                "type='ethernet' with <target dev='TAP' managed='no'/> (colopp's tap)"
            )
        mac_node = nic.find("mac")
        mac = mac_node.get("address") if mac_node is not None else None
    disks = root.findall("devices/disk[@device='disk']")
    if len(disks) > 1:
        problems.append(f"it has {len(disks)} disks; COLO replicates one: detach the others")
    disk: Path | None = None
    for node in disks:
        source = node.find("source")
        if node.get("type") != "file" or source is None or not source.get("file"):
            problems.append(
                f"its <disk type='{node.get('type')}'> is not a file: colopp replicates a "
                "file-backed disk (qcow2 or raw) with <source file='...'/>"
            )
        else:
            disk = Path(str(source.get("file")))
    for tag in ("hostdev", "filesystem", "shmem"):
        if root.find(f"devices/{tag}") is not None:
            problems.append(f"<{tag}> devices are not replicated by COLO: remove them")
    if problems:
        raise ConfigError(f"libvirt domain {name!r} cannot be protected: " + "; ".join(problems))
    vcpus = int(_text(root, "vcpu") or "1")
    return DomainTemplate(
        name=name,
        memory_mb=_memory_mb(root),
        vcpus=vcpus,
        kernel=Path(k) if (k := _text(root, "os/kernel")) else None,
        initrd=Path(i) if (i := _text(root, "os/initrd")) else None,
        cmdline=_text(root, "os/cmdline"),
        mac=mac.lower() if mac else None,
        domain_type=root.get("type", "kvm"),
        disk=disk,
    )


def vm_from_template(vm: VmSpec, template: DomainTemplate) -> VmSpec:
    """The VM colopp protects: the user's domain's memory, vCPUs, MAC and boot files over
    the controller's defaults (the accelerator stays colopp's choice)."""
    changes: dict[str, object] = {"memory_mb": template.memory_mb, "vcpus": template.vcpus}
    if template.mac:
        changes["mac"] = template.mac
    if template.kernel is None:  # no <kernel>: the firmware boots the domain's disk
        changes |= {"kernel": None, "initrd": None, "append": ""}
    else:
        changes["kernel"] = template.kernel
        if template.initrd:
            changes["initrd"] = template.initrd
        if template.cmdline:
            changes["append"] = template.cmdline
    out = dataclasses.replace(vm, **changes)  # type: ignore[arg-type]
    out.validate()
    return out


def _split_pairs(argv: list[str]) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        option = argv[i]
        if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            pairs.append((option, argv[i + 1]))
            i += 2
        else:
            pairs.append((option, None))
            i += 1
    return pairs


def colo_commandline(vm: VmSpec, side: SideSpec, folder: Path | None = None) -> list[str]:
    """The COLO part of the side's QEMU argv (what libvirt cannot express), from the same
    templates as the QEMU-direct backend, minus what the domain XML renders, plus
    colopp's extra QMP monitor for the comparator."""
    vm.validate()
    side.validate()
    body = render_files(template_names(side), template_values(vm, side), folder)
    out: list[str] = []
    for option, value in _split_pairs(body):
        if option in _LIBVIRT_OWNS:
            continue
        # libvirt talks QMP on its own monitor; colopp reaches it through libvirt
        # (qemuMonitorCommand); only the comparator keeps a socket of its own.
        if option == "-qmp" and value is not None and str(side.qmp_socket) in value:
            continue
        out += [option] if value is None else [option, value]
    return out


def side_domain_xml(
    vm: VmSpec,
    side: SideSpec,
    host: str,
    emulator: Path,
    netns: str | None,
    folder: Path | None = None,
    *,
    direct_boot: bool = True,
) -> str:
    """The full libvirt XML of one COLO side (``netns``: the wrapper's COLOPP_NETNS;
    ``direct_boot`` False: the firmware boots the replicated disk, as the user's domain
    without ``<kernel>`` does)."""
    ET.register_namespace("qemu", QEMU_NS)
    domain = ET.Element("domain", type="kvm" if vm.accel == "kvm" else "qemu")
    ET.SubElement(domain, "name").text = side_domain_name(vm.name, host)
    ET.SubElement(domain, "memory", unit="MiB").text = str(vm.memory_mb)
    ET.SubElement(domain, "vcpu", placement="static").text = str(vm.vcpus)
    os_node = ET.SubElement(domain, "os")
    ET.SubElement(os_node, "type", arch="x86_64", machine="pc").text = "hvm"
    if direct_boot:
        ET.SubElement(os_node, "kernel").text = str(vm.kernel)
        ET.SubElement(os_node, "initrd").text = str(vm.initrd)
        ET.SubElement(os_node, "cmdline").text = vm.append
    # Without <acpi/> libvirt 9.0 passes -no-acpi, an option QEMU 11 no longer has.
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
    if vm.cpu == "host":
        ET.SubElement(domain, "cpu", mode="host-passthrough")
    else:
        cpu = ET.SubElement(domain, "cpu", mode="custom", match="exact", check="none")
        ET.SubElement(cpu, "model", fallback="forbid").text = vm.cpu
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(domain, event).text = "destroy"
    devices = ET.SubElement(domain, "devices")
    ET.SubElement(devices, "emulator").text = str(emulator)
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(side.serial_log))
    ET.SubElement(devices, "controller", type="usb", model="none")
    ET.SubElement(devices, "memballoon", model="none")
    commandline = ET.SubElement(domain, f"{{{QEMU_NS}}}commandline")
    # libvirt passes -boot strict=on: only devices with a bootindex may boot; the
    # templates give the replicated virtio disk bootindex=1.
    for arg in colo_commandline(vm, side, folder):
        ET.SubElement(commandline, f"{{{QEMU_NS}}}arg", value=arg)
    if netns:
        ET.SubElement(commandline, f"{{{QEMU_NS}}}env", name=NETNS_ENV, value=netns)
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")
