"""Argv builders for the host tools the build runs: gcc, mkfs.ext4, qemu-img (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: Size of the guest's data disk template.
DATA_DISK_BYTES = 64 * 1024 * 1024


def gcc_static_argv(source: Path, output: Path) -> list[str]:
    """Compile our C source into a static, stripped binary."""
    return ["gcc", "-static", "-O2", "-Wall", "-s", "-o", str(output), str(source)]


def gcc_version_argv() -> list[str]:
    """The compiler's full version (part of the cache key)."""
    return ["gcc", "-dumpfullversion"]


def mkfs_ext4_argv(image: Path, label: str = "colopp-data") -> list[str]:
    """Format a file as ext4 without mounting it.

    Lazy inode-table and journal init are off: otherwise the guest kernel keeps
    writing to the disk in the background after mount (ext4lazyinit), which is
    I/O that no request asked for.
    """
    return [
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        label,
        "-E",
        "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
        str(image),
    ]


def qemu_img_convert_argv(qemu_img: Sequence[str], raw: Path, qcow2: Path) -> list[str]:
    """Convert the raw template to qcow2; ``qemu_img`` is the argv prefix to run it."""
    return [*qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]
