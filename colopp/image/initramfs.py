"""A pure-Python initramfs writer: the ``newc`` cpio format, gzip-compressed.

Pure: entries in, bytes out.  Timestamps are zero and entries are sorted, so the
same inputs always give the same archive (the image cache relies on that being
cheap to reason about, and COLO does not care, but reproducibility does).
Device nodes are written without needing root, which is why we do not shell out
to ``cpio``.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass, field
from pathlib import PurePosixPath

_NEWC_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member.  ``name`` is relative (no leading slash)."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(entry: CpioEntry, ino: int, name_bytes: bytes) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        nlink,
        0,  # mtime
        len(entry.data),
        0,  # dev major
        0,  # dev minor
        entry.rdev_major,
        entry.rdev_minor,
        len(name_bytes) + 1,
        0,  # check
    )
    return _NEWC_MAGIC + b"".join(f"{value:08x}".encode() for value in fields)


def write_newc(entries: list[CpioEntry]) -> bytes:
    """Serialize ``entries`` (in the given order) plus the trailer as newc cpio."""
    chunks: list[bytes] = []
    offset = 0
    for ino, entry in enumerate([*entries, CpioEntry(_TRAILER, 0)], start=1):
        name_bytes = entry.name.encode()
        head = _header(entry, ino if entry.name != _TRAILER else 0, name_bytes) + name_bytes + b"\0"
        head += _pad4(offset + len(head))
        body = entry.data + _pad4(len(entry.data))
        chunks += (head, body)
        offset += len(head) + len(body)
    archive = b"".join(chunks)
    return archive + _pad4(len(archive))


@dataclass
class InitramfsTree:
    """An in-memory file tree that parents its own directories."""

    _entries: dict[str, CpioEntry] = field(default_factory=dict)

    def _add(self, entry: CpioEntry) -> None:
        path = PurePosixPath(entry.name.lstrip("/"))
        for parent in reversed(path.parents):
            if str(parent) != "." and str(parent) not in self._entries:
                self._entries[str(parent)] = CpioEntry(str(parent), stat.S_IFDIR | 0o755)
        self._entries[str(path)] = CpioEntry(
            str(path), entry.mode, entry.data, entry.rdev_major, entry.rdev_minor
        )

    def add_dir(self, name: str, perm: int = 0o755) -> None:
        """Add a directory (and its parents)."""
        self._add(CpioEntry(name, stat.S_IFDIR | perm))

    def add_file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        """Add a regular file with ``data``."""
        self._add(CpioEntry(name, stat.S_IFREG | perm, data))

    def add_symlink(self, name: str, target: str) -> None:
        """Add a symlink ``name`` -> ``target``."""
        self._add(CpioEntry(name, stat.S_IFLNK | 0o777, target.encode()))

    def add_char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        """Add a character device node (no root needed: it is only a header)."""
        self._add(CpioEntry(name, stat.S_IFCHR | perm, b"", major, minor))

    def names(self) -> list[str]:
        """All member names, sorted."""
        return sorted(self._entries)

    def to_cpio(self) -> bytes:
        """The uncompressed newc archive, members sorted by name (parents first)."""
        return write_newc([self._entries[name] for name in self.names()])

    def to_cpio_gz(self) -> bytes:
        """The gzip-compressed archive, with a zero gzip timestamp."""
        return gzip.compress(self.to_cpio(), compresslevel=9, mtime=0)


def guest_initramfs(
    *,
    init: bytes,
    busybox: bytes,
    busybox_applets: list[str],
    kvd: bytes,
    iperf3: bytes,
    libraries: dict[str, bytes],
    modules: list[tuple[str, bytes]],
    kernel_release: str,
    redis_server: bytes | None = None,
    quickack: bytes | None = None,
) -> InitramfsTree:
    """Lay out the guest's initramfs (pure).

    ``busybox_applets`` is ``busybox --list-full`` output (``usr/bin/wc`` ...);
    ``libraries`` maps absolute guest paths (as ldd prints them) to contents;
    ``modules`` are (name, plain .ko bytes) in load order, and their paths are
    written to ``/lib/modules/load-order`` for /init.
    """
    tree = InitramfsTree()
    for directory in ("proc", "sys", "dev", "tmp", "run", "data", "root", "etc"):
        tree.add_dir(directory)
    # The kernel opens /dev/console for /init's stdio before devtmpfs is mounted.
    tree.add_char_device("dev/console", 5, 1)
    tree.add_char_device("dev/null", 1, 3, perm=0o666)
    tree.add_file("init", init, perm=0o755)
    tree.add_file("bin/busybox", busybox, perm=0o755)
    for line in busybox_applets:
        applet = line.strip().lstrip("/")
        if "/" in applet and applet != "bin/busybox":
            tree.add_symlink(applet, "/bin/busybox")
    tree.add_file("bin/kvd", kvd, perm=0o755)
    tree.add_file("usr/bin/iperf3", iperf3, perm=0o755)
    if quickack is not None:
        tree.add_file("bin/quickack", quickack, perm=0o755)
    if redis_server is not None:
        tree.add_file("usr/bin/redis-server", redis_server, perm=0o755)
    for path, data in libraries.items():
        tree.add_file(path, data, perm=0o755)
    module_dir = f"lib/modules/{kernel_release}"
    tree.add_dir(module_dir)
    for name, data in modules:
        tree.add_file(f"{module_dir}/{name}.ko", data)
    order = "".join(f"/{module_dir}/{name}.ko\n" for name, _ in modules)
    tree.add_file("lib/modules/load-order", order.encode())
    tree.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    tree.add_file("etc/group", b"root:x:0:\n")
    tree.add_file("etc/hosts", b"127.0.0.1 localhost colopp-guest\n")
    return tree
