"""Make Debian 12's libvirtd start the working QEMU: an ``<emulator>`` wrapper and a
managed block in ``/etc/libvirt/qemu.conf``.

Debian 12's libvirt (9.0) is fine; its QEMU (7.2) deadlocks in COLO under TCG. So COLO
domains name an emulator wrapper that runs trixie-backports' QEMU from colopp's private root
through the root's own loader (as :meth:`colopp.qemu.runtime.QemuRuntime.system_argv` does).
When the domain asks for it (``COLOPP_NETNS`` in ``<qemu:commandline>``'s environment) the
wrapper enters that network namespace first: in the lab, hosts are network namespaces while
one libvirtd serves them all. The builders here are pure; :func:`install` writes files.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from colopp.qemu.runtime import DEFAULT_ROOT, QemuRuntime

EMULATOR = Path("/usr/local/bin/colopp-qemu-system-x86_64")
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
NETWORK_AUTOSTART = Path("/etc/libvirt/qemu/networks/autostart")
BEGIN = "# --- colopp begin (managed by `colopp libvirt setup`) ---"
END = "# --- colopp end ---"

# Why each qemu.conf setting (all measured on a Debian 12 container without systemd):
QEMU_CONF_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("security_driver", '"none"', "no AppArmor/SELinux profile knows the private root"),
    ("user", '"root"', "QEMU opens taps and colopp's run directories (0700, root)"),
    ("group", '"root"', "as user"),
    ("dynamic_ownership", "0", "colopp owns its disks and sockets; libvirt must not chown"),
    ("remember_owner", "0", "as dynamic_ownership"),
    ("namespaces", "[]", "QEMU must see /dev/net/tun and /run/netns (no private /dev)"),
    ("stdio_handler", '"file"', "no virtlogd needed: QEMU's stderr goes to a plain log"),
    (
        "clear_emulator_capabilities",
        "0",
        "QEMU attaches to colopp's taps itself (TUNSETIFF needs CAP_NET_ADMIN)",
    ),
    (
        "cgroup_device_acl",
        '["/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom", '
        '"/dev/ptmx", "/dev/kvm", "/dev/net/tun"]',
        "libvirt's default device list plus /dev/net/tun (the netdev is QEMU's own)",
    ),
)


@dataclass(frozen=True)
class LibvirtHostPlan:
    """What ``colopp libvirt setup`` writes."""

    emulator: Path
    emulator_text: str
    qemu_conf_block: str


def emulator_script(runtime: QemuRuntime) -> str:
    """The ``<emulator>`` wrapper: the runtime's QEMU, optionally inside COLOPP_NETNS."""
    argv = " ".join(shlex.quote(a) for a in runtime.system_argv())
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(runtime.env().items()))
    exports = f"export {env}\n" if env else ""
    return (
        "#!/bin/sh\n"
        "# colopp: libvirt <emulator> for COLO domains (written by `colopp libvirt setup`).\n"
        f"# Runs {runtime.describe()}; Debian 12's own QEMU 7.2 deadlocks in COLO under TCG.\n"
        f"{exports}"
        'if [ -n "${COLOPP_NETNS:-}" ]; then\n'
        '  exec /usr/bin/nsenter --net="/run/netns/$COLOPP_NETNS" '
        f'{argv} "$@"\n'
        "fi\n"
        f'exec {argv} "$@"\n'
    )


def qemu_conf_block() -> str:
    """colopp's block of qemu.conf settings, with the reason for each."""
    lines = [BEGIN]
    for key, value, why in QEMU_CONF_SETTINGS:
        lines += [f"# {why}", f"{key} = {value}"]
    return "\n".join([*lines, END, ""])


_BLOCK_RE = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)


def merge_qemu_conf(current: str, block: str) -> str:
    """``current`` with colopp's block replaced (or appended); other settings untouched."""
    if _BLOCK_RE.search(current):
        return _BLOCK_RE.sub(lambda _m: block, current, count=1)
    sep = "" if current.endswith("\n") or not current else "\n"
    return f"{current}{sep}\n{block}"


def plan(root: Path = DEFAULT_ROOT, emulator: Path = EMULATOR) -> LibvirtHostPlan:
    """What to write for the private root at ``root``."""
    return LibvirtHostPlan(emulator, emulator_script(QemuRuntime(root=root)), qemu_conf_block())


def install(
    host_plan: LibvirtHostPlan,
    qemu_conf: Path = QEMU_CONF,
    autostart: Path = NETWORK_AUTOSTART,
) -> list[str]:
    """Write the wrapper and qemu.conf's block; switch off every network autostart (the
    ``default`` network would bring up virbr0 on 192.168.122.0/24). Returns what changed.

    A running libvirtd reads qemu.conf only at start: restart it afterwards.
    """
    changed: list[str] = []
    host_plan.emulator.parent.mkdir(parents=True, exist_ok=True)
    if not host_plan.emulator.exists() or host_plan.emulator.read_text() != host_plan.emulator_text:
        host_plan.emulator.write_text(host_plan.emulator_text)
        changed.append(str(host_plan.emulator))
    os.chmod(host_plan.emulator, 0o755)  # noqa: S103 - libvirtd executes it; no secrets
    current = qemu_conf.read_text() if qemu_conf.exists() else ""
    merged = merge_qemu_conf(current, host_plan.qemu_conf_block)
    if merged != current:
        qemu_conf.parent.mkdir(parents=True, exist_ok=True)
        qemu_conf.write_text(merged)
        changed.append(str(qemu_conf))
    if autostart.is_dir():
        for link in sorted(autostart.glob("*.xml")):
            link.unlink()
            changed.append(f"removed network autostart {link.name}")
    return changed
