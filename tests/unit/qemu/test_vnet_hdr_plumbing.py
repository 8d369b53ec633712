"""A VM whose tap carries a virtio-net header (VmSpec.vnet_hdr, a running libvirt domain
taken over): every QEMU opens its tap with vnet_hdr=on and the NIC's offloads off, every
COLO filter and colopp relay carries the header (the frames' wire format through the
comparator: tests/unit/compare/test_compare_vnet_wire.py); QEMU's colo-compare, which
cannot take them, is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from colopp.agent.comparator_process import comparator_argv
from colopp.agent.comparing import ingress_argv
from colopp.agent.takeover import takeover_argv
from colopp.colo.sequence import resume_replication
from colopp.domain import (
    ComparatorKind,
    HostSlot,
    PairConfig,
    Ports,
    ProtectionOptions,
    Role,
    SideSpec,
    VmSpec,
)
from colopp.errors import ConfigError
from colopp.qemu.argv import qemu_argv
from colopp.qemu.running import RunningVm
from colopp.qemu.runtime import QemuRuntime
from colopp.rewrite.splice import splice_steps

VM = VmSpec("demo", Path("/img/vmlinuz"), Path("/img/initrd"), "console=ttyS0")
VNET = dataclasses.replace(VM, vnet_hdr=True)
OFFLOADS = ("csum", "gso", "host_tso4", "host_tso6", "host_ecn", "host_ufo", "guest_csum")


def side(role: Role, comparator: ComparatorKind = ComparatorKind.COLOPP) -> SideSpec:
    return SideSpec(
        role,
        Path("/run/c"),
        "tap-x",
        Path("/run/c/disk.qcow2"),
        "198.18.1.10",
        "198.18.1.11",
        options=ProtectionOptions(comparator=comparator),
    )


def values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


@pytest.mark.parametrize("role", [Role.PRIMARY, Role.SECONDARY])
def test_every_qemu_opens_its_tap_with_the_header_and_the_filters_carry_it(role: Role) -> None:
    argv = qemu_argv(QemuRuntime(), VNET, side(role))
    (netdev,) = values(argv, "-netdev")
    assert "vnet_hdr=on" in netdev and "vhost=off" in netdev
    filters = [o for o in values(argv, "-object") if o.startswith("filter-")]
    assert filters and all(f.endswith(",vnet_hdr_support=on") for f in filters)
    offloads = values(argv, "-global")
    assert {f"virtio-net-pci.{name}=off" for name in OFFLOADS} <= set(offloads)


def test_without_the_header_nothing_changes_but_the_explicit_off() -> None:
    argv = qemu_argv(QemuRuntime(), VM, side(Role.PRIMARY))
    assert "vnet_hdr=off" in values(argv, "-netdev")[0]
    assert values(argv, "-global") == []
    filters = [o for o in values(argv, "-object") if o.startswith("filter-")]
    assert all(f.endswith(",vnet_hdr_support=off") for f in filters)


def test_the_take_over_copy_has_the_header_and_no_offloads() -> None:
    running = RunningVm(256, 1, "qemu64", "tcg", None, None, "", "52:54:00:c0:10:01", "vnet7")
    vm = dataclasses.replace(running, vnet_hdr=True).vm_spec("web1")
    assert vm.vnet_hdr and VmSpec.from_dict(vm.to_dict()) == vm
    argv = takeover_argv(QemuRuntime(), vm, side(Role.PRIMARY), running, {"nic": 2, "disk": 3})
    assert "vnet_hdr=on" in values(argv, "-netdev")[0]
    assert "virtio-net-pci.guest_csum=off" in values(argv, "-global")


def test_filters_added_at_protection_carry_the_header() -> None:
    steps = resume_replication(
        "198.18.1.10",
        "198.18.1.11",
        Ports(),
        ("/run/c/c0", "/run/c/co"),
        ComparatorKind.COLOPP,
        has_rewriter=True,
        client_socket="/run/c/client",
        vnet_hdr=True,
    )
    filters = [
        s.arguments for s in steps if str(s.arguments.get("qom-type", "")).startswith("filter-")
    ]
    assert len(filters) == 4 and all(f["vnet_hdr_support"] is True for f in filters)
    plain = resume_replication(
        "198.18.1.10", "198.18.1.11", Ports(), ("a", "b"), ComparatorKind.COLOPP, False
    )
    assert all("vnet_hdr_support" not in s.arguments for s in plain)


def test_qemus_colo_compare_takes_the_header_too() -> None:
    """QEMU 11.1's colo-compare has ``vnet_hdr_support`` (the live protection's object-add
    and the template both set it); without the header neither mentions it."""
    steps = resume_replication(
        "a", "b", Ports(), ("c", "d"), ComparatorKind.BUILTIN, False, vnet_hdr=True
    )
    compare = [s.arguments for s in steps if s.arguments.get("qom-type") == "colo-compare"]
    assert len(compare) == 1 and compare[0]["vnet_hdr_support"] is True
    plain = resume_replication("a", "b", Ports(), ("c", "d"), ComparatorKind.BUILTIN, False)
    assert all("vnet_hdr_support" not in s.arguments for s in plain)
    for vm, flag in ((VNET, "vnet_hdr_support=on"), (VM, "vnet_hdr_support=off")):
        argv = qemu_argv(QemuRuntime(), vm, side(Role.PRIMARY, ComparatorKind.BUILTIN))
        (colo_compare,) = [o for o in values(argv, "-object") if o.startswith("colo-compare")]
        assert flag in colo_compare.split(",")


def test_colopps_relays_are_told_of_the_header() -> None:
    spec = side(Role.PRIMARY)
    assert "--vnet-hdr" in comparator_argv(spec, 2000, python="py", vnet_hdr=True)
    assert "--vnet-hdr" not in comparator_argv(spec, 2000, python="py")
    assert "--vnet-hdr" in ingress_argv(side(Role.SECONDARY), 42, "py", vnet_hdr=True)
    assert "--vnet-hdr" not in ingress_argv(side(Role.SECONDARY), 42, "py")
    redirectors = [s.arguments for s in splice_steps(Path("/run/c"), before="rew0", vnet_hdr=True)]
    assert all(a["vnet_hdr_support"] is True for a in redirectors if "qom-type" in a)


RX = dataclasses.replace(VNET, rx_offload=True)
SEND_OFFLOADS = ("csum", "gso", "host_tso4", "host_tso6", "host_ecn", "host_ufo")


@pytest.mark.parametrize("role", [Role.PRIMARY, Role.SECONDARY])
def test_rx_offload_lets_the_guest_receive_coalesced_frames_and_send_whole_ones(
    role: Role,
) -> None:
    argv = qemu_argv(QemuRuntime(), RX, side(role))
    assert "vnet_hdr=on" in values(argv, "-netdev")[0]
    offloads = set(values(argv, "-global"))
    # what the guest sends: whole frames, complete checksums (compared and rewritten as ever)
    assert {f"virtio-net-pci.{name}=off" for name in SEND_OFFLOADS} <= offloads
    # what it receives: the sender's GSO super-frames, checksum left to the receiver
    on = {"guest_csum", "guest_tso4", "guest_tso6"}
    assert {f"virtio-net-pci.{name}=on" for name in on} <= offloads
    assert not any(o.endswith("=on") for o in offloads - {f"virtio-net-pci.{n}=on" for n in on})
    assert VmSpec.from_dict(RX.to_dict()) == RX


def test_rx_offload_without_the_header_is_refused() -> None:
    with pytest.raises(ConfigError, match="rx_offload needs vnet_hdr"):
        dataclasses.replace(VM, rx_offload=True).validate()
    with pytest.raises(ConfigError, match="rx_offload needs vnet_hdr"):
        VmSpec.from_dict({**VM.to_dict(), "rx_offload": True})


def test_tx_offload_lets_the_guest_send_super_frames_too() -> None:
    vm = dataclasses.replace(RX, tx_offload=True)
    offloads = set(values(qemu_argv(QemuRuntime(), vm, side(Role.PRIMARY)), "-global"))
    on = {"csum", "host_tso4", "host_tso6", "guest_csum", "guest_tso4", "guest_tso6"}
    assert {f"virtio-net-pci.{name}=on" for name in on} <= offloads
    assert {f"virtio-net-pci.{n}=off" for n in ("gso", "host_ecn", "host_ufo")} <= offloads
    assert VmSpec.from_dict(vm.to_dict()) == vm
    with pytest.raises(ConfigError, match="tx_offload needs rx_offload"):
        dataclasses.replace(VNET, tx_offload=True).validate()


def test_qemus_comparator_is_refused_with_offloads() -> None:
    """colo-compare nearly stops with offloaded frames: a pair with colo-compare and
    rx_offload (or tx_offload) is refused when built, when loaded from a record and when
    its options change; an inert header and colopp's comparator with offloads are fine."""
    slot = HostSlot("hosta", "tap-a", "198.18.1.10")
    peer = HostSlot("hostb", "tap-b", "198.18.1.11")
    builtin = ProtectionOptions(comparator=ComparatorKind.BUILTIN)
    colopp = ProtectionOptions(comparator=ComparatorKind.COLOPP)
    tx = dataclasses.replace(RX, tx_offload=True)
    for vm in (RX, tx):
        with pytest.raises(ConfigError, match="need colopp's comparator"):
            PairConfig(vm, Path("/d.qcow2"), slot, peer, options=builtin)
        fine = PairConfig(vm, Path("/d.qcow2"), slot, peer, options=colopp)
        with pytest.raises(ConfigError, match="need colopp's comparator"):
            PairConfig.from_dict({**fine.to_dict(), "options": builtin.to_dict()})
        with pytest.raises(ConfigError, match="need colopp's comparator"):
            fine.with_options(comparator=ComparatorKind.BUILTIN)
    assert PairConfig(VNET, Path("/d.qcow2"), slot, peer, options=builtin).vm.vnet_hdr
