from pathlib import Path

import pytest

from colopp.agent.specs import vm_from_dict, vm_to_dict
from colopp.errors import ConfigError
from colopp.qemu.argv import VmSpec


def test_disk_booted_vm_round_trips() -> None:
    vm = VmSpec("demo", None, None, "", memory_mb=1024, vcpus=2)
    data = vm_to_dict(vm)
    assert data["kernel"] is None and data["initrd"] is None
    assert vm_from_dict(data) == vm


def test_kernel_booted_vm_round_trips() -> None:
    vm = VmSpec("demo", Path("/i/vmlinuz"), Path("/i/initrd"), "console=ttyS0")
    data = vm_to_dict(vm)
    assert data["kernel"] == "/i/vmlinuz"
    assert vm_from_dict(data) == vm


def test_half_a_direct_boot_is_refused() -> None:
    data = vm_to_dict(VmSpec("demo", None, None, "")) | {"kernel": "/i/vmlinuz"}
    with pytest.raises(ConfigError, match="kernel, initrd and append"):
        vm_from_dict(data)
