"""A running VM's command line: what colopp's copy is started with, or what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from colopp.errors import ConfigError
from colopp.qemu.running import (
    inspect_argv,
    keyvals,
    memory_mb,
    pci_slots,
    qemu_options,
    with_disk,
)

TAP = "tap,id=n1,ifname=tap-web1,script=no,downscript=no,vhost=off,vnet_hdr=off"
NIC = "virtio-net-pci,netdev=n1,mac=52:54:00:AA:00:01,romfile="
DRIVE = "if=none,id=d1,file=/var/lib/vms/web1.qcow2,format=qcow2"
DISK = "virtio-blk-pci,drive=d1"
OPTIONS: list[tuple[str, str | None]] = [
    ("-name", "web1"),
    ("-accel", "tcg"),
    ("-cpu", "qemu64"),
    ("-m", "256"),
    ("-smp", "1"),
    ("-nodefaults", None),
    ("-display", "none"),
    ("-serial", "file:/tmp/serial.log"),
    ("-qmp", "unix:/tmp/web1.qmp,server=on,wait=off"),
    ("-netdev", TAP),
    ("-device", NIC),
    ("-drive", DRIVE),
    ("-device", DISK),
    ("-kernel", "/boot/vmlinuz"),
    ("-initrd", "/boot/initrd"),
    ("-append", "console=ttyS0 colopp.ip=198.18.0.100/24"),
]


def _argv(options: list[tuple[str, str | None]]) -> list[str]:
    return [arg for name, value in options for arg in (name, value) if arg is not None]


GOOD = _argv(OPTIONS)


def _without(option: str) -> list[str]:
    return _argv([(n, v) for n, v in OPTIONS if n != option])


def _replace(old: str, new: str) -> list[str]:
    return [new if arg == old else arg for arg in GOOD]


def test_a_vm_shaped_like_colopps_is_read() -> None:
    vm = inspect_argv(GOOD)
    assert (vm.memory_mb, vm.vcpus, vm.cpu, vm.accel) == (256, 1, "qemu64", "tcg")
    assert vm.mac == "52:54:00:aa:00:01" and vm.tap == "tap-web1"
    assert vm.kernel == Path("/boot/vmlinuz") and vm.append.startswith("console=")
    spec = vm.vm_spec("web1")
    assert spec.memory_mb == 256 and spec.mac == "52:54:00:aa:00:01"


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (_without("-nodefaults"), "-nodefaults"),
        (_replace(TAP, TAP.replace("vhost=off", "vhost=on")), "vhost=off"),
        (_replace(TAP, TAP.replace(",vnet_hdr=off", "")), "vnet_hdr=off"),
        (_replace(NIC, "virtio-net-pci,netdev=n1,mac=52:54:00:aa:00:01"), "romfile="),
        (_replace(NIC, "e1000,netdev=n1,mac=52:54:00:aa:00:01,romfile="), "virtio-net-pci"),
        (_replace(NIC, "virtio-net-pci,netdev=n1,romfile="), "mac="),
        (_replace(DRIVE, "if=none,id=d1,file=/v.img"), "format="),
        (_replace(DISK, "ide-hd,drive=d1"), "virtio-blk-pci"),
        ([*GOOD, "-device", "usb-tablet"], "usb-tablet"),
        ([*GOOD, "-snapshot"], "-snapshot"),
        ([*GOOD, "-blockdev", "node-name=x"], "-blockdev"),
        ([*GOOD, "-machine", "q35"], "-machine"),
        (_without("-serial"), "-serial"),
        ([*GOOD, "-netdev", "user,id=u1"], "one NIC"),
    ],
)
def test_each_refusal_names_what_to_change(argv: list[str], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("+", r"\+")):
        inspect_argv(argv)


def test_values_and_sizes() -> None:
    assert keyvals("tap,id=a,,b,vhost=off", "type") == {"type": "tap", "id": "a,b", "vhost": "off"}
    assert memory_mb("1G") == 1024 and memory_mb("size=512M") == 512 and memory_mb("256") == 256
    with pytest.raises(ConfigError, match="-m"):
        memory_mb("lots")
    vm = inspect_argv([*GOOD, "-machine", "pc,accel=kvm"])
    assert vm.accel == "kvm"


def test_the_disk_comes_from_query_block() -> None:
    vm = inspect_argv(GOOD)
    block = [
        {"device": "d1", "inserted": {"file": "/var/lib/vms/web1.qcow2", "drv": "qcow2",
                                      "image": {"virtual-size": 1 << 30}}},
        {"device": "cd", "removable": True},
    ]  # fmt: skip
    taken = with_disk(vm, block)
    assert taken.disk == Path("/var/lib/vms/web1.qcow2") and taken.disk_size == 1 << 30
    nbd = [{"inserted": {"file": "nbd://10.0.0.1/x", "drv": "raw"}}]
    with pytest.raises(ConfigError, match="not a local file"):
        with_disk(vm, nbd)
    with pytest.raises(ConfigError, match="format"):
        with_disk(vm, [{"inserted": {"file": "/a.vmdk", "drv": "vmdk"}}])


def test_pci_slots_of_the_nic_and_the_disk() -> None:
    pci = [
        {
            "devices": [
                {"slot": 0, "class_info": {"class": 0x0600}},
                {"slot": 3, "class_info": {"class": 0x0100}},
                {"slot": 2, "class_info": {"class": 0x0200}},
            ]
        }
    ]
    assert pci_slots(pci) == {"nic": 2, "disk": 3}
    with pytest.raises(ConfigError):
        pci_slots([{"devices": []}])


def test_a_disk_before_the_nic_is_refused_the_secondary_would_not_match() -> None:
    swapped = [
        {
            "devices": [
                {"slot": 2, "class_info": {"class": 0x0100}},
                {"slot": 3, "class_info": {"class": 0x0200}},
            ]
        }
    ]
    with pytest.raises(ConfigError, match="give the NIC's -device first"):
        pci_slots(swapped)


def test_colopps_copy_waits_for_the_vm_on_its_disk_file_without_filters() -> None:
    from colopp.agent.takeover import takeover_argv
    from colopp.domain import Role, SideSpec
    from colopp.qemu.runtime import QemuRuntime

    vm = with_disk(
        inspect_argv(GOOD),
        [{"inserted": {"file": "/var/lib/vms/web1.qcow2", "drv": "raw"}}],
    )
    spec = SideSpec(Role.PRIMARY, Path("/run/x"), "colopp123", Path("/var/lib/vms/web1.qcow2"),
                    "10.0.0.1", "10.0.0.2")  # fmt: skip
    argv = " ".join(
        takeover_argv(QemuRuntime(), vm.vm_spec("web1"), spec, vm, {"nic": 2, "disk": 5})
    )
    assert "children.0.file.filename=/var/lib/vms/web1.qcow2,children.0.driver=raw" in argv
    assert "mac=52:54:00:aa:00:01,romfile=,addr=0x2" in argv and "addr=0x5" in argv
    assert "ifname=colopp123" in argv and "-incoming defer" in argv
    assert "filter-" not in argv and "-kernel /boot/vmlinuz" in argv


def test_the_options_follow_the_emulator_even_behind_a_loader() -> None:
    loader = [
        "/r/lib64/ld-linux-x86-64.so.2",
        "--library-path",
        "/r/lib",
        "/r/usr/bin/qemu-system-x86_64",
    ]
    assert qemu_options([*loader, *GOOD]) == GOOD
    assert qemu_options(["qemu-system-x86_64", "-m", "1G"]) == ["-m", "1G"]
    with pytest.raises(ConfigError, match="not a qemu-system"):
        qemu_options(["/usr/bin/python3", "-m", "http.server"])


def test_a_firmware_search_path_is_no_machine_change() -> None:
    assert inspect_argv(["-L", "/r/usr/share/qemu", *GOOD]).memory_mb == 256
