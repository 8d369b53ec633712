"""A running libvirt domain colopp can take over in place: its live XML in, a
:class:`~colopp.qemu.running.RunningVm` or a refusal naming what to change out (pure).

libvirt opens a virtio ``<interface>``'s tap itself, always with a virtio-net header
(IFF_VNET_HDR), and QEMU loads that NIC's state only into a QEMU whose tap has one too
("saved image requires vnet_hdr=on"). So colopp's copy and every QEMU of the protection
open their taps with ``vnet_hdr=on`` and the COLO filters carry the header
(:attr:`colopp.domain.VmSpec.vnet_hdr`). The header must stay inert: the NIC's checksum and
segmentation offloads off, so frames are whole and their checksums complete (colopp's
comparator and translator compare and rewrite TCP segments). What the domain must look
like (each refusal says which element to change):

- ``<interface type='ethernet'>`` (or ``bridge``) with ``<model type='virtio'/>``,
  ``<driver name='qemu'>`` (no vhost) whose ``<host csum='off' gso='off' tso4='off'
  tso6='off' ecn='off' ufo='off'/>`` and ``<guest csum='off' tso4='off' tso6='off'
  ecn='off' ufo='off'/>``, ``<rom enabled='no'/>`` (colopp's copy loads no option ROM),
  in PCI slot 2; its tap on a bridge;
- one ``<disk type='file' device='disk'>``, qcow2 or raw, on virtio, in PCI slot 3;
- ``<controller type='usb' model='none'/>`` and ``<memballoon model='none'/>`` (colopp's
  QEMU has neither, and the migration carries every device's state), one ``<serial>``;
- no other device (``<channel>``, ``<graphics>``, ``<video>``, ``<sound>``, ``<rng>``,
  ``<hostdev>``...).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from colopp.errors import ConfigError
from colopp.qemu.running import FORMATS, SECONDARY_SLOTS, RunningVm
from colopp.virt.domain_xml import _memory_mb

#: The NIC offloads that must be off, per ``<driver>`` child.
OFFLOADS = {
    "host": ("csum", "gso", "tso4", "tso6", "ecn", "ufo"),
    "guest": ("csum", "tso4", "tso6", "ecn", "ufo"),
}
#: Devices a taken-over domain may have (libvirt adds ps2 inputs, the PCI root and an
#: audio backend of type none itself; none of them is a PCI device).
ALLOWED_DEVICES = frozenset(
    {"emulator", "disk", "interface", "serial", "console", "controller", "input"}
    | {"memballoon", "audio"}
)
_CONTROLLERS_OK = {("pci", "pci-root"), ("usb", "none")}


def _slot(node: ET.Element) -> int | None:
    address = node.find("address[@type='pci']")
    if address is None:
        return None
    return int(str(address.get("slot", "-1")), 0)


def _nic_problems(nic: ET.Element) -> list[str]:
    problems: list[str] = []
    if nic.get("type") not in ("ethernet", "bridge"):
        problems.append(f"<interface type='{nic.get('type')}'>: use type='ethernet' or 'bridge'")
    if nic.find("model[@type='virtio']") is None:
        problems.append("the <interface> needs <model type='virtio'/>")
    driver = nic.find("driver")
    if driver is None or driver.get("name") != "qemu":
        problems.append("add <driver name='qemu'/> to the <interface> (COLO sees no vhost)")
    off = [
        f"{part} {key}"
        for part, keys in OFFLOADS.items()
        for key in keys
        if driver is None or (node := driver.find(part)) is None or node.get(key) != "off"
    ]
    if off:
        problems.append(
            "turn the NIC's offloads off: <driver name='qemu'><host csum='off' gso='off' "
            "tso4='off' tso6='off' ecn='off' ufo='off'/><guest csum='off' tso4='off' "
            f"tso6='off' ecn='off' ufo='off'/></driver> (on now: {', '.join(off)})"
        )
    rom = nic.find("rom")
    if rom is None or rom.get("enabled") != "no":
        problems.append("add <rom enabled='no'/> to the <interface>: colopp's copy loads none")
    if nic.find("target") is None or not nic.find("target").get("dev"):  # type: ignore[union-attr]
        problems.append("the running <interface> names no tap (<target dev=...>)")
    if nic.find("mac") is None:
        problems.append("give the <interface> a <mac address=...>")
    if _slot(nic) != SECONDARY_SLOTS["nic"]:
        problems.append(
            "put the <interface> in PCI slot 2: <address type='pci' domain='0x0000' "
            "bus='0x00' slot='0x02' function='0x0'/>"
        )
    return problems


def _disk_problems(disks: list[ET.Element]) -> list[str]:
    if len(disks) != 1:
        return [f"it has {len(disks)} <disk>s (cdroms included); colopp takes one disk"]
    disk = disks[0]
    problems: list[str] = []
    source = disk.find("source")
    if disk.get("type") != "file" or disk.get("device") != "disk" or source is None:
        problems.append("give it one <disk type='file' device='disk'> with <source file=...>")
    driver = disk.find("driver")
    if driver is None or driver.get("type") not in FORMATS:
        problems.append(f"the <disk>'s <driver type=...> must be {' or '.join(FORMATS)}")
    target = disk.find("target")
    if target is None or target.get("bus") != "virtio":
        problems.append("attach the <disk> with <target dev='vda' bus='virtio'/>")
    if _slot(disk) != SECONDARY_SLOTS["disk"]:
        problems.append(
            "put the <disk> in PCI slot 3: <address type='pci' domain='0x0000' bus='0x00' "
            "slot='0x03' function='0x0'/>"
        )
    return problems


def _device_problems(devices: ET.Element) -> list[str]:
    problems: list[str] = []
    others = sorted({d.tag for d in devices} - ALLOWED_DEVICES)
    if others:
        problems.append(f"remove the <{'>, <'.join(others)}> device(s): colopp copies none")
    for ctl in devices.findall("controller"):
        kind, model = ctl.get("type"), ctl.get("model")
        if (kind, model) not in _CONTROLLERS_OK and kind != "ide":
            what = "<controller type='usb' model='none'/>" if kind == "usb" else "no such"
            problems.append(f"<controller type='{kind}' model='{model}'>: use {what}")
    balloon = devices.find("memballoon")
    if balloon is not None and balloon.get("model") != "none":
        problems.append("add <memballoon model='none'/>: colopp's QEMU has no balloon")
    if len(devices.findall("serial")) != 1:
        problems.append("give the domain one <serial> (colopp's copy has one serial port)")
    return problems


def inspect_domain(xml: str) -> RunningVm:
    """Read a running domain's live XML (``virDomainGetXMLDesc``).

    Raises:
        ConfigError: colopp cannot take it over live; every problem is named with the
            element to change.
    """
    try:
        root = ET.fromstring(xml)  # noqa: S314  (the local libvirtd's answer)
    except ET.ParseError as exc:
        raise ConfigError(f"domain XML does not parse: {exc}") from exc
    name = (root.findtext("name") or "?").strip()
    devices = root.find("devices")
    if devices is None:
        raise ConfigError(f"libvirt domain {name!r} has no <devices>")
    nics = devices.findall("interface")
    problems = [] if len(nics) == 1 else [f"it has {len(nics)} <interface>s; give it one"]
    for nic in nics[:1]:
        problems += _nic_problems(nic)
    problems += _disk_problems(devices.findall("disk"))
    problems += _device_problems(devices)
    os_type = root.find("os/type")
    machine = "pc" if os_type is None else str(os_type.get("machine", "pc"))
    if machine != "pc" and not machine.startswith("pc-i440fx"):
        problems.append(f"machine {machine!r}: use <type machine='pc'> (colopp runs i440fx)")
    if problems:
        raise ConfigError(
            f"running libvirt domain {name!r} cannot be taken over: " + "; ".join(problems)
        )
    nic, disk = nics[0], devices.findall("disk")[0]
    cpu = root.find("cpu")
    model = (root.findtext("cpu/model") or "").strip()
    cpu_name = "host" if cpu is not None and cpu.get("mode") == "host-passthrough" else model
    kernel = (root.findtext("os/kernel") or "").strip()
    initrd = (root.findtext("os/initrd") or "").strip()
    return RunningVm(
        memory_mb=_memory_mb(root),
        vcpus=int((root.findtext("vcpu") or "1").strip()),
        cpu=cpu_name or "qemu64",
        accel="kvm" if root.get("type") == "kvm" else "tcg",
        kernel=Path(kernel) if kernel else None,
        initrd=Path(initrd) if initrd else None,
        append=(root.findtext("os/cmdline") or "").strip(),
        mac=str(nic.find("mac").get("address")).lower(),  # type: ignore[union-attr]
        tap=str(nic.find("target").get("dev")),  # type: ignore[union-attr]
        disk=Path(str(disk.find("source").get("file"))),  # type: ignore[union-attr]
        disk_format=str(disk.find("driver").get("type")),  # type: ignore[union-attr]
        vnet_hdr=True,
    )
