"""Read a guest's kvd keys straight from a stopped side's disk image (no page cache).

A write the guest acknowledged is in its page cache, and COLO copies RAM at every
checkpoint: reading a key back over HTTP after a failover can succeed although the
survivor's disk never got the write. This check converts the image to raw, lets e2fsck
replay the ext4 journal on that copy, dumps the key directory with debugfs and compares.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from colopp.qemu.runtime import QemuRuntime

KV_DIR = "/kv"  # the guest mounts /dev/vda on /data and kvd keeps keys in /data/kv


def keys_missing_on_disk(runtime: QemuRuntime, image: Path, writes: dict[str, str]) -> list[str]:
    """Keys of ``writes`` whose value is not what a promoted secondary's disk holds.

    ``image`` is its ``disk.qcow2``; next to it lie the replication overlays. Until the
    failover's commit job finished, the guest's newest blocks live in the overlays (view:
    active over hidden over disk); after it, in ``disk.qcow2`` alone (the overlays are
    then stale). Both views are read and the one the guest's writes are in is kept.
    """
    chain = (
        f"driver=qcow2,file.driver=file,file.filename={image.parent / 'active.qcow2'},"
        f"backing.driver=qcow2,backing.file.driver=file,"
        f"backing.file.filename={image.parent / 'hidden.qcow2'},"
        f"backing.backing.driver=qcow2,backing.backing.file.driver=file,"
        f"backing.backing.file.filename={image}"
    )
    views = [[str(image)]]
    if (image.parent / "active.qcow2").is_file():
        views.append(["--image-opts", chain])
    return min((_missing(runtime, view, writes) for view in views), key=len)


def _missing(runtime: QemuRuntime, source: list[str], writes: dict[str, str]) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="colopp-diskcheck-") as tmp:
        raw, out = Path(tmp) / "disk.raw", Path(tmp) / "kv"
        img = runtime.tool_argv("qemu-img")
        subprocess.run([*img, "convert", "-O", "raw", *source, str(raw)], check=True, timeout=120)
        # Exit codes 1/2 mean "errors corrected": the journal was replayed.
        subprocess.run(["e2fsck", "-fy", str(raw)], check=False, capture_output=True, timeout=120)
        out.mkdir()
        subprocess.run(
            ["debugfs", "-R", f"rdump {KV_DIR} {out}", str(raw)],
            capture_output=True,
            check=True,
            timeout=120,
        )
        lost = []
        for key, value in sorted(writes.items()):
            path = out / "kv" / key
            if not path.is_file() or path.read_text(errors="replace") != value:
                lost.append(key)
        return lost
