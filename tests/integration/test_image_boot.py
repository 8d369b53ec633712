"""Boot the guest image under QEMU (TCG, user-mode network) and drive kvd.

Needs root (the image build runs apt) and a QEMU runtime root, taken from
COLOPP_QEMU_ROOT (default /var/lib/colopp/runtime/root): QEMU is run with that
root's own loader, without chroot.  The image cache is COLOPP_IMAGE_CACHE
(default: colopp's default cache).
"""

import http.client
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from colopp.image import FAILED_MARKER, READY_MARKER, build_image, kernel_cmdline
from colopp.image.builder import DEFAULT_CACHE_DIR

pytestmark = pytest.mark.integration

QEMU_ROOT = Path(os.environ.get("COLOPP_QEMU_ROOT", "/var/lib/colopp/runtime/root"))
BOOT_TIMEOUT = 120.0


def qemu_prefix(root):
    lib = f"{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu"
    return [
        f"{root}/lib64/ld-linux-x86-64.so.2",
        "--library-path",
        lib,
        f"{root}/usr/bin/qemu-system-x86_64",
        "-L",
        f"{root}/usr/share/qemu",
        "-L",
        f"{root}/usr/share/seabios",
    ]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Guest:
    """One QEMU process; its serial console is read by a thread."""

    def __init__(self, image, disk, port):
        argv = [
            *qemu_prefix(QEMU_ROOT),
            "-accel", "tcg", "-cpu", "qemu64", "-m", "256",
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", str(image.vmlinuz),
            "-initrd", str(image.initrd),
            "-append", kernel_cmdline("10.0.2.15/24", "10.0.2.2"),
            "-drive", f"if=virtio,file={disk},format={image.disk_format}",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80",
            "-device", "virtio-net-pci,netdev=n0,romfile=",
        ]  # fmt: skip
        env = {**os.environ, "QEMU_MODULE_DIR": f"{QEMU_ROOT}/usr/lib/x86_64-linux-gnu/qemu"}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.lines = []
        self.outcome = threading.Event()
        self.ready_at = None
        self.reader = threading.Thread(target=self._read_console, daemon=True)
        self.reader.start()

    def _read_console(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            self.lines.append(line)
            if line == READY_MARKER:
                self.ready_at = time.monotonic()
                self.outcome.set()
            elif line.startswith(FAILED_MARKER):
                self.outcome.set()
        self.outcome.set()  # QEMU exited

    def wait_ready(self):
        assert self.outcome.wait(BOOT_TIMEOUT), f"no {READY_MARKER} in {BOOT_TIMEOUT} s"
        assert self.ready_at is not None, "guest failed:\n" + "\n".join(self.lines[-20:])
        return self.ready_at - self.started

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def image():
    if os.geteuid() != 0:
        pytest.skip("building the guest image needs root (apt)")
    if not (QEMU_ROOT / "usr/bin/qemu-system-x86_64").exists():
        pytest.skip(f"no QEMU runtime root at {QEMU_ROOT} (set COLOPP_QEMU_ROOT)")
    return build_image(Path(os.environ.get("COLOPP_IMAGE_CACHE", DEFAULT_CACHE_DIR)))


@pytest.fixture
def boot(image, tmp_path):
    disk = tmp_path / image.disk.name
    shutil.copyfile(image.disk, disk)
    guests = []

    def start():
        port = free_port()
        guest = Guest(image, disk, port)
        guests.append(guest)
        return guest, port

    yield start
    for guest in guests:
        guest.kill()


def call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_guest_serves_kv_and_survives_power_cut(boot):
    guest, port = boot()
    boot_seconds = guest.wait_ready()
    print(f"boot to {READY_MARKER}: {boot_seconds:.1f} s")

    assert call(port, "GET", "/health") == (200, b"ok\n")
    assert call(port, "PUT", "/kv/durable", b"before-power-cut") == (200, b"stored\n")
    assert call(port, "GET", "/kv/durable") == (200, b"before-power-cut")
    assert call(port, "GET", "/kv/absent")[0] == 404
    assert call(port, "GET", "/kv/bad.key")[0] == 400
    assert call(port, "POST", "/counter") == (200, b"1\n")
    assert call(port, "GET", "/random")[1] != call(port, "GET", "/random")[1]

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in range(20):
            conn.request("POST", "/counter")
            assert conn.getresponse().read() == f"{i + 2}\n".encode()
    finally:
        conn.close()

    guest.kill()  # a power cut: the PUT answered 200, so it must be on disk
    guest, port = boot()
    guest.wait_ready()
    assert call(port, "GET", "/kv/durable") == (200, b"before-power-cut")
    assert call(port, "GET", "/counter") == (200, b"0\n")  # RAM state is gone
