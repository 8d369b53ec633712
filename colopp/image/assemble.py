"""The I/O steps of one image build, run in a scratch directory.

Each step shells out through :func:`colopp.image.packages.run` (which maps
failures to :class:`ImageError`); the decisions are in the pure modules.
"""

from __future__ import annotations

import pwd
import shutil
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from colopp.errors import ImageError
from colopp.image import initramfs, kmod, packages, tools

Step = Callable[[str], AbstractContextManager[None]]

BUSYBOX = Path("/bin/busybox")  # from busybox-static
IPERF3 = Path("/usr/bin/iperf3")
#: Debian ships the Redis server binary in redis-tools as redis-check-rdb; run under the
#: name redis-server it serves (the redis-server package only adds a symlink and a unit).
REDIS_SERVER = Path("/usr/bin/redis-check-rdb")


@dataclass(frozen=True)
class BuiltFiles:
    """What :func:`build_into` produced (names relative to its directory)."""

    vmlinuz: str
    initrd: str
    disk: str
    disk_format: str
    disk_size: int
    kernel_release: str


def fetch_kernel_deb(kernel: packages.KernelPackage, debs_dir: Path) -> Path:
    """The kernel .deb, downloaded once into ``debs_dir``."""
    deb = debs_dir / f"{kernel.name}_{kernel.version}.deb"
    if deb.is_file():
        return deb
    download = debs_dir / ".download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    if _user_exists("_apt"):
        # apt's sandbox user must be able to write here, or apt downloads unsandboxed.
        shutil.chown(download, user="_apt")
    packages.run(packages.apt_download_argv(kernel.name, kernel.version), cwd=download)
    found = sorted(download.glob("*.deb"))
    if len(found) != 1:
        raise ImageError(f"apt-get download {kernel.name} left {len(found)} .deb files")
    found[0].rename(deb)
    shutil.rmtree(download, ignore_errors=True)
    return deb


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def kernel_tree(root: Path, release: str) -> tuple[Path, Path]:
    """(vmlinuz, modules dir) inside an unpacked kernel package."""
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    for modules in (root / "lib" / "modules" / release, root / "usr/lib/modules" / release):
        if modules.is_dir() and vmlinuz.is_file():
            return vmlinuz, modules
    raise ImageError(f"no vmlinuz-{release} and modules in the kernel package")


def collect_modules(modules_dir: Path) -> list[tuple[str, bytes]]:
    """The guest's modules in load order, decompressed."""
    builtin_file = modules_dir / "modules.builtin"
    builtin = (
        kmod.parse_modules_builtin(builtin_file.read_text()) if builtin_file.is_file() else set()
    )
    available = kmod.index_modules(modules_dir)
    contents: dict[str, bytes] = {}

    def read(name: str) -> bytes:
        if name not in contents:
            contents[name] = kmod.read_module(available[name])
        return contents[name]

    order = kmod.load_order(
        kmod.GUEST_MODULES, builtin, lambda name: kmod.parse_modinfo_depends(read(name)), available
    )
    return [(name, read(name)) for name in order]


def iperf3_libraries(binary: Path = IPERF3) -> dict[str, bytes]:
    """iperf3's (or ``binary``'s) shared libraries and the loader at the paths ldd names."""
    libraries: dict[str, bytes] = {}
    for path in packages.parse_ldd(packages.run(packages.ldd_argv(binary))):
        try:
            libraries[str(path).lstrip("/")] = path.resolve().read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc}") from exc
    return libraries


def make_data_disk(work: Path, qemu_img: Sequence[str] | None) -> tuple[str, str]:
    """Format the data disk template; (file name, format)."""
    raw = work / "disk.raw"
    with raw.open("wb") as disk:
        disk.truncate(tools.DATA_DISK_BYTES)
    packages.run(tools.mkfs_ext4_argv(raw))
    if not qemu_img:
        return raw.name, "raw"
    qcow2 = work / "disk.qcow2"
    packages.run(tools.qemu_img_convert_argv(qemu_img, raw, qcow2))
    raw.unlink()
    return qcow2.name, "qcow2"


def build_into(
    work: Path,
    debs_dir: Path,
    *,
    kernel: packages.KernelPackage,
    sources_dir: Path,
    step: Step,
    qemu_img: Sequence[str] | None,
) -> BuiltFiles:
    """Build vmlinuz, initrd.img and the disk template into ``work``."""
    with step(f"Fetching {kernel.name} {kernel.version}"):
        deb = fetch_kernel_deb(kernel, debs_dir)
    unpacked = work / "kernel"
    with step("Unpacking the kernel"):
        packages.run(packages.dpkg_extract_argv(deb, unpacked))
        vmlinuz, modules_dir = kernel_tree(unpacked, kernel.release)
        shutil.copyfile(vmlinuz, work / "vmlinuz")
    with step("Compiling kvd (gcc -static)"):
        kvd = work / "kvd"
        packages.run(tools.gcc_static_argv(sources_dir / "kvd.c", kvd))
        quickack = work / "quickack"
        packages.run(tools.gcc_static_argv(sources_dir / "quickack.c", quickack))
    with step("Assembling the initramfs"):
        tree = initramfs.guest_initramfs(
            init=(sources_dir / "init").read_bytes(),
            busybox=BUSYBOX.read_bytes(),
            busybox_applets=packages.run([str(BUSYBOX), "--list-full"]).splitlines(),
            kvd=kvd.read_bytes(),
            iperf3=IPERF3.read_bytes(),
            libraries={**iperf3_libraries(), **iperf3_libraries(REDIS_SERVER)},
            redis_server=REDIS_SERVER.read_bytes(),
            quickack=quickack.read_bytes(),
            modules=collect_modules(modules_dir),
            kernel_release=kernel.release,
        )
        (work / "initrd.img").write_bytes(tree.to_cpio_gz())
    with step(f"Formatting the {tools.DATA_DISK_BYTES >> 20} MiB ext4 data disk"):
        disk, disk_format = make_data_disk(work, qemu_img)
    shutil.rmtree(unpacked)
    kvd.unlink()
    quickack.unlink()
    return BuiltFiles(
        "vmlinuz", "initrd.img", disk, disk_format, tools.DATA_DISK_BYTES, kernel.release
    )
