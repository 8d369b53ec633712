"""Build (or fetch from cache) the guest image: kernel, initramfs, data disk.

The cache key is a hash of every input (package versions, our guest sources,
the builder version), so an image is rebuilt only when one of them changes.
Pure parts (:class:`ImageInputs`, :func:`cache_key`, manifest round-trip) are
separate from the I/O in :func:`build_image`.  Building needs root and apt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console

from colopp.errors import ImageError
from colopp.image import assemble, kmod, packages, tools
from colopp.image.cmdline import kernel_cmdline
from colopp.image.packages import KernelPackage

#: Bump when the build changes in a way the other inputs do not capture.
BUILDER_VERSION = "1"
DEFAULT_CACHE_DIR = Path("/var/cache/colopp/images")
GUEST_SOURCES_DIR = Path(__file__).parent / "guest"
#: Files of ours that go into the image (their hashes are cache-key inputs).
GUEST_SOURCES: tuple[str, ...] = ("init", "kvd.c", "quickack.c")
MANIFEST = "manifest.json"

DiskFormat = Literal["qcow2", "raw"]


@dataclass(frozen=True)
class ImageInputs:
    """Everything the image's contents depend on."""

    packages: Mapping[str, str]
    kernel: KernelPackage
    sources: Mapping[str, str]
    compiler: str
    builder_version: str = BUILDER_VERSION

    def as_dict(self) -> dict[str, object]:
        """A JSON-able, canonical form."""
        return {
            "builder_version": self.builder_version,
            "packages": dict(sorted(self.packages.items())),
            "kernel": {"name": self.kernel.name, "version": self.kernel.version},
            "sources": dict(sorted(self.sources.items())),
            "compiler": self.compiler,
            "modules": list(kmod.GUEST_MODULES),
        }


