"""The secondary's ingress relay (issue #15): which secondaries get one, how its QEMU and
the relay are pointed at each other, and that each loaded checkpoint reaches it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from colopp.agent.comparator_process import comparator_argv
from colopp.agent.comparing import ingress_argv
from colopp.agent.side import CheckpointLog
from colopp.domain import Backend, ComparatorKind, ProtectionOptions, Role, SideSpec, VmSpec
from colopp.qemu.argv import qemu_argv, template_names
from colopp.qemu.runtime import QemuRuntime

EARLY = ProtectionOptions(
    comparator=ComparatorKind.COLOPP, prerelease="auto", read_prefixes=("/kv/",)
)
VM = VmSpec("demo", Path("/img/vmlinuz"), Path("/img/initrd"), "console=ttyS0")


def spec(role: Role, options: ProtectionOptions) -> SideSpec:
    return SideSpec(
        role, Path("/run/c"), "tap-x", Path("/run/c/d.qcow2"), "198.18.1.11", "198.18.1.10",
        options=options,
    )  # fmt: skip


def test_every_secondary_of_colopps_comparator_gets_a_relay_receipts_only_with_early_answers() -> (
    None
):
    assert spec(Role.SECONDARY, EARLY).ingress_relay
    assert EARLY.host_receipts
    assert not spec(Role.PRIMARY, EARLY).ingress_relay
    plain = ProtectionOptions(comparator=ComparatorKind.COLOPP)
    assert spec(Role.SECONDARY, plain).ingress_relay  # it keeps the output for a failover
    assert not plain.host_receipts
    assert "--no-receipts" in ingress_argv(spec(Role.SECONDARY, plain), 1, python="py")
    primary = spec(Role.PRIMARY, plain)
    assert "--host-receipts" not in comparator_argv(primary, 2000)
    acks_only = ProtectionOptions(comparator=ComparatorKind.COLOPP, prerelease="ack_only")
    assert spec(Role.SECONDARY, acks_only).ingress_relay and not acks_only.host_receipts
    builtin = ProtectionOptions(comparator=ComparatorKind.BUILTIN)
    assert not spec(Role.SECONDARY, builtin).ingress_relay  # the agent's rewriter relay
    libvirt = ProtectionOptions(
        comparator=ComparatorKind.COLOPP, prerelease="auto", read_prefixes=("/kv/",),
        backend=Backend.LIBVIRT,
    )  # fmt: skip
    assert not spec(Role.SECONDARY, libvirt).ingress_relay
    assert not libvirt.host_receipts


def test_the_secondary_qemu_and_its_relay_meet_on_unix_sockets_in_the_run_dir() -> None:
    side = spec(Role.SECONDARY, EARLY)
    assert template_names(side) == ["vm.conf", "secondary-relay.conf", "secondary.conf"]
    argv = qemu_argv(QemuRuntime(Path("/nonexistent")), VM, side)
    chardevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev"]
    assert "socket,id=red0,path=/run/c/red0.sock,reconnect-ms=1000" in chardevs
    assert "socket,id=red1,path=/run/c/red1.sock,reconnect-ms=1000" in chardevs
    relay = ingress_argv(side, 4242, python="py")
    pairs = dict(zip(relay[3::2], relay[4::2], strict=False))
    assert pairs["--mirror-from"] == "tcp:198.18.1.10:9003"  # the primary's mirror0
    assert pairs["--mirror-to"] == "listen:unix:/run/c/red0.sock"
    assert pairs["--output-from"] == "listen:unix:/run/c/red1.sock"
    assert pairs["--output-to"] == "tcp:198.18.1.10:9004"  # the comparator
    assert pairs["--tap"] == "tap-x"  # the replay to the promoted guest
    assert "--no-receipts" not in relay and relay[relay.index("--parent-pid") + 1] == "4242"
    # ... and the comparator takes the receipts that ride on the secondary's output.
    primary = dataclasses.replace(side, role=Role.PRIMARY)
    assert "--host-receipts" in comparator_argv(primary, 2000)
    plain = spec(Role.PRIMARY, ProtectionOptions(comparator=ComparatorKind.COLOPP))
    assert "--host-receipts" not in comparator_argv(plain, 2000)


def test_without_a_relay_the_secondary_connects_to_the_primary_as_before() -> None:
    libvirt = ProtectionOptions(comparator=ComparatorKind.COLOPP, backend=Backend.LIBVIRT)
    side = spec(Role.SECONDARY, libvirt)  # libvirt's domains: no relay
    assert template_names(side) == ["vm.conf", "secondary-red.conf", "secondary.conf"]
    argv = qemu_argv(QemuRuntime(Path("/nonexistent")), VM, side)
    chardevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev"]
    assert "socket,id=red0,host=198.18.1.10,port=9003,reconnect-ms=1000" in chardevs


def test_each_loaded_checkpoint_is_signalled_once() -> None:
    log = CheckpointLog()
    seen: list[int] = []
    log.on_resume = lambda: seen.append(log.count)
    for name, stamp in [("RESUME", 1.0), ("STOP", 2.0), ("RESUME", 2.05), ("STOP", 3.0)]:
        log.on_event(name, stamp)
    assert seen == [1]


def test_the_relay_gets_the_comparators_read_rule_for_its_write_fence() -> None:
    relay = ingress_argv(spec(Role.SECONDARY, EARLY), 4242, python="py")
    assert relay[relay.index("--read-prefix") + 1] == "/kv/" and "--resp-port" not in relay
    assert "--read-scope" not in relay  # global: every request touches everything
    redis = ProtectionOptions(
        comparator=ComparatorKind.COLOPP, prerelease="auto", resp_ports=(6379, 6380),
        prerelease_scope="key",
    )  # fmt: skip
    relay = ingress_argv(spec(Role.SECONDARY, redis), 4242, python="py")
    ports = [relay[i + 1] for i, a in enumerate(relay) if a == "--resp-port"]
    assert ports == ["6379", "6380"] and "--read-prefix" not in relay
    assert relay[relay.index("--read-scope") + 1] == "key"
    # "all" turns the RESP rule on at the comparator's default port: the fence follows it.
    every = ProtectionOptions(comparator=ComparatorKind.COLOPP, prerelease="all")
    relay = ingress_argv(spec(Role.SECONDARY, every), 4242, python="py")
    assert relay[relay.index("--resp-port") + 1] == "6379"


def test_the_primarys_mirror_goes_through_the_comparators_child_to_host_b_only() -> None:
    import argparse

    from colopp.agent.live_protect import mirror_peer_connected
    from colopp.compare.__main__ import build_parser
    from colopp.compare.mirror_child import mirror_argv

    primary = spec(Role.PRIMARY, ProtectionOptions(comparator=ComparatorKind.COLOPP))
    argv = comparator_argv(primary, 2000, python="py")
    args = build_parser().parse_args(argv[3:])
    child = mirror_argv(args, python="py")
    assert child is not None
    assert child[:3] == ["py", "-m", "colopp.mirror"]
    pairs = dict(zip(child[3::2], child[4::2], strict=False))
    assert pairs["--from"] == "unix:/run/c/mirror0.sock"
    assert pairs["--to"] == "listen:tcp:198.18.1.11:9003"  # where host B connected to QEMU
    assert pairs["--allow"] == "198.18.1.10" and pairs["--status"] == "/run/c/mirror.json"
    bare = argparse.Namespace(mirror_from=None, mirror_to=None)
    assert mirror_argv(bare) is None
    assert not mirror_peer_connected(Path("/nonexistent/mirror.json"))


def test_mirror_status_says_linked_only_when_host_b_is_connected(tmp_path: Path) -> None:
    from colopp.agent.live_protect import mirror_peer_connected

    status = tmp_path / "mirror.json"
    for text, linked in (
        ('{"peer_connected": true}', True),
        ('{"peer_connected": false}', False),
        ('{"peer_connected": 1}', False),
        ("[1]", False),
        ("{bad", False),
    ):
        status.write_text(text)
        assert mirror_peer_connected(status) is linked


def test_a_qemu_started_before_the_mirror_process_keeps_its_own_tcp_mirror(tmp_path: Path) -> None:
    import socket

    from colopp.agent.comparator_process import mirror_batched

    primary = dataclasses.replace(
        spec(Role.PRIMARY, ProtectionOptions(comparator=ComparatorKind.COLOPP)), run_dir=tmp_path
    )
    assert not mirror_batched(primary)  # no mirror0.sock: an upgraded agent's older QEMU
    assert "--mirror-from" not in comparator_argv(primary, 2000, mirror_batched=False)
    (tmp_path / "mirror0.sock").write_text("")
    assert not mirror_batched(primary)  # a file, not QEMU's socket
    (tmp_path / "mirror0.sock").unlink()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "mirror0.sock"))
        assert mirror_batched(primary)
