"""`colopp libvirt setup`: the emulator wrapper and the qemu.conf block (pure parts + files)."""

from __future__ import annotations

from pathlib import Path

from colopp.qemu.runtime import QemuRuntime
from colopp.virt.libvirt_host import (
    BEGIN,
    emulator_script,
    install,
    merge_qemu_conf,
    plan,
    qemu_conf_block,
)


def test_wrapper_runs_the_roots_qemu_through_its_loader_and_enters_the_netns() -> None:
    text = emulator_script(QemuRuntime(root=Path("/r")))
    assert "/r/lib64/ld-linux-x86-64.so.2 --library-path" in text
    assert "QEMU_MODULE_DIR=/r/usr/lib/x86_64-linux-gnu/qemu" in text
    assert 'nsenter --net="/run/netns/$COLOPP_NETNS"' in text
    assert text.rstrip().endswith('"$@"')


def test_qemu_conf_block_is_replaced_not_duplicated() -> None:
    block = qemu_conf_block()
    assert 'security_driver = "none"' in block and "/dev/net/tun" in block
    once = merge_qemu_conf("# Debian's comments\n", block)
    twice = merge_qemu_conf(once, block)
    assert once == twice and once.count(BEGIN) == 1
    assert once.startswith("# Debian's comments\n")


def test_install_writes_files_and_removes_network_autostart(tmp_path: Path) -> None:
    autostart = tmp_path / "autostart"
    autostart.mkdir()
    (autostart / "default.xml").write_text("<network/>")
    host_plan = plan(Path("/r"), tmp_path / "bin/wrap")
    conf = tmp_path / "qemu.conf"
    changed = install(host_plan, conf, autostart)
    assert "removed network autostart default.xml" in changed
    assert (tmp_path / "bin/wrap").stat().st_mode & 0o111
    assert install(host_plan, conf, autostart) == []  # idempotent
