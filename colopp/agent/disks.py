"""A side's disks, made with qemu-img before QEMU starts (the only qemu-img caller).

The side gets its own qcow2 copy of the base disk; a secondary also gets the two
replication overlays (active and hidden) of the base disk's virtual size.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from colopp.domain import Role, SideSpec
from colopp.errors import QemuError, QemuNotFound
from colopp.process import run_tool
from colopp.qemu.runtime import QemuRuntime

QEMU_IMG_TIMEOUT = 120.0


def disk_format(base: Path) -> str:
    """qcow2 for a ``.qcow2`` file, raw otherwise."""
    return "qcow2" if base.suffix == ".qcow2" else "raw"


def convert_argv(img: list[str], base: Path, target: Path) -> list[str]:
    return [*img, "convert", "-f", disk_format(base), "-O", "qcow2", str(base), str(target)]


def overlay_argv(img: list[str], overlay: Path, size: str) -> list[str]:
    return [*img, "create", "-q", "-f", "qcow2", str(overlay), size]


def prepare_disks(
    runtime: QemuRuntime, spec: SideSpec, base: Path | None, blank_size: int | None = None
) -> None:
    """A fresh ``run_dir`` (0700) with this side's disk (and a secondary's overlays).

    The disk is a copy of ``base``, or (``base`` None) a blank one of ``blank_size``
    bytes: a secondary whose disk the primary's live mirror fills.

    Raises:
        QemuNotFound: qemu-img cannot be run. QemuError: it failed (stderr quoted).
    """
    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    spec.run_dir.mkdir(parents=True, mode=0o700)
    img = runtime.tool_argv("qemu-img")
    if base is None:
        size = str(blank_size)
        _qemu_img(runtime, overlay_argv(img, spec.disk, size), "create")
    else:
        _qemu_img(runtime, convert_argv(img, base, spec.disk), "convert")
    if spec.role is Role.SECONDARY:
        if base is None:
            pass
        elif disk_format(base) == "raw":
            size = str(os.path.getsize(base))
        else:
            info = _qemu_img(runtime, [*img, "info", "--output=json", str(base)], "info")
            size = str(json.loads(info)["virtual-size"])
        for overlay in (spec.active_disk, spec.hidden_disk):
            _qemu_img(runtime, overlay_argv(img, overlay, size), "create")


def _qemu_img(runtime: QemuRuntime, argv: list[str], verb: str) -> str:
    return run_tool(
        argv,
        QemuError,
        timeout=QEMU_IMG_TIMEOUT,
        env=runtime.env(),
        not_found=QemuNotFound,
        name=f"qemu-img {verb}",
    )
