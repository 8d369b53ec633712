"""Build (or fetch from cache) the Debian 12 guest: a server booting from its own disk.

``colopp image build --guest debian``.  debootstrap installs bookworm from the
mirror this machine's apt sources name (Debian packages only: systemd, the cloud
kernel, redis-server, nginx-light, iperf3); colopp adds kvd (compiled on the
host), a few systemd units and configs (:mod:`colopp.image.debian_files`).  The
root file system is filled without mounting it (``mke2fs -d``); only extlinux's
install needs a loop mount of that file system.  The disk is a plain file with a
DOS partition table (sfdisk), syslinux's MBR and the ext4 partition, converted
to qcow2.  It boots through SeaBIOS: no ``-kernel``.

The cache key hashes the suite's Release file as apt last saw it (so a new point
release or package upload rebuilds), the host tools' versions, our sources and
the builder version.  Building needs root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from colopp.errors import ImageError
from colopp.image import debian_files, packages, tools
from colopp.image.builder import DEFAULT_CACHE_DIR, GUEST_SOURCES_DIR, _cache_lock, _Progress

BUILDER_VERSION = "debian-1"
SUITE = "bookworm"
#: Packages debootstrap installs on top of the minbase variant.
INCLUDE: tuple[str, ...] = (
    "systemd-sysv",
    "udev",
    "kmod",
    "initramfs-tools",
    "linux-image-cloud-amd64",
    "redis-server",
    "nginx-light",
    "iperf3",
    "iproute2",
    "procps",
)
#: Host packages the build runs.
HOST_PACKAGES: tuple[str, ...] = (
    "debootstrap",
    "extlinux",
    "syslinux-common",
    "e2fsprogs",
    "fdisk",
    "gcc",
    "libc6-dev",
)
ROOT_FS_BYTES = 2 * 1024 * 1024 * 1024
PARTITION_START_SECTOR = 2048
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
APT_LISTS = Path("/var/lib/apt/lists")
DEFAULT_MEMORY_MB = 1024
DEFAULT_VCPUS = 2
MANIFEST = "manifest.json"


# ---- pure ---------------------------------------------------------------------


def mirror_from_sources(texts: Sequence[str], suite: str = SUITE) -> str:
    """The Debian mirror URL that serves ``suite`` in apt sources (deb822 or one-line).

    Raises:
        ImageError: no source names ``suite`` of a Debian archive.
    """
    for text in texts:
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line.startswith("deb"):
                    continue
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            if (
                "deb" in fields.get("types", "").split()
                and suite in fields.get("suites", "").split()
            ):
                for uri in fields.get("uris", "").split():
                    if uri.startswith(("http://", "https://")):
                        return uri.rstrip("/")
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb":
                rest = [w for w in words[1:] if not w.startswith("[")]
                if len(rest) >= 2 and rest[1] == suite and rest[0].startswith("http"):
                    return rest[0].rstrip("/")
    raise ImageError(f"no deb source for {suite} in the apt sources under /etc/apt")


def release_list_name(mirror: str, suite: str = SUITE) -> str:
    """apt's file name for the suite's InRelease in /var/lib/apt/lists."""
    bare = mirror.split("://", 1)[-1].rstrip("/")
    return f"{bare.replace('/', '_')}_dists_{suite}_InRelease"


@dataclass(frozen=True)
class DebianInputs:
    """Everything the Debian image's contents depend on."""

    mirror: str
    release_sha256: str
    host_packages: Mapping[str, str]
    sources: Mapping[str, str]
    compiler: str
    guest_address: str
    builder_version: str = BUILDER_VERSION

    def as_dict(self) -> dict[str, object]:
        return {
            "builder_version": self.builder_version,
            "suite": SUITE,
            "mirror": self.mirror,
            "release_sha256": self.release_sha256,
            "include": list(INCLUDE),
            "host_packages": dict(sorted(self.host_packages.items())),
            "sources": dict(sorted(self.sources.items())),
            "compiler": self.compiler,
            "guest_address": self.guest_address,
        }


