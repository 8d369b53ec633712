"""The Debian guest builder's pure parts: mirror, cache key, files, argv."""

from pathlib import Path

import pytest

from colopp.errors import ConfigError, ImageError
from colopp.image import debian, debian_files
from colopp.image.cmdline import READY_MARKER

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_sources() -> None:
    assert debian.mirror_from_sources([DEB822]) == "http://deb.debian.org/debian"


def test_mirror_from_one_line_sources_skips_other_suites() -> None:
    text = (
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64] http://ftp.example.org/debian/ bookworm main\n"
    )
    assert debian.mirror_from_sources([text]) == "http://ftp.example.org/debian"


def test_no_mirror_is_a_clear_error() -> None:
    with pytest.raises(ImageError, match="no deb source for bookworm"):
        debian.mirror_from_sources(["deb http://x.example/ubuntu jammy main\n"])


def test_release_list_name_matches_apt() -> None:
    name = debian.release_list_name("http://deb.debian.org/debian")
    assert name == "deb.debian.org_debian_dists_bookworm_InRelease"


def inputs(**change: object) -> debian.DebianInputs:
    base: dict[str, object] = {
        "mirror": "http://deb.debian.org/debian",
        "release_sha256": "ab" * 32,
        "host_packages": {"debootstrap": "1.0.128", "extlinux": "6.04"},
        "sources": {"kvd.c": "00"},
        "compiler": "12.2.0",
        "guest_address": "198.18.0.100/24",
    }
    base.update(change)
    return debian.DebianInputs(**base)  # type: ignore[arg-type]


def test_cache_key_is_stable_and_covers_every_input() -> None:
    assert debian.cache_key(inputs()) == debian.cache_key(inputs())
    key = debian.cache_key(inputs())
    assert debian.cache_key(inputs(release_sha256="cd" * 32)) != key
    assert debian.cache_key(inputs(sources={"kvd.c": "01"})) != key
    assert debian.cache_key(inputs(guest_address="198.18.0.101/24")) != key
    assert debian.cache_key(inputs(host_packages={"debootstrap": "1.0.129"})) != key


def test_manifest_round_trip(tmp_path: Path) -> None:
    image = debian.DebianImage(
        key="k" * 64,
        directory=tmp_path,
        disk=tmp_path / "disk.qcow2",
        disk_size=1 << 31,
        kernel_release="6.1.0-50-cloud-amd64",
        vmlinuz=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.img",
        guest_address="198.18.0.100/24",
    )
    assert debian.DebianImage.from_manifest(tmp_path, image.to_manifest()) == image
    assert debian.load_cached(tmp_path) is None  # no files: not a complete image
    with pytest.raises(ImageError, match="bad Debian image manifest"):
        debian.DebianImage.from_manifest(tmp_path, {"key": "x"})


def test_debootstrap_uses_the_mirror_and_the_package_cache() -> None:
    argv = debian.debootstrap_argv(Path("/w/root"), "http://m/debian", Path("/c/debs"))
    assert argv[0] == "debootstrap" and argv[-3:] == ["bookworm", "/w/root", "http://m/debian"]
    assert "--cache-dir=/c/debs" in argv
    include = next(a for a in argv if a.startswith("--include="))
    for package in ("linux-image-cloud-amd64", "redis-server", "nginx-light", "systemd-sysv"):
        assert package in include


def test_mke2fs_fills_from_a_directory_without_mounting() -> None:
    argv = debian.mke2fs_argv(Path("/w/root.ext4"), Path("/w/root"), 2 << 30)
    assert argv[argv.index("-d") + 1] == "/w/root"
    assert argv[-1] == f"{(2 << 30) // 1024}k"


def test_guest_files_boot_from_disk_on_the_serial_console() -> None:
    files = debian_files.text_files("6.1.0-50-cloud-amd64", "198.18.0.100/24")
    conf = files["boot/extlinux/extlinux.conf"][0]
    assert "KERNEL /boot/vmlinuz-6.1.0-50-cloud-amd64" in conf
    assert "console=ttyS0" in conf and "root=/dev/vda1" in conf
    assert "Address=198.18.0.100/24" in files["etc/systemd/network/10-eth0.network"][0]
    assert "-p 80" in files["etc/systemd/system/kvd.service"][0]
    assert "listen 8080" in files["etc/nginx/sites-available/default"][0]
    script, mode = files["usr/local/sbin/colopp-ready"]
    assert mode == 0o755 and READY_MARKER in script and "6379" in script
    assert "getty@tty1.service" in debian_files.MASKED_UNITS
    assert "apt-daily.timer" in debian_files.MASKED_UNITS


def test_redis_listens_for_the_lab() -> None:
    text = debian_files.redis_overrides()
    assert "bind 0.0.0.0" in text and "protected-mode no" in text


def test_bad_guest_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="not IPv4"):
        debian_files.network_unit("bogus")
    with pytest.raises(ConfigError, match="prefix"):
        debian_files.network_unit("198.18.0.100")


def test_static_files_have_the_promised_sizes() -> None:
    sizes = {n: len(debian_files.static_file(s)) for n, s in debian_files.STATIC_FILES.items()}
    assert sizes == {"64k.bin": 65536, "1m.bin": 1048576}


def test_partition_script_is_one_bootable_linux_partition() -> None:
    assert debian_files.sfdisk_script(2048) == "label: dos\nstart=2048, type=83, bootable\n"


def test_debian_guest_speaks_ipv6_on_the_lab_prefix() -> None:
    from colopp.lab import plan_lab

    assert plan_lab().guest_address6.with_prefixlen == debian_files.DEFAULT_GUEST_ADDRESS6
    unit = debian_files.network_unit("198.18.0.100/24")
    assert "Address=fd63:6f6c:6f70::100/64" in unit and "DuplicateAddressDetection=none" in unit
    assert "IPv6AcceptRA=no" in unit
    assert "listen [::]:8080" in debian_files.nginx_site()
    assert "bind 0.0.0.0 -::" in debian_files.redis_overrides()
    with pytest.raises(ConfigError, match="not IPv6"):
        debian_files.network_unit("198.18.0.100/24", "198.18.0.100/24")
