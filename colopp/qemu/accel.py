"""Pick the accelerator: KVM when a KVM guest really boots here, TCG otherwise.

``/dev/kvm`` existing is not enough (nested KVM guests hang on some hosts), so colopp
boots the guest once with KVM and waits for its ready line; the verdict is cached per
QEMU version and kernel in the state directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

from colopp.errors import GuestError, QemuStartError
from colopp.qemu.qemu_process import READY_LINE, QemuProcess, wait_for_serial
from colopp.qemu.runtime import QemuRuntime

KVM_DEVICE = Path("/dev/kvm")


def kvm_probe_argv(
    runtime: QemuRuntime, kernel: Path, initrd: Path, append: str, serial_log: Path
) -> list[str]:
    """Argv of the one-off KVM boot test (no network, no disk)."""
    return [
        *runtime.system_argv(),
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "256",
        "-smp",
        "1",
        "-nodefaults",
        "-display",
        "none",
        "-vga",
        "none",
        "-nic",
        "none",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        append,
        "-serial",
        f"file:{serial_log}",
    ]


def _cache_key(runtime: QemuRuntime, kernel: Path) -> str:
    stat = kernel.stat()
    raw = f"{runtime.describe()}|{kernel}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


async def choose_accel(
    runtime: QemuRuntime,
    kernel: Path,
    initrd: Path,
    append: str,
    state_dir: Path,
    timeout: float = 25.0,
) -> tuple[str, str]:
    """Return (accel, why). Never raises for a failed KVM boot: that means TCG."""
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return "tcg", "/dev/kvm is not available"
    cache = state_dir / "accel.json"
    key = _cache_key(runtime, kernel)
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return str(cached["accel"]), f"{cached['why']} (cached)"
    except (OSError, ValueError, KeyError):
        pass
    work = state_dir / "kvm-probe"
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    serial = work / "serial.log"
    serial.unlink(missing_ok=True)
    process = QemuProcess(
        kvm_probe_argv(runtime, kernel, initrd, append, serial), runtime.env(), work, probe=True
    )
    try:
        await process.start()
        took = await wait_for_serial(serial, READY_LINE, timeout, process)
        accel, why = "kvm", f"a KVM guest booted in {took:.1f}s"
    except (GuestError, QemuStartError) as exc:
        accel, why = "tcg", f"a KVM guest did not boot ({str(exc)[:120]})"
    finally:
        await process.stop(grace=1.0)
    state_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "accel": accel, "why": why}))
    return accel, why


def choose_accel_sync(*args: object, **kwargs: object) -> tuple[str, str]:
    """Blocking wrapper for callers outside an event loop."""
    return asyncio.run(choose_accel(*args, **kwargs))  # type: ignore[arg-type]
