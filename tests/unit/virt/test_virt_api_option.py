"""The API's backend option: a libvirt protection on hosts needs no kernel, initrd or disk
(the domain has them); a QEMU-direct one still does."""

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


def test_qemu_on_hosts_still_needs_disk_and_boot() -> None:
    with pytest.raises(ValidationError, match="needs base_disk, vm.kernel"):
        ProtectionCreate.model_validate(BODY)
