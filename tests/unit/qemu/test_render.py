from pathlib import Path

import pytest

from colopp.domain import ComparatorKind, Ports, ProtectionOptions, Role, SideSpec, VmSpec
from colopp.errors import ConfigError
from colopp.qemu.argv import qemu_argv, template_names, template_values
from colopp.qemu.render import configs_dir, placeholders, render
from colopp.qemu.runtime import QemuRuntime

VM = VmSpec(
    "demo", Path("/img/vmlinuz"), Path("/img/initrd"), "console=ttyS0 colopp.ip=198.18.0.100/24"
)


def side(role: Role, comparator: ComparatorKind = ComparatorKind.BUILTIN) -> SideSpec:
    return SideSpec(
        role,
        Path("/run/c"),
        "tap-x",
        Path("/run/c/disk.qcow2"),
        "198.18.1.10",
        "198.18.1.11",
        options=ProtectionOptions(comparator=comparator),
    )


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


def test_render_pairs_options_and_values() -> None:
    assert render("# c\n-m {mem}\n\n-nodefaults\n", {"mem": 256}) == ["-m", "256", "-nodefaults"]


def test_missing_placeholder_is_named() -> None:
    with pytest.raises(ConfigError, match=r"t:1: no value for \{mem\}"):
        render("-m {mem}", {}, "t")


def test_comma_inside_an_option_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="may not contain ','"):
        render("-drive file={disk},if=none", {"disk": "/x,if=virtio"})


def test_comma_is_fine_when_the_value_is_the_whole_argument() -> None:
    assert render("-append {append}", {"append": "console=ttyS0,115200"}) == [
        "-append",
        "console=ttyS0,115200",
    ]


def test_primary_with_builtin_comparator_has_colo_compare() -> None:
    argv = qemu_argv(QemuRuntime(), VM, side(Role.PRIMARY))
    objects = option_values(argv, "-object")
    assert any(o.startswith("colo-compare,id=comp0") for o in objects)
    assert "filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0,vnet_hdr_support=off" in objects
    assert option_values(argv, "-netdev") == [
        "tap,id=hn0,ifname=tap-x,script=no,downscript=no,vhost=off,vnet_hdr=off"
    ]
    drive = option_values(argv, "-drive")[0]
    assert "driver=quorum" in drive and "children.0.file.filename=/run/c/disk.qcow2" in drive


def test_primary_with_colopp_comparator_has_no_colo_compare() -> None:
    argv = qemu_argv(QemuRuntime(), VM, side(Role.PRIMARY, ComparatorKind.COLOPP))
    assert not any("colo-compare" in a for a in argv)
    assert not any(a.startswith("socket,id=compare1") for a in argv)
    assert template_names(side(Role.PRIMARY, ComparatorKind.COLOPP)) == [
        "vm.conf",
        "primary.conf",
        "mirror-batched.conf",
    ]
    # mirror0 is the mirror process's unix socket, not a TCP server of QEMU's.
    chardevs = option_values(argv, "-chardev")
    assert "socket,id=mirror0,path=/run/c/mirror0.sock,server=on,wait=off" in chardevs
    builtin = option_values(qemu_argv(QemuRuntime(), VM, side(Role.PRIMARY)), "-chardev")
    assert any(c.startswith("socket,id=mirror0,host=") for c in builtin)


def test_secondary_waits_for_incoming_and_rewrites() -> None:
    argv = qemu_argv(QemuRuntime(), VM, side(Role.SECONDARY))
    assert option_values(argv, "-incoming") == ["defer"]
    assert "filter-rewriter,id=rew0,netdev=hn0,queue=all,vnet_hdr_support=off" in option_values(
        argv, "-object"
    )
    # QEMU's colo-compare: replication through the agent's learning relay (rewriter_relay).
    chardevs = option_values(argv, "-chardev")
    assert "socket,id=red0,path=/run/c/red0.sock,reconnect-ms=1000" in chardevs
    assert any("driver=replication,mode=secondary" in d for d in option_values(argv, "-drive"))
    colopp = option_values(
        qemu_argv(QemuRuntime(), VM, side(Role.SECONDARY, ComparatorKind.COLOPP)), "-chardev"
    )
    # colopp's comparator: through host B's ingress relay (it keeps output for a failover).
    assert "socket,id=red0,path=/run/c/red0.sock,reconnect-ms=1000" in colopp


