"""The API's backend option: a libvirt protection on hosts needs no kernel, initrd or disk
(the domain has them); a QEMU-direct one still needs its disk, and kernel, initrd and
append together or none (the firmware boots the disk)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from colopp_api.schemas import ProtectionCreate

HOST: dict[str, Any] = {"name": "hosta", "agent": "198.18.1.2:7400", "tap": "tap0"}
BODY: dict[str, Any] = {
    "name": "web",
    "placement": "hosts",
    "hosts": {
        "primary": HOST | {"repl_ip": "198.18.1.2"},
        "secondary": HOST | {"name": "hostb", "repl_ip": "198.18.1.3"},
    },
}


def test_libvirt_on_hosts_takes_disk_and_boot_from_the_domain() -> None:
    spec = ProtectionCreate.model_validate(BODY | {"backend": "libvirt"})
    assert spec.backend == "libvirt" and spec.base_disk is None and spec.vm.kernel is None


def test_qemu_on_hosts_still_needs_a_disk_and_a_whole_boot() -> None:
    with pytest.raises(ValidationError, match="needs base_disk"):
        ProtectionCreate.model_validate(BODY)
    with pytest.raises(ValidationError, match="needs vm.initrd, vm.append"):
        ProtectionCreate.model_validate(
            BODY | {"base_disk": "/d.qcow2", "vm": {"kernel": "/boot/vmlinuz"}}
        )
    disk_booted = ProtectionCreate.model_validate(BODY | {"base_disk": "/d.qcow2"})
    assert disk_booted.vm.kernel is None  # the firmware boots the disk
