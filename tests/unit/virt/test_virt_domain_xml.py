"""The libvirt XML of COLO sides and the checks on a user's domain (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from colopp.domain import Role, SideSpec, VmSpec
from colopp.errors import ConfigError
from colopp.virt.domain_xml import (
    NETNS_ENV,
    QEMU_NS,
    DomainTemplate,
    check_protectable,
    colo_commandline,
    side_domain_xml,
    vm_from_template,
)

VM = VmSpec("web", Path("/img/vmlinuz"), Path("/img/initrd"), "console=ttyS0")


def _side(role: Role) -> SideSpec:
    return SideSpec(
        role, Path("/run/c/p"), "tap0", Path("/run/c/p/disk.qcow2"), "10.0.0.1", "10.0.0.2"
    )


def _user_domain(interface: str, extra: str = "") -> str:
    return f"""<domain type='kvm'><name>web</name><memory unit='KiB'>524288</memory>
    <vcpu>2</vcpu><os><type>hvm</type><kernel>/k</kernel><initrd>/i</initrd>
    <cmdline>console=ttyS0 ip=1</cmdline></os><devices>{interface}{extra}</devices></domain>"""


GOOD_NIC = """<interface type='ethernet'><mac address='52:54:00:AA:00:01'/>
<target dev='tap0' managed='no'/><model type='virtio'/><driver name='qemu'/></interface>"""


def test_a_protectable_domain_gives_its_memory_vcpus_mac_and_boot_files() -> None:
    template = check_protectable(_user_domain(GOOD_NIC))
    vm = vm_from_template(VM, template)
    assert (vm.memory_mb, vm.vcpus, vm.mac) == (512, 2, "52:54:00:aa:00:01")
    assert (vm.kernel, vm.initrd, vm.append) == (Path("/k"), Path("/i"), "console=ttyS0 ip=1")
    assert vm.accel == VM.accel  # colopp's accelerator choice stays


@pytest.mark.parametrize(
    ("nic", "extra", "needle"),
    [
        (GOOD_NIC.replace("name='qemu'", "name='vhost'"), "", "add <driver name='qemu'/>"),
        (GOOD_NIC.replace("<driver name='qemu'/>", ""), "", "vhost-net"),
        (GOOD_NIC.replace("type='ethernet'", "type='network'"), "", "type='ethernet'"),
        ("", "", "0 <interface>s"),
        (GOOD_NIC + GOOD_NIC, "", "2 <interface>s"),
        (GOOD_NIC, "<hostdev mode='subsystem'/>", "<hostdev>"),
    ],
)
def test_unprotectable_domains_are_refused_naming_the_change(
    nic: str, extra: str, needle: str
) -> None:
    with pytest.raises(ConfigError, match="cannot be protected") as err:
        check_protectable(_user_domain(nic, extra))
    assert needle in str(err.value)


DISK = "<disk type='{kind}' device='disk'><source {attr}='{src}'/><target dev='vda'/></disk>"


def test_the_domains_file_disk_is_the_replicated_disk() -> None:
    disk = DISK.format(kind="file", attr="file", src="/var/lib/libvirt/images/web.qcow2")
    cdrom = "<disk type='file' device='cdrom'><source file='/iso'/></disk>"
    template = check_protectable(_user_domain(GOOD_NIC, disk + cdrom))
    assert template.disk == Path("/var/lib/libvirt/images/web.qcow2")
    assert check_protectable(_user_domain(GOOD_NIC)).disk is None


@pytest.mark.parametrize(
    ("disks", "needle"),
    [
        (DISK.format(kind="file", attr="file", src="/a") * 2, "2 disks"),
        (DISK.format(kind="network", attr="name", src="rbd/web"), "is not a file"),
        (DISK.format(kind="block", attr="dev", src="/dev/vg/web"), "<disk type='block'>"),
    ],
)
def test_disks_colo_cannot_replicate_are_refused(disks: str, needle: str) -> None:
    with pytest.raises(ConfigError, match="cannot be protected") as err:
        check_protectable(_user_domain(GOOD_NIC, disks))
    assert needle in str(err.value)


def test_garbage_xml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not parse"):
        check_protectable("<domain>")


def test_commandline_keeps_colo_parts_and_drops_what_libvirt_renders() -> None:
    argv = colo_commandline(VM, _side(Role.SECONDARY))
    assert "-incoming" in argv and "defer" in argv
    assert any("filter-rewriter" in a for a in argv)
    assert any("vhost=off,vnet_hdr=off" in a for a in argv)
    for owned in ("-name", "-kernel", "-serial", "-m", "-smp", "-accel", "-pidfile"):
        assert owned not in argv
    qmps = [argv[i + 1] for i, a in enumerate(argv) if a == "-qmp"]
    assert qmps == ["unix:/run/c/p/qmp-compare.sock,server=on,wait=off"]


def test_side_xml_names_emulator_netns_and_keeps_acpi() -> None:
    xml = side_domain_xml(
        VM, _side(Role.PRIMARY), "hosta", Path("/usr/local/bin/wrap"), "lab-hosta"
    )
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "colopp-web-hosta"
    assert root.findtext("devices/emulator") == "/usr/local/bin/wrap"
    assert root.find("features/acpi") is not None  # else libvirt 9.0 passes -no-acpi
    env = root.find(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}env")
    assert env is not None and env.get("name") == NETNS_ENV and env.get("value") == "lab-hosta"
    kvm = side_domain_xml(
        VmSpec("web", Path("/k"), Path("/i"), "x", accel="kvm", cpu="host"),
        _side(Role.PRIMARY),
        "hostb",
        Path("/w"),
        None,
    )
    kroot = ET.fromstring(kvm)
    assert kroot.get("type") == "kvm" and kroot.find("cpu").get("mode") == "host-passthrough"
    assert kroot.find(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}env") is None


def test_a_domain_without_kernel_boots_its_disk_through_the_firmware() -> None:
    xml = side_domain_xml(VM, _side(Role.PRIMARY), "hosta", Path("/w"), None, direct_boot=False)
    root = ET.fromstring(xml)
    assert root.find("os/kernel") is None and root.find("os/cmdline") is None
    args = [a.get("value") or "" for a in root.iter(f"{{{QEMU_NS}}}arg")]
    disks = [a for a in args if a.startswith("virtio-blk-pci,")]
    assert len(disks) == 1 and disks[0].count("bootindex=") == 1, disks
    assert disks[0].endswith(",bootindex=1")


def test_a_template_without_kernel_gives_a_disk_booted_vm() -> None:
    template = DomainTemplate("deb", 1024, 2, None, None, None, None, "qemu")
    vm = vm_from_template(VM, template)
    assert (vm.kernel, vm.initrd, vm.append) == (None, None, "")
    assert (vm.memory_mb, vm.vcpus) == (1024, 2)
