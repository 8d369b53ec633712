from pathlib import Path

from colopp.image import tools


def test_gcc_static_argv():
    assert tools.gcc_static_argv(Path("kvd.c"), Path("out/kvd")) == [
        "gcc",
        "-static",
        "-O2",
        "-Wall",
        "-s",
        "-o",
        "out/kvd",
        "kvd.c",
    ]


def test_mkfs_ext4_argv_formats_a_file_without_lazy_init():
    argv = tools.mkfs_ext4_argv(Path("/w/disk.raw"))
    assert argv[0] == "mkfs.ext4"
    assert "-F" in argv
    assert argv[-1] == "/w/disk.raw"
    extended = argv[argv.index("-E") + 1].split(",")
    assert "root_owner=0:0" in extended
    assert "lazy_itable_init=0" in extended


def test_qemu_img_convert_argv_takes_a_prefix():
    prefix = ["/r/lib64/ld-linux-x86-64.so.2", "--library-path", "/r/lib", "/r/usr/bin/qemu-img"]
    argv = tools.qemu_img_convert_argv(prefix, Path("a.raw"), Path("a.qcow2"))
    assert argv == [*prefix, "convert", "-f", "raw", "-O", "qcow2", "a.raw", "a.qcow2"]


def test_data_disk_is_64_mib():
    assert tools.DATA_DISK_BYTES == 64 * 1024 * 1024
