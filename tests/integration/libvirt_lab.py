"""Debian's libvirtd for the libvirt backend's tests: set up by `colopp libvirt setup` (what
`make libvirt` runs), started here as a daemon when none answers (no systemd), stopped again
by whoever started it; and the user's domain as an operator defines it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colopp.polling import wait_until
from colopp.virt.libvirt_host import install, plan

URI = "qemu:///system"
PIDFILE = Path("/run/colopp-test-libvirtd.pid")


def _answers(libvirt: Any) -> bool:
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


@contextlib.contextmanager
def running_libvirtd(qemu_root: Path) -> Iterator[Any]:
    """libvirtd on qemu:///system after `colopp libvirt setup`; yields the libvirt module.
    Skips without root, libvirtd or libvirt-python."""
    libvirt = pytest.importorskip("libvirt")
    if os.geteuid() != 0 or shutil.which("libvirtd") is None:
        pytest.skip("needs root and Debian's libvirt-daemon-system (scripts/setup.sh)")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    install(plan(qemu_root))
    owned = not _answers(libvirt)
    if owned:
        subprocess.run(["libvirtd", "--daemon", "--pid-file", str(PIDFILE)], check=True)
        wait_until("libvirtd answers on qemu:///system", lambda: _answers(libvirt), 30)
    try:
        yield libvirt
    finally:
        if owned:
            pid = int(PIDFILE.read_text())
            os.kill(pid, signal.SIGTERM)
            wait_until("libvirtd exited", lambda: not Path(f"/proc/{pid}").exists(), 30)


def user_domain_xml(name: str, image: Any, append: str, tap: str, driver: str = "qemu") -> str:
    """A direct-booting domain with one ethernet NIC (colopp runs its sides, not this);
    ``driver`` ``vhost`` makes one colopp must refuse."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><kernel>{image.vmlinuz}</kernel>
    <initrd>{image.initrd}</initrd><cmdline>{append}</cmdline></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/local/bin/colopp-qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{image.disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='52:54:00:c0:10:01'/><target dev='{tap}' managed='no'/>
      <model type='virtio'/><driver name='{driver}'/>
    </interface>
  </devices>
</domain>"""


def discard_sides(libvirt: Any, conn: Any, vm_name: str) -> None:
    """Destroy and undefine colopp's side domains of ``vm_name`` (teardown)."""
    for host in ("hosta", "hostb"):
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByName(f"colopp-{vm_name}-{host}")
            if dom.isActive():
                dom.destroy()
            dom.undefine()


def running_domain_xml(name: str, vm: Any, disk: Path, tap: str, serial: Path) -> str:
    """A domain an operator starts with `virsh start` and colopp can take over live
    (colopp.virt.libvirt_running): one virtio NIC without vhost, offloads or option ROM
    in PCI slot 2, one qcow2 file disk in slot 3, no USB controller or balloon, one
    serial port (a file, which says when the guest is ready)."""
    off = "csum='off' tso4='off' tso6='off' ecn='off' ufo='off'"
    return f"""<domain type='{"kvm" if vm.accel == "kvm" else "qemu"}'>
  <name>{name}</name>
  <memory unit='MiB'>{vm.memory_mb}</memory>
  <vcpu>{vm.vcpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{vm.kernel}</kernel>
    <initrd>{vm.initrd}</initrd><cmdline>{vm.append}</cmdline></os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>{vm.cpu}</model></cpu>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/local/bin/colopp-qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </disk>
    <interface type='ethernet'>
      <mac address='{vm.mac}'/><target dev='{tap}' managed='no'/>
      <model type='virtio'/>
      <driver name='qemu'><host gso='off' {off}/><guest {off}/></driver>
      <rom enabled='no'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </interface>
    <serial type='file'><source path='{serial}'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>"""
