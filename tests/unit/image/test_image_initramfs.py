import gzip
import shutil
import stat
import subprocess

import pytest

from colopp.image import initramfs


def read_newc(archive: bytes):
    """A minimal independent newc reader: yields (name, mode, data, rdevmajor, rdevminor)."""
    pos = 0
    members = []
    while True:
        assert archive[pos : pos + 6] == b"070701", pos
        fields = [int(archive[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = (
            fields[1],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
        )
        assert fields[5] == 0  # mtime
        name_start = pos + 110
        name = archive[name_start : name_start + namesize - 1].decode()
        data_start = (name_start + namesize + 3) & ~3
        data = archive[data_start : data_start + filesize]
        pos = (data_start + filesize + 3) & ~3
        if name == "TRAILER!!!":
            assert len(archive) % 4 == 0
            return members
        members.append((name, mode, data, rmaj, rmin))


def test_write_newc_round_trip():
    entries = [
        initramfs.CpioEntry("bin", stat.S_IFDIR | 0o755),
        initramfs.CpioEntry("bin/x", stat.S_IFREG | 0o755, b"hello"),
        initramfs.CpioEntry("odd-name-len", stat.S_IFREG | 0o644, b"abc"),
    ]
    members = read_newc(initramfs.write_newc(entries))
    assert [(n, m, d) for n, m, d, _, _ in members] == [(e.name, e.mode, e.data) for e in entries]


def test_tree_parents_directories_and_sorts():
    tree = initramfs.InitramfsTree()
    tree.add_file("usr/lib/x/y.so", b"y")
    tree.add_symlink("bin/sh", "/bin/busybox")
    tree.add_char_device("dev/console", 5, 1)
    assert tree.names() == [
        "bin",
        "bin/sh",
        "dev",
        "dev/console",
        "usr",
        "usr/lib",
        "usr/lib/x",
        "usr/lib/x/y.so",
    ]
    members = {m[0]: m for m in read_newc(tree.to_cpio())}
    assert stat.S_ISLNK(members["bin/sh"][1])
    assert members["bin/sh"][2] == b"/bin/busybox"
    assert stat.S_ISCHR(members["dev/console"][1])
    assert members["dev/console"][3:] == (5, 1)
    assert stat.S_ISDIR(members["usr/lib"][1])


def test_gzip_output_is_reproducible():
    def build():
        tree = initramfs.InitramfsTree()
        tree.add_file("a", b"1")
        return tree.to_cpio_gz()

    assert build() == build()
    assert gzip.decompress(build()).startswith(b"070701")


def guest_tree():
    return initramfs.guest_initramfs(
        init=b"#!/bin/busybox sh\n",
        busybox=b"BB",
        busybox_applets=["bin/sh", "usr/bin/wc", "bin/busybox", "linuxrc"],
        kvd=b"KVD",
        iperf3=b"IPERF",
        libraries={"lib/x86_64-linux-gnu/libc.so.6": b"C", "lib64/ld-linux-x86-64.so.2": b"L"},
        modules=[("virtio_ring", b"R"), ("virtio", b"V")],
        kernel_release="6.1.0-56-cloud-amd64",
    )


def test_guest_initramfs_layout():
    members = {m[0]: m for m in read_newc(guest_tree().to_cpio())}
    assert members["init"][1] == stat.S_IFREG | 0o755
    assert stat.S_ISCHR(members["dev/console"][1])
    assert members["usr/bin/wc"][2] == b"/bin/busybox"
    assert members["bin/busybox"][2] == b"BB"
    assert "linuxrc" not in members
    assert members["bin/kvd"][2] == b"KVD"
    assert members["usr/bin/iperf3"][2] == b"IPERF"
    assert members["lib64/ld-linux-x86-64.so.2"][2] == b"L"
    assert members["lib/modules/load-order"][2] == (
        b"/lib/modules/6.1.0-56-cloud-amd64/virtio_ring.ko\n"
        b"/lib/modules/6.1.0-56-cloud-amd64/virtio.ko\n"
    )
    assert members["lib/modules/6.1.0-56-cloud-amd64/virtio.ko"][2] == b"V"
    for directory in ("proc", "sys", "dev", "tmp", "data"):
        assert stat.S_ISDIR(members[directory][1])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_gnu_cpio_lists_our_archive():
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"], input=guest_tree().to_cpio(), capture_output=True, check=True
    ).stdout.decode()
    assert "init" in listing.split("\n")
    assert "dev/console" in listing.split("\n")
