"""Kernel modules for the initramfs: which ones, in which order, decompressed.

Debian's ``linux-image-*`` package ships no ``modules.dep`` (``depmod`` runs in
its postinst), so dependencies are read from each module's ``.modinfo``
section (``depends=`` and ``softdep=pre:``).  The guest loads the result with
plain ``insmod`` in the computed order.  Everything except :func:`read_module`
and :func:`index_modules` is pure.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from colopp.errors import ImageError

#: What the guest needs, in the order measured on these hosts (virtio_ring first); dependencies are
#: added and the order fixed by :func:`load_order`.  ext4 is usually built in.
GUEST_MODULES: tuple[str, ...] = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "ext4",
)

_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


def module_name(path: str) -> str:
    """``kernel/drivers/net/virtio_net.ko.xz`` -> ``virtio_net`` (dashes as underscores)."""
    base = path.rsplit("/", 1)[-1]
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_builtin(text: str) -> set[str]:
    """Names of the built-in modules listed in a ``modules.builtin`` file."""
    return {module_name(line.strip()) for line in text.splitlines() if line.strip()}


@dataclass(frozen=True)
class ModuleDeps:
    """A module's hard dependencies and its ``softdep`` pre-modules (optional)."""

    hard: list[str]
    soft: list[str]


def parse_modinfo_depends(ko: bytes) -> ModuleDeps:
    """Dependencies from a module's ``.modinfo`` strings (``depends=``, ``softdep=pre:``)."""
    hard: list[str] = []
    soft: list[str] = []
    for raw in ko.split(b"\0"):
        if raw.startswith(b"depends="):
            hard += [d for d in raw[len(b"depends=") :].decode(errors="replace").split(",") if d]
        elif raw.startswith(b"softdep="):
            in_pre = False
            for word in raw[len(b"softdep=") :].decode(errors="replace").split():
                if word.endswith(":"):
                    in_pre = word == "pre:"
                elif in_pre:
                    soft.append(word)
    return ModuleDeps(
        [d.replace("-", "_") for d in dict.fromkeys(hard)],
        [d.replace("-", "_") for d in dict.fromkeys(soft)],
    )


def load_order(
    wanted: Iterable[str],
    builtin: set[str],
    depends: Callable[[str], ModuleDeps],
    available: Mapping[str, object],
) -> list[str]:
    """Modules to ``insmod``, dependencies first; built-ins skipped.

    ``depends`` maps a (loadable) module name to its dependencies.  Soft
    dependencies that are neither built in nor available are skipped (they may
    name an alias such as ``crc32c``); a wanted module or hard dependency that
    is neither raises :class:`ImageError`, and so does a cycle.
    """
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...], required: bool) -> None:
        if name in builtin or state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ImageError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        if name not in available:
            if required:
                raise ImageError(f"kernel module {name} is neither built in nor shipped")
            return
        state[name] = "visiting"
        deps = depends(name)
        for dep in deps.soft:
            visit(dep, (*chain, name), required=False)
        for dep in deps.hard:
            visit(dep, (*chain, name), required=True)
        state[name] = "done"
        order.append(name)

    for name in wanted:
        visit(name, (), required=True)
    return order


def index_modules(modules_dir: Path) -> dict[str, Path]:
    """Map module name -> file for every module under ``modules_dir/kernel``."""
    found: dict[str, Path] = {}
    for path in sorted((modules_dir / "kernel").rglob("*.ko*")):
        if path.name.endswith(_SUFFIXES):
            found.setdefault(module_name(path.name), path)
    return found


def read_module(path: Path) -> bytes:
    """The module's bytes, decompressed (insmod in busybox takes plain ``.ko``)."""
    try:
        raw = path.read_bytes()
        if path.name.endswith(".xz"):
            return lzma.decompress(raw)
        if path.name.endswith(".gz"):
            return gzip.decompress(raw)
        if path.name.endswith(".zst"):
            zstd = shutil.which("zstd")
            if zstd is None:
                raise ImageError(f"{path} is zstd-compressed and zstd is not installed")
            return subprocess.run([zstd, "-dc", str(path)], check=True, capture_output=True).stdout
    except (OSError, lzma.LZMAError, subprocess.CalledProcessError) as exc:
        raise ImageError(f"cannot read kernel module {path}: {exc}") from exc
    return raw