def cache_key(inputs: DebianInputs) -> str:
    """Hex SHA-256 of the canonical inputs."""
    canonical = json.dumps(inputs.as_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class DebianImage:
    """A built Debian guest in the cache.  Copy ``disk`` per VM: it is a template."""

    key: str
    directory: Path
    disk: Path
    disk_size: int
    kernel_release: str
    vmlinuz: Path  # copies of what extlinux boots (accel probe, libvirt direct boot)
    initrd: Path
    guest_address: str
    memory_mb: int = DEFAULT_MEMORY_MB
    vcpus: int = DEFAULT_VCPUS
    disk_format: str = "qcow2"

    def to_manifest(self) -> dict[str, object]:
        return {
            "key": self.key,
            "guest": "debian",
            "disk": self.disk.name,
            "disk_format": self.disk_format,
            "disk_size": self.disk_size,
            "kernel_release": self.kernel_release,
            "vmlinuz": self.vmlinuz.name,
            "initrd": self.initrd.name,
            "guest_address": self.guest_address,
            "memory_mb": self.memory_mb,
            "vcpus": self.vcpus,
        }

    @classmethod
    def from_manifest(cls, directory: Path, data: Mapping[str, object]) -> DebianImage:
        try:
            return cls(
                key=str(data["key"]),
                directory=directory,
                disk=directory / str(data["disk"]),
                disk_size=int(str(data["disk_size"])),
                kernel_release=str(data["kernel_release"]),
                vmlinuz=directory / str(data["vmlinuz"]),
                initrd=directory / str(data["initrd"]),
                guest_address=str(data["guest_address"]),
                memory_mb=int(str(data["memory_mb"])),
                vcpus=int(str(data["vcpus"])),
                disk_format=str(data["disk_format"]),
            )
        except (KeyError, ValueError) as exc:
            raise ImageError(f"bad Debian image manifest in {directory}: {exc}") from exc


def load_cached(directory: Path) -> DebianImage | None:
    """The complete image in ``directory``, or None."""
    try:
        image = DebianImage.from_manifest(directory, json.loads((directory / MANIFEST).read_text()))
    except (OSError, ValueError, ImageError):
        return None
    return image if all(p.is_file() for p in (image.disk, image.vmlinuz, image.initrd)) else None


def debootstrap_argv(target: Path, mirror: str, cache: Path) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(INCLUDE)}",
        f"--cache-dir={cache}",
        SUITE,
        str(target),
        mirror,
    ]


def mke2fs_argv(image: Path, root: Path, size: int) -> list[str]:
    """An ext4 file system filled from ``root`` without mounting it."""
    return [
        "mke2fs",
        "-q",
        "-F",
        "-t",
        "ext4",
        "-L",
        "root",
        "-d",
        str(root),
        "-E",
        "lazy_itable_init=0,lazy_journal_init=0",
        str(image),
        f"{size // 1024}k",
    ]


# ---- I/O ----------------------------------------------------------------------


def _read_sources() -> list[str]:
    texts = []
    for place in APT_SOURCES:
        files = [place]
        if place.is_dir():
            files = sorted(place.glob("*.list")) + sorted(place.glob("*.sources"))
        for path in files:
            try:
                texts.append(path.read_text())
            except OSError:
                continue
    return texts


def gather_inputs(guest_address: str) -> DebianInputs:
    """Read the mirror, its Release file, the host tools' versions and our sources."""
    debian_files.check_address(guest_address)
    mirror = mirror_from_sources(_read_sources())
    release = APT_LISTS / release_list_name(mirror)
    if not release.is_file():
        packages.run(packages.apt_update_argv(), env={"DEBIAN_FRONTEND": "noninteractive"})
    try:
        release_sha = hashlib.sha256(release.read_bytes()).hexdigest()
    except OSError as exc:
        raise ImageError(f"no Release file for {SUITE} from {mirror}: {exc}") from exc
    query = packages.run(packages.dpkg_query_argv(HOST_PACKAGES), check=False)
    installed = packages.parse_dpkg_query(query)
    missing = [p for p in HOST_PACKAGES if p not in installed]
    if missing:
        if os.geteuid() != 0:
            raise ImageError(f"missing host packages {missing}: install them or run as root")
        packages.run(packages.apt_install_argv(missing), env={"DEBIAN_FRONTEND": "noninteractive"})
        installed = packages.parse_dpkg_query(packages.run(packages.dpkg_query_argv(HOST_PACKAGES)))
    ours = [GUEST_SOURCES_DIR / "kvd.c", Path(debian_files.__file__), Path(__file__)]
    return DebianInputs(
        mirror=mirror,
        release_sha256=release_sha,
        host_packages=installed,
        sources={p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ours},
        compiler=packages.run(tools.gcc_version_argv()).strip(),
        guest_address=guest_address,
    )


