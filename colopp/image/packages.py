"""Debian packages: argv builders and parsers (pure), plus one thin runner.

The image is built only from Debian packages: the cloud kernel is fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x``; busybox-static, iperf3
(with its shared libraries), gcc and e2fsprogs are installed on the host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from colopp.errors import ImageError
from colopp.process import run_tool

#: Kernel meta-package; its Depends names the versioned image package.
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"

#: Host packages the build uses (installed when missing).
HOST_PACKAGES: tuple[str, ...] = (
    "busybox-static",
    "iperf3",
    "redis-tools",
    "cpio",
    "e2fsprogs",
    "gcc",
    "libc6-dev",
)

#: Packages whose versions decide the image contents (the cache key).
#: iperf3's shared libraries come from libiperf0, libssl3, libsctp1 and libc6; redis-server
#: (redis-tools' binary, run under that name) adds libjemalloc2, liblzf1 and libsystemd0.
IMAGE_INPUT_PACKAGES: tuple[str, ...] = (
    "busybox-static",
    "iperf3",
    "redis-tools",
    "libjemalloc2",
    "liblzf1",
    "libsystemd0",
    "libiperf0",
    "libssl3",
    "libsctp1",
    "libc6",
    "libc6-dev",
    "gcc",
    "e2fsprogs",
)

_DPKG_QUERY_FORMAT = "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"


@dataclass(frozen=True)
class KernelPackage:
    """The versioned kernel image package behind the meta-package."""

    name: str
    version: str

    @property
    def release(self) -> str:
        """``linux-image-6.1.0-56-cloud-amd64`` -> ``6.1.0-56-cloud-amd64``."""
        return self.name.removeprefix("linux-image-")


# ---- argv builders (pure) ----------------------------------------------------


def apt_update_argv() -> list[str]:
    """Refresh the package lists."""
    return ["apt-get", "update"]


def apt_install_argv(packages: Sequence[str]) -> list[str]:
    """Install ``packages`` non-interactively."""
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def apt_download_argv(package: str, version: str) -> list[str]:
    """Download one exact package version into the current directory."""
    return ["apt-get", "download", f"{package}={version}"]


def apt_cache_show_argv(package: str) -> list[str]:
    """Show the candidate version's control record."""
    return ["apt-cache", "show", "--no-all-versions", package]


def dpkg_query_argv(packages: Sequence[str]) -> list[str]:
    """Query name, version and status of installed packages."""
    return ["dpkg-query", "-W", f"-f={_DPKG_QUERY_FORMAT}", *packages]


def dpkg_extract_argv(deb: Path, destination: Path) -> list[str]:
    """Unpack a .deb's data into ``destination`` (no maintainer scripts run)."""
    return ["dpkg-deb", "-x", str(deb), str(destination)]


def ldd_argv(binary: Path) -> list[str]:
    """List a dynamic binary's shared libraries."""
    return ["ldd", str(binary)]


# ---- parsers (pure) ------------------------------------------------------------


def parse_dpkg_query(text: str) -> dict[str, str]:
    """Installed packages -> version, from :func:`dpkg_query_argv` output."""
    installed: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].strip() == "ii":
            installed[parts[0]] = parts[1]
    return installed


def parse_control_field(text: str, field: str) -> str | None:
    """The first value of ``field`` in an apt-cache/dpkg control record."""
    match = re.search(rf"^{re.escape(field)}:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def parse_kernel_package(meta_show: str) -> KernelPackage:
    """Find ``linux-image-X-cloud-amd64 (= V)`` in the meta-package's Depends."""
    depends = parse_control_field(meta_show, "Depends") or ""
    match = re.search(r"(linux-image-[0-9][^\s,(]*-cloud-amd64)\s*\(=\s*([^)\s]+)\)", depends)
    if match is None:
        raise ImageError(f"{KERNEL_META_PACKAGE} depends on no versioned kernel: {depends!r}")
    return KernelPackage(match.group(1), match.group(2))


def parse_ldd(text: str) -> list[Path]:
    """Absolute library paths from ldd output (vdso skipped, loader included)."""
    paths: list[Path] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip()
            if target.startswith("not found"):
                raise ImageError(f"missing shared library: {line}")
        else:
            target = line
        path = target.split(" (", 1)[0].strip()
        if path.startswith("/"):
            paths.append(Path(path))
    return paths


# ---- the one I/O seam ----------------------------------------------------------


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``argv`` and return its stdout; failures become :class:`ImageError`.

    ``env`` is added to the current environment.
    """
    return run_tool(argv, ImageError, cwd=cwd, check=check, env=env)
