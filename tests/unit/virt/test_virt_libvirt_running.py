"""A running libvirt domain's live XML: what colopp's copy is started with, and each
refusal naming the element to change (colopp.virt.libvirt_running)."""

from __future__ import annotations

from pathlib import Path

import pytest

from colopp.errors import ConfigError
from colopp.virt.libvirt_running import inspect_domain

OFF = "csum='off' tso4='off' tso6='off' ecn='off' ufo='off'"
NIC = f"""<interface type='ethernet'>
      <mac address='52:54:00:C0:10:01'/><target dev='vnet7' managed='no'/>
      <model type='virtio'/>
      <driver name='qemu'><host gso='off' {OFF}/><guest {OFF}/></driver>
      <rom enabled='no'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </interface>"""
DISK = """<disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='/srv/web1.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </disk>"""
REST = """<serial type='file'><source path='/srv/web1.log'/></serial>
    <controller type='usb' index='0' model='none'/>
    <controller type='pci' index='0' model='pci-root'/>
    <input type='mouse' bus='ps2'/><input type='keyboard' bus='ps2'/>
    <audio id='1' type='none'/>
    <memballoon model='none'/>"""


def live_xml(nic: str = NIC, disk: str = DISK, rest: str = REST, machine: str = "pc") -> str:
    return f"""<domain type='qemu' id='3'>
  <name>web1</name>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='{machine}'>hvm</type><kernel>/srv/vmlinuz</kernel>
    <initrd>/srv/initrd</initrd><cmdline>console=ttyS0</cmdline></os>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    <emulator>/usr/local/bin/colopp-qemu-system-x86_64</emulator>
    {disk}
    {nic}
    {rest}
  </devices>
</domain>"""


def test_a_domain_shaped_as_documented_is_read() -> None:
    vm = inspect_domain(live_xml(machine="pc-i440fx-11.0"))
    assert (vm.memory_mb, vm.vcpus, vm.cpu, vm.accel) == (256, 2, "qemu64", "tcg")
    assert (vm.kernel, vm.initrd, vm.append) == (
        Path("/srv/vmlinuz"),
        Path("/srv/initrd"),
        "console=ttyS0",
    )
    assert (vm.mac, vm.tap, vm.disk, vm.disk_format) == (
        "52:54:00:c0:10:01",
        "vnet7",
        Path("/srv/web1.qcow2"),
        "qcow2",
    )
    assert vm.vnet_hdr is True
    spec = vm.vm_spec("web1")
    assert spec.vnet_hdr is True and spec.mac == "52:54:00:c0:10:01"


@pytest.mark.parametrize(
    ("xml", "named"),
    [
        (live_xml(nic=NIC.replace("<driver name='qemu'>", "<driver name='vhost'>")), "name='qemu'"),
        (live_xml(nic=NIC.replace("<host gso='off' csum='off'", "<host gso='off'")), "host csum"),
        (
            live_xml(nic=NIC.replace("<guest csum='off' tso4='off'", "<guest csum='off'")),
            "guest tso4",
        ),
        (live_xml(nic=NIC.replace("<rom enabled='no'/>", "")), "<rom enabled='no'/>"),
        (live_xml(nic=NIC.replace("slot='0x02'", "slot='0x05'")), "PCI slot 2"),
        (live_xml(nic=NIC.replace("type='ethernet'", "type='user'")), "type='ethernet'"),
        (live_xml(nic=NIC + NIC), "2 <interface>s"),
        (live_xml(disk=DISK.replace("slot='0x03'", "slot='0x04'")), "PCI slot 3"),
        (live_xml(disk=DISK.replace("type='qcow2'", "type='vmdk'")), "qcow2 or raw"),
        (live_xml(disk=DISK.replace("bus='virtio'", "bus='sata'")), "bus='virtio'"),
        (live_xml(disk=DISK + DISK.replace("vda", "vdb")), "2 <disk>s"),
        (
            live_xml(
                rest=REST.replace(
                    "model='none'/>\n    <controller", "model='piix3-uhci'/>\n    <controller"
                )
            ),
            "<controller type='usb' model='none'/>",
        ),
        (
            live_xml(
                rest=REST.replace("<memballoon model='none'/>", "<memballoon model='virtio'/>")
            ),
            "<memballoon model='none'/>",
        ),
        (live_xml(rest=REST + "<rng model='virtio'/>"), "<rng>"),
        (live_xml(rest=REST + "<graphics type='vnc'/><video/>"), "<graphics>, <video>"),
        (
            live_xml(
                rest=REST.replace("<serial type='file'><source path='/srv/web1.log'/></serial>", "")
            ),
            "one <serial>",
        ),
        (live_xml(machine="pc-q35-11.0"), "machine='pc'"),
    ],
)
def test_each_refusal_names_what_to_change(xml: str, named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        inspect_domain(xml)
    assert named in str(refused.value), str(refused.value)
    assert "web1" in str(refused.value)


def test_every_problem_is_listed_at_once() -> None:
    xml = live_xml(
        nic=NIC.replace("<rom enabled='no'/>", ""), disk=DISK.replace("bus='virtio'", "bus='sata'")
    )
    with pytest.raises(ConfigError) as refused:
        inspect_domain(xml)
    message = str(refused.value)
    assert "<rom enabled='no'/>" in message and "bus='virtio'" in message