def test_two_qmp_monitors_one_per_client() -> None:
    argv = qemu_argv(QemuRuntime(), VM, side(Role.PRIMARY))
    assert option_values(argv, "-qmp") == [
        "unix:/run/c/qmp.sock,server=on,wait=off",
        "unix:/run/c/qmp-compare.sock,server=on,wait=off",
    ]


def test_private_root_runs_through_its_own_loader() -> None:
    runtime = QemuRuntime(root=Path("/r"))
    argv = qemu_argv(runtime, VM, side(Role.PRIMARY))
    assert argv[:4] == [
        "/r/lib64/ld-linux-x86-64.so.2",
        "--library-path",
        "/r/usr/lib/x86_64-linux-gnu:/r/lib/x86_64-linux-gnu",
        "/r/usr/bin/qemu-system-x86_64",
    ]
    assert runtime.env() == {"QEMU_MODULE_DIR": "/r/usr/lib/x86_64-linux-gnu/qemu"}


@pytest.mark.parametrize(
    ("vm", "message"),
    [
        (VmSpec("Bad Name", Path("/k"), Path("/i"), ""), "VM name"),
        (VmSpec("ok", Path("/k"), Path("/i"), "", mac="zz"), "MAC"),
        (VmSpec("ok", Path("/k"), Path("/i"), "", accel="hvf"), "accel"),
        (VmSpec("ok", Path("/k"), Path("/i"), "", vcpus=0), "vcpus"),
    ],
)
def test_bad_vm_specs_are_refused(vm: VmSpec, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        qemu_argv(QemuRuntime(), vm, side(Role.PRIMARY))


def test_ports_must_differ_and_be_valid() -> None:
    with pytest.raises(ConfigError, match="must differ"):
        Ports(mirror=1, compare=1).validate()
    with pytest.raises(ConfigError, match="outside"):
        Ports(nbd=70000).validate()


def test_every_template_placeholder_has_a_value() -> None:
    from colopp.agent.takeover import TAKEOVER_PLACEHOLDERS

    values = set(template_values(VM, side(Role.PRIMARY)))
    for path in configs_dir().glob("*.conf"):
        extra = set(TAKEOVER_PLACEHOLDERS) if path.name == "takeover.conf" else set()
        assert placeholders(path.read_text()) <= values | extra, path.name


def test_disk_booted_vm_has_no_kernel_and_boots_the_quorum_disk() -> None:
    vm = VmSpec("demo", None, None, "", memory_mb=1024, vcpus=2)
    runtime = QemuRuntime(binary="qemu-system-x86_64")
    for role in (Role.PRIMARY, Role.SECONDARY):
        argv = qemu_argv(runtime, vm, side(role))
        assert "-kernel" not in argv and "-initrd" not in argv and "-append" not in argv
        assert option_values(argv, "-smp") == ["2"] and option_values(argv, "-m") == ["1024"]
        assert "virtio-blk-pci,id=vd0,drive=colo-disk0,bootindex=1" in option_values(
            argv, "-device"
        )
    assert option_values(qemu_argv(runtime, VM, side(Role.PRIMARY)), "-kernel") == ["/img/vmlinuz"]


def test_kernel_without_initrd_is_refused() -> None:
    with pytest.raises(ConfigError, match="kernel, initrd and append"):
        VmSpec("demo", Path("/k"), None, "").validate()
    with pytest.raises(ConfigError, match="kernel, initrd and append"):
        VmSpec("demo", None, None, "console=ttyS0").validate()
