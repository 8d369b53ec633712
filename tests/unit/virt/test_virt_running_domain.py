"""A running libvirt domain is refused, saying what to do and why it cannot be taken over
live (the NIC's virtio-net header)."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from colopp.domain import VmSpec
from colopp.errors import ConfigError
from colopp.virt.libvirt_domain import read_template


class _Running:
    def isActive(self) -> bool:
        return True


class _Conn:
    def lookupByName(self, name: str) -> _Running:
        return _Running()


def test_a_running_domain_is_refused_naming_the_shutdown_and_the_plain_qemu_path() -> None:
    vm = VmSpec("web1", None, None, "")
    with pytest.raises(ConfigError) as refused:
        read_template(_Conn(), vm, "qemu:///system", "hosta")
    message = str(refused.value)
    assert "virsh shutdown web1" in message and "colopp-web1-hosta" in message
    assert "virtio-net header" in message and "QMP socket" in message
