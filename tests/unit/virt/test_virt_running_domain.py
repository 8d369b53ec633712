"""The libvirt backend (which restarts a domain as its own side domains) refuses a running
domain, naming the shutdown and the take-over path that protects it without a restart."""

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


def test_a_running_domain_is_refused_naming_the_shutdown_and_the_take_over_path() -> None:
    vm = VmSpec("web1", None, None, "")
    with pytest.raises(ConfigError) as refused:
        read_template(_Conn(), vm, "qemu:///system", "hosta")
    message = str(refused.value)
    assert "virsh shutdown web1" in message and "colopp-web1-hosta" in message
    assert "running_domain=web1" in message and "--running-domain web1" in message
