from pathlib import Path

import pytest

from colopp.errors import ImageError
from colopp.image import packages

DATA = Path(__file__).parent / "data"


def test_apt_argv_builders():
    assert packages.apt_update_argv() == ["apt-get", "update"]
    assert packages.apt_install_argv(["iperf3", "cpio"]) == [
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "iperf3",
        "cpio",
    ]
    assert packages.apt_download_argv("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2") == [
        "apt-get",
        "download",
        "linux-image-6.1.0-56-cloud-amd64=6.1.192-2",
    ]
    assert packages.apt_cache_show_argv("x") == ["apt-cache", "show", "--no-all-versions", "x"]


def test_dpkg_argv_builders():
    assert packages.dpkg_extract_argv(Path("/c/k.deb"), Path("/w/k")) == [
        "dpkg-deb",
        "-x",
        "/c/k.deb",
        "/w/k",
    ]
    argv = packages.dpkg_query_argv(["busybox-static"])
    assert argv[:2] == ["dpkg-query", "-W"]
    assert argv[2] == "-f=${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"
    assert argv[3:] == ["busybox-static"]
    assert packages.ldd_argv(Path("/usr/bin/iperf3")) == ["ldd", "/usr/bin/iperf3"]


def test_parse_dpkg_query_keeps_only_installed():
    text = (DATA / "dpkg-query.txt").read_text()
    assert packages.parse_dpkg_query(text) == {
        "busybox-static": "1:1.35.0-4+deb12u1+b1",
        "iperf3": "3.12-1+deb12u2",
    }


def test_parse_kernel_package_from_real_apt_cache_show():
    text = (DATA / "apt-cache-show-linux-image-cloud-amd64.txt").read_text()
    kernel = packages.parse_kernel_package(text)
    assert kernel == packages.KernelPackage("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2")
    assert kernel.release == "6.1.0-56-cloud-amd64"


def test_parse_kernel_package_without_versioned_dependency():
    with pytest.raises(ImageError, match="no versioned kernel"):
        packages.parse_kernel_package("Package: linux-image-cloud-amd64\nDepends: foo\n")


def test_parse_control_field():
    text = "Package: a\nVersion: 1.0-2\nDepends: b\n"
    assert packages.parse_control_field(text, "Version") == "1.0-2"
    assert packages.parse_control_field(text, "Missing") is None


def test_parse_ldd_from_real_output():
    paths = packages.parse_ldd((DATA / "ldd-iperf3.txt").read_text())
    names = [p.name for p in paths]
    assert "linux-vdso.so.1" not in names
    assert "libiperf.so.0" in names
    assert "libc.so.6" in names
    assert Path("/lib64/ld-linux-x86-64.so.2") in paths
    assert all(p.is_absolute() for p in paths)


def test_parse_ldd_missing_library():
    with pytest.raises(ImageError, match="missing shared library"):
        packages.parse_ldd("\tlibfoo.so.1 => not found\n")


def test_run_maps_failures_to_image_error():
    with pytest.raises(ImageError, match="failed"):
        packages.run(["sh", "-c", "echo boom >&2; exit 3"])
    with pytest.raises(ImageError, match="cannot run"):
        packages.run(["/nonexistent/colopp-tool"])
    assert packages.run(["sh", "-c", "echo $COLOPP_X"], env={"COLOPP_X": "y"}) == "y\n"
