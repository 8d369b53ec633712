import json
from dataclasses import replace

import pytest

from colopp.errors import ImageError
from colopp.image import builder
from colopp.image.packages import KernelPackage


def inputs(**changes):
    base = builder.ImageInputs(
        packages={"busybox-static": "1:1.35.0-4", "iperf3": "3.12-1"},
        kernel=KernelPackage("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2"),
        sources={"init": "aa", "kvd.c": "bb"},
        compiler="12.2.0",
    )
    return replace(base, **changes)


def test_cache_key_is_stable_and_order_independent():
    a = inputs()
    b = inputs(packages={"iperf3": "3.12-1", "busybox-static": "1:1.35.0-4"})
    assert builder.cache_key(a) == builder.cache_key(b)
    assert len(builder.cache_key(a)) == 64


@pytest.mark.parametrize(
    "changes",
    [
        {"packages": {"busybox-static": "1:1.35.0-5", "iperf3": "3.12-1"}},
        {"kernel": KernelPackage("linux-image-6.1.0-57-cloud-amd64", "6.1.193-1")},
        {"sources": {"init": "aa", "kvd.c": "cc"}},
        {"sources": {"init": "ab", "kvd.c": "bb"}},
        {"compiler": "12.3.0"},
        {"builder_version": "999"},
    ],
)
def test_cache_key_changes_with_every_input(changes):
    assert builder.cache_key(inputs(**changes)) != builder.cache_key(inputs())


def test_source_hashes_cover_our_guest_sources(tmp_path):
    (tmp_path / "init").write_text("a")
    (tmp_path / "kvd.c").write_text("b")
    (tmp_path / "quickack.c").write_text("q")
    hashes = builder.source_hashes(tmp_path)
    assert set(hashes) == {"init", "kvd.c", "quickack.c"}
    (tmp_path / "kvd.c").write_text("c")
    assert builder.source_hashes(tmp_path)["kvd.c"] != hashes["kvd.c"]


def test_source_hashes_missing(tmp_path):
    with pytest.raises(ImageError, match="guest sources missing"):
        builder.source_hashes(tmp_path)


def test_shipped_guest_sources_exist():
    assert set(builder.source_hashes()) == set(builder.GUEST_SOURCES)
    assert (builder.GUEST_SOURCES_DIR / "wrk-mix.lua").is_file()


def make_image(directory):
    return builder.GuestImage(
        key="k" * 64,
        directory=directory,
        vmlinuz=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        disk=directory / "disk.raw",
        disk_format="raw",
        disk_size=64 << 20,
        kernel_release="6.1.0-56-cloud-amd64",
        inputs=inputs().as_dict(),
    )


def test_manifest_round_trip_and_load_cached(tmp_path):
    image = make_image(tmp_path)
    (tmp_path / builder.MANIFEST).write_text(json.dumps(image.to_manifest()))
    assert builder.load_cached(tmp_path) is None  # files missing: incomplete
    for name in ("vmlinuz", "initrd.img", "disk.raw"):
        (tmp_path / name).write_bytes(b"x")
    assert builder.load_cached(tmp_path) == image


def test_load_cached_rejects_garbage(tmp_path):
    assert builder.load_cached(tmp_path) is None
    (tmp_path / builder.MANIFEST).write_text("{not json")
    assert builder.load_cached(tmp_path) is None
    (tmp_path / builder.MANIFEST).write_text(json.dumps({"key": "x"}))
    assert builder.load_cached(tmp_path) is None


def test_from_manifest_rejects_unknown_format(tmp_path):
    manifest = make_image(tmp_path).to_manifest() | {"disk_format": "vmdk"}
    with pytest.raises(ImageError, match="disk format"):
        builder.GuestImage.from_manifest(tmp_path, manifest)


def test_guest_image_cmdline():
    image = make_image(builder.DEFAULT_CACHE_DIR)
    assert "colopp.ip=198.18.0.100/24" in image.cmdline("198.18.0.100/24")
