import gzip
import lzma
from pathlib import Path

import pytest

from colopp.errors import ImageError
from colopp.image import kmod

DATA = Path(__file__).parent / "data"

HARD = {
    "virtio_ring": [],
    "virtio": [],
    "virtio_pci_modern_dev": [],
    "virtio_pci_legacy_dev": [],
    "virtio_pci": ["virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"],
    "failover": [],
    "net_failover": ["failover"],
    "virtio_net": ["virtio_ring", "virtio", "net_failover"],
    "virtio_blk": ["virtio", "virtio_ring"],
}
DEPS = {name: kmod.ModuleDeps(hard, []) for name, hard in HARD.items()}


def hard_only(table):
    return {name: kmod.ModuleDeps(hard, []) for name, hard in table.items()}


def test_module_name():
    assert kmod.module_name("kernel/drivers/net/virtio_net.ko") == "virtio_net"
    assert kmod.module_name("kernel/arch/x86/crypto/crc32c-intel.ko.xz") == "crc32c_intel"


def test_parse_modules_builtin_real_excerpt():
    builtin = kmod.parse_modules_builtin((DATA / "modules.builtin").read_text())
    assert {"ext4", "jbd2", "mbcache", "crc16"} <= builtin
    assert "virtio_net" not in builtin


def test_parse_modinfo_depends():
    blob = (
        b"\x7fELF...\0license=GPL\0softdep=pre: crc32c post: foo\0"
        b"depends=virtio_ring,virtio,net_failover\0retpoline=Y\0name=virtio_net\0"
    )
    deps = kmod.parse_modinfo_depends(blob)
    assert deps.hard == ["virtio_ring", "virtio", "net_failover"]
    assert deps.soft == ["crc32c"]
    assert kmod.parse_modinfo_depends(b"\0depends=\0") == kmod.ModuleDeps([], [])


def test_load_order_is_the_measured_order_with_ext4_builtin():
    order = kmod.load_order(kmod.GUEST_MODULES, {"ext4"}, DEPS.__getitem__, DEPS)
    assert order == [
        "virtio_ring",
        "virtio",
        "virtio_pci_modern_dev",
        "virtio_pci_legacy_dev",
        "virtio_pci",
        "failover",
        "net_failover",
        "virtio_net",
        "virtio_blk",
    ]


def test_load_order_puts_dependencies_first():
    deps = hard_only({"ext4": ["jbd2", "mbcache", "crc16"], "jbd2": [], "mbcache": [], "crc16": []})
    assert kmod.load_order(["ext4"], {"crc16"}, deps.__getitem__, deps) == [
        "jbd2",
        "mbcache",
        "ext4",
    ]


def test_load_order_missing_module():
    with pytest.raises(ImageError, match="neither built in nor shipped"):
        kmod.load_order(["virtio_net"], set(), DEPS.__getitem__, {})


def test_load_order_missing_hard_dependency():
    deps = hard_only({"a": ["b"]})
    with pytest.raises(ImageError, match="module b"):
        kmod.load_order(["a"], set(), deps.__getitem__, deps)


def test_load_order_soft_dependencies_optional_but_loaded_first():
    deps = {
        "ext4": kmod.ModuleDeps(["jbd2"], ["crc32c", "crc32c_generic"]),
        "jbd2": kmod.ModuleDeps([], []),
        "crc32c_generic": kmod.ModuleDeps([], []),
    }
    assert kmod.load_order(["ext4"], set(), deps.__getitem__, deps) == [
        "crc32c_generic",
        "jbd2",
        "ext4",
    ]


def test_load_order_cycle():
    deps = hard_only({"a": ["b"], "b": ["a"]})
    with pytest.raises(ImageError, match="cycle"):
        kmod.load_order(["a"], set(), deps.__getitem__, deps)


def test_index_and_read_compressed_modules(tmp_path):
    d = tmp_path / "kernel" / "drivers"
    d.mkdir(parents=True)
    (d / "plain.ko").write_bytes(b"plain")
    (d / "xzed.ko.xz").write_bytes(lzma.compress(b"xzed"))
    (d / "gzed-mod.ko.gz").write_bytes(gzip.compress(b"gzed"))
    (d / "notes.txt").write_bytes(b"x")
    index = kmod.index_modules(tmp_path)
    assert set(index) == {"plain", "xzed", "gzed_mod"}
    assert kmod.read_module(index["plain"]) == b"plain"
    assert kmod.read_module(index["xzed"]) == b"xzed"
    assert kmod.read_module(index["gzed_mod"]) == b"gzed"


def test_read_module_corrupt(tmp_path):
    bad = tmp_path / "bad.ko.xz"
    bad.write_bytes(b"not xz")
    with pytest.raises(ImageError, match="cannot read kernel module"):
        kmod.read_module(bad)