def build_debian_image(
    cache_dir: Path | None = None,
    *,
    force: bool = False,
    console: Console | None = None,
    qemu_img: Sequence[str] | None = None,
    guest_address: str = debian_files.DEFAULT_GUEST_ADDRESS,
) -> DebianImage:
    """Return the Debian guest for the current inputs, building it if not cached.

    Raises:
        ImageError: not root, a tool or the download failed.
    """
    cache_dir = cache_dir or DEFAULT_CACHE_DIR
    progress = _Progress(console or Console(stderr=True))
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create image cache {cache_dir}: {exc}") from exc
    with progress.step("Resolving the Debian guest's inputs"):
        inputs = gather_inputs(guest_address)
    key = cache_key(inputs)
    final = cache_dir / f"debian-{key[:16]}"
    with _cache_lock(cache_dir):
        cached = None if force else load_cached(final)
        if cached is not None:
            progress.console.print(f"[green]✓[/green] Cached Debian image {final}")
            return cached
        if os.geteuid() != 0:
            raise ImageError("building the Debian guest needs root (debootstrap, extlinux)")
        if qemu_img is None and (found := shutil.which("qemu-img")):
            qemu_img = [found]
        if not qemu_img:
            raise ImageError("the Debian guest needs qemu-img (run `colopp qemu install`)")
        work = Path(tempfile.mkdtemp(prefix=f".build-debian-{key[:16]}-", dir=cache_dir))
        try:
            image = _build(work, cache_dir / "debootstrap-debs", inputs, key, progress, qemu_img)
            (work / MANIFEST).write_text(json.dumps(image.to_manifest(), indent=2) + "\n")
            work.chmod(0o755)
            if final.exists():
                shutil.rmtree(final)
            work.rename(final)
        except OSError as exc:
            raise ImageError(f"building the Debian guest in {work} failed: {exc}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        built = load_cached(final)
        if built is None:
            raise ImageError(f"Debian image in {final} is incomplete after the build")
    progress.console.print(f"[green]✓[/green] Debian guest image {final}")
    return built


def _build(
    work: Path,
    debs: Path,
    inputs: DebianInputs,
    key: str,
    progress: _Progress,
    qemu_img: Sequence[str],
) -> DebianImage:
    root = work / "rootfs"
    debs.mkdir(parents=True, exist_ok=True)
    with progress.step(f"debootstrap {SUITE} from {inputs.mirror}"):
        packages.run(debootstrap_argv(root, inputs.mirror, debs.resolve()))
    boot = sorted((root / "boot").glob("vmlinuz-*"))
    if len(boot) != 1:
        raise ImageError(f"expected one kernel in the guest's /boot, found {boot}")
    release = boot[0].name.removeprefix("vmlinuz-")
    with progress.step("Configuring services (kvd, redis, nginx, networkd)"):
        _configure(root, release, inputs.guest_address)
    fs = work / "root.ext4"
    with progress.step("Making the root file system and installing extlinux"):
        packages.run(mke2fs_argv(fs, root, ROOT_FS_BYTES))
        _install_extlinux(fs, work / "mnt")
    with progress.step("Assembling the disk (MBR, partition, qcow2)"):
        raw = work / "disk.raw"
        _assemble(raw, fs)
        fs.unlink()
        disk = work / "disk.qcow2"
        packages.run([*qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)])
        size = raw.stat().st_size
        raw.unlink()
    vmlinuz, initrd = work / "vmlinuz", work / "initrd.img"
    shutil.copyfile(root / "boot" / f"vmlinuz-{release}", vmlinuz)
    shutil.copyfile(root / "boot" / f"initrd.img-{release}", initrd)
    shutil.rmtree(root)
    return DebianImage(
        key=key,
        directory=work,
        disk=disk,
        disk_size=size,
        kernel_release=release,
        vmlinuz=vmlinuz,
        initrd=initrd,
        guest_address=inputs.guest_address,
    )


def _configure(root: Path, release: str, guest_address: str) -> None:
    for rel, (text, mode) in debian_files.text_files(release, guest_address).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(text)
        path.chmod(mode)
    www = root / "var/www/colopp"
    www.mkdir(parents=True, exist_ok=True)
    for name, size in debian_files.STATIC_FILES.items():
        (www / name).write_bytes(debian_files.static_file(size))
    with (root / "etc/redis/redis.conf").open("a") as conf:
        conf.write(debian_files.redis_overrides())
    packages.run(tools.gcc_static_argv(GUEST_SOURCES_DIR / "kvd.c", root / "usr/local/sbin/kvd"))
    for unit in debian_files.MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    packages.run(["systemctl", f"--root={root}", "enable", *debian_files.ENABLED_UNITS])
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / leftover).glob("*"):
            if path.is_file():
                path.unlink()


def _install_extlinux(fs: Path, mnt: Path) -> None:
    """extlinux needs the file system mounted: a loop mount, for seconds."""
    mnt.mkdir()
    packages.run(["mount", "-o", "loop", str(fs), str(mnt)])
    try:
        packages.run(["extlinux", "--install", str(mnt / "boot/extlinux")])
    finally:
        packages.run(["umount", str(mnt)])
        mnt.rmdir()


def _assemble(raw: Path, fs: Path) -> None:
    """Partition table, syslinux's MBR, the file system at the partition's offset."""
    offset = PARTITION_START_SECTOR * 512
    with raw.open("wb") as disk:
        disk.truncate(offset + fs.stat().st_size)
    _sfdisk(raw, debian_files.sfdisk_script(PARTITION_START_SECTOR))
    with raw.open("r+b") as disk:
        disk.write(MBR_BIN.read_bytes()[:440])
        disk.seek(offset)
        with fs.open("rb") as src:
            while chunk := src.read(1 << 20):
                if chunk.count(0) == len(chunk):
                    disk.seek(len(chunk), os.SEEK_CUR)  # keep the file sparse
                else:
                    disk.write(chunk)


def _sfdisk(raw: Path, script: str) -> None:
    try:
        done = subprocess.run(
            ["sfdisk", "-q", str(raw)], input=script, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ImageError(f"cannot run sfdisk: {exc}") from exc
    if done.returncode != 0:
        raise ImageError(f"sfdisk failed: {done.stderr.strip()}")