def cache_key(inputs: ImageInputs) -> str:
    """Hex SHA-256 of the canonical inputs: equal inputs, equal key."""
    canonical = json.dumps(inputs.as_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def source_hashes(directory: Path = GUEST_SOURCES_DIR) -> dict[str, str]:
    """SHA-256 of each of our guest source files."""
    try:
        return {
            name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in GUEST_SOURCES
        }
    except OSError as exc:
        raise ImageError(f"guest sources missing in {directory}: {exc}") from exc


@dataclass(frozen=True)
class GuestImage:
    """A built guest image in the cache.  Copy ``disk`` per VM: it is a template."""

    key: str
    directory: Path
    vmlinuz: Path
    initrd: Path
    disk: Path
    disk_format: DiskFormat
    disk_size: int
    kernel_release: str
    inputs: Mapping[str, object]

    def cmdline(self, ip_cidr: str, gateway: str | None = None) -> str:
        """Shortcut for :func:`kernel_cmdline`."""
        return kernel_cmdline(ip_cidr, gateway)

    def to_manifest(self) -> dict[str, object]:
        """The manifest stored next to the files (paths relative to it)."""
        return {
            "key": self.key,
            "vmlinuz": self.vmlinuz.name,
            "initrd": self.initrd.name,
            "disk": self.disk.name,
            "disk_format": self.disk_format,
            "disk_size": self.disk_size,
            "kernel_release": self.kernel_release,
            "inputs": dict(self.inputs),
        }

    @classmethod
    def from_manifest(cls, directory: Path, data: Mapping[str, object]) -> GuestImage:
        """Inverse of :meth:`to_manifest`; raises :class:`ImageError` if malformed."""
        try:
            disk_format = str(data["disk_format"])
            if disk_format not in ("qcow2", "raw"):
                raise ImageError(f"unknown disk format {disk_format!r}")
            inputs = data["inputs"]
            if not isinstance(inputs, dict):
                raise ImageError("manifest inputs are not a mapping")
            return cls(
                key=str(data["key"]),
                directory=directory,
                vmlinuz=directory / str(data["vmlinuz"]),
                initrd=directory / str(data["initrd"]),
                disk=directory / str(data["disk"]),
                disk_format="qcow2" if disk_format == "qcow2" else "raw",
                disk_size=int(str(data["disk_size"])),
                kernel_release=str(data["kernel_release"]),
                inputs=inputs,
            )
        except (KeyError, ValueError) as exc:
            raise ImageError(f"bad image manifest in {directory}: {exc}") from exc


def load_cached(directory: Path) -> GuestImage | None:
    """The complete image in ``directory``, or None if absent or incomplete."""
    try:
        data = json.loads((directory / MANIFEST).read_text())
        image = GuestImage.from_manifest(directory, data)
    except (OSError, ValueError, ImageError):
        return None
    if all(p.is_file() for p in (image.vmlinuz, image.initrd, image.disk)):
        return image
    return None


# ---- I/O ----------------------------------------------------------------------


class _Progress:
    """One line per build step, with a spinner while it runs."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        started = time.monotonic()
        with self.console.status(f"{title}…"):
            try:
                yield
            except BaseException:
                self.console.print(f"[red]✗[/red] {title}")
                raise
        self.console.print(f"[green]✓[/green] {title} ({time.monotonic() - started:.1f} s)")


def ensure_host_packages(progress: _Progress) -> None:
    """Install the missing :data:`packages.HOST_PACKAGES` (apt-get update on demand)."""
    query = packages.run(packages.dpkg_query_argv(packages.HOST_PACKAGES), check=False)
    missing = [p for p in packages.HOST_PACKAGES if p not in packages.parse_dpkg_query(query)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ImageError(f"missing host packages {missing}: install them or run as root")
    noninteractive = {"DEBIAN_FRONTEND": "noninteractive"}
    with progress.step(f"Installing {' '.join(missing)}"):
        try:
            packages.run(packages.apt_install_argv(missing), env=noninteractive)
        except ImageError:
            packages.run(packages.apt_update_argv(), env=noninteractive)
            packages.run(packages.apt_install_argv(missing), env=noninteractive)


def resolve_kernel() -> KernelPackage:
    """The candidate cloud kernel, refreshing the package lists once if needed."""
    show_argv = packages.apt_cache_show_argv(packages.KERNEL_META_PACKAGE)
    try:
        return packages.parse_kernel_package(packages.run(show_argv))
    except ImageError:
        packages.run(packages.apt_update_argv(), env={"DEBIAN_FRONTEND": "noninteractive"})
        return packages.parse_kernel_package(packages.run(show_argv))


def gather_inputs() -> ImageInputs:
    """Versions of everything that goes into the image, read from the host."""
    query = packages.run(packages.dpkg_query_argv(packages.IMAGE_INPUT_PACKAGES), check=False)
    installed = packages.parse_dpkg_query(query)
    missing = [p for p in packages.IMAGE_INPUT_PACKAGES if p not in installed]
    if missing:
        raise ImageError(f"packages not installed: {', '.join(missing)}")
    return ImageInputs(
        packages=installed,
        kernel=resolve_kernel(),
        sources=source_hashes(),
        compiler=packages.run(tools.gcc_version_argv()).strip(),
    )


@contextlib.contextmanager
def _cache_lock(cache_dir: Path) -> Iterator[None]:
    """Serialize builders sharing one cache directory."""
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_image(
    cache_dir: Path | None = None,
    *,
    force: bool = False,
    console: Console | None = None,
    qemu_img: Sequence[str] | None = None,
) -> GuestImage:
    """Return the guest image for the current inputs, building it if not cached.

    ``qemu_img`` is the argv prefix that runs qemu-img (default: ``qemu-img``
    from PATH if present); without it the data disk stays raw.  Raises
    :class:`ImageError` when a package, a tool or the build fails.
    """
    cache_dir = cache_dir or DEFAULT_CACHE_DIR
    progress = _Progress(console or Console(stderr=True))
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create image cache {cache_dir}: {exc}") from exc
    ensure_host_packages(progress)
    with progress.step("Resolving package versions"):
        inputs = gather_inputs()
    key = cache_key(inputs)
    final = cache_dir / key[:16]
    with _cache_lock(cache_dir):
        cached = None if force else load_cached(final)
        if cached is not None:
            progress.console.print(f"[green]✓[/green] Cached image {final}")
            return cached
        if qemu_img is None and (found := shutil.which("qemu-img")):
            qemu_img = [found]
        work = Path(tempfile.mkdtemp(prefix=f".build-{key[:16]}-", dir=cache_dir))
        try:
            _build(
                work,
                cache_dir / "debs",
                inputs=inputs,
                key=key,
                progress=progress,
                qemu_img=qemu_img,
            )
            if final.exists():
                shutil.rmtree(final)
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        image = load_cached(final)
        if image is None:
            raise ImageError(f"image in {final} is incomplete after the build")
    progress.console.print(f"[green]✓[/green] Guest image {final}")
    return image


def _build(
    work: Path,
    debs_dir: Path,
    *,
    inputs: ImageInputs,
    key: str,
    progress: _Progress,
    qemu_img: Sequence[str] | None,
) -> None:
    try:
        built = assemble.build_into(
            work,
            debs_dir,
            kernel=inputs.kernel,
            sources_dir=GUEST_SOURCES_DIR,
            step=progress.step,
            qemu_img=qemu_img,
        )
        image = GuestImage(
            key=key,
            directory=work,
            vmlinuz=work / built.vmlinuz,
            initrd=work / built.initrd,
            disk=work / built.disk,
            disk_format="qcow2" if built.disk_format == "qcow2" else "raw",
            disk_size=built.disk_size,
            kernel_release=built.kernel_release,
            inputs=inputs.as_dict(),
        )
        (work / MANIFEST).write_text(json.dumps(image.to_manifest(), indent=2) + "\n")
        work.chmod(0o755)  # mkdtemp made it 0700
    except OSError as exc:
        raise ImageError(f"building the guest image in {work} failed: {exc}") from exc
