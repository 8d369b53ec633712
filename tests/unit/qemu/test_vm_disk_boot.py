from pathlib import Path

import pytest

from colopp.domain import VmSpec
from colopp.errors import ConfigError


def test_disk_booted_vm_round_trips() -> None:
    vm = VmSpec("demo", None, None, "", memory_mb=1024, vcpus=2)
    data = vm.to_dict()
    assert data["kernel"] is None and data["initrd"] is None
    assert VmSpec.from_dict(data) == vm


def test_kernel_booted_vm_round_trips() -> None:
    vm = VmSpec("demo", Path("/i/vmlinuz"), Path("/i/initrd"), "console=ttyS0")
    data = vm.to_dict()
    assert data["kernel"] == "/i/vmlinuz"
    assert VmSpec.from_dict(data) == vm


def test_half_a_direct_boot_is_refused() -> None:
    data = VmSpec("demo", None, None, "").to_dict() | {"kernel": "/i/vmlinuz"}
    with pytest.raises(ConfigError, match="kernel, initrd and append"):
        VmSpec.from_dict(data)
