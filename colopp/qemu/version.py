"""Which QEMU versions can run COLO: a pure parser and verdict, tested on real output."""

from __future__ import annotations

import re
from dataclasses import dataclass

from colopp.errors import ConfigError, QemuError, QemuUnsupported

_VERSION_RE = re.compile(r"QEMU emulator version (\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, order=True)
class QemuVersion:
    """A QEMU release, comparable."""

    major: int
    minor: int
    micro: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.micro}"


def parse_version(text: str) -> QemuVersion:
    """Parse the first line of ``qemu-system-x86_64 --version``.

    Raises:
        QemuError: the text carries no QEMU version.
    """
    match = _VERSION_RE.search(text)
    if match is None:
        raise QemuError(f"cannot read a QEMU version from {text.strip()[:120]!r}")
    major, minor, micro = (int(part) for part in match.groups())
    return QemuVersion(major, minor, micro)


def colo_verdict(version: QemuVersion, accel: str) -> str | None:
    """Why ``version`` cannot run COLO with ``accel``, or None when it can.

    The list is what was measured on Debian hosts (README.md): 7.2 deadlocks in
    checkpoints under TCG; 10.0.0-10.0.6 and 10.1.x never enter COLO (a regression fixed
    in 10.2 and 10.0.7); anything older than 7.2 lacks what colopp drives.
    """
    if version < QemuVersion(7, 2, 0):
        return f"QEMU {version} is older than 7.2; colopp needs QEMU >= 10.2 (or 10.0.7+)"
    if version.major == 7 or version.major in (8, 9):
        if accel == "tcg":
            return (
                f"QEMU {version} deadlocks in COLO checkpoints under TCG "
                "(checkpoint RAM save vs. TCG dirty-log sync)"
            )
        return None
    if (version.major, version.minor) == (10, 0) and version.micro < 7:
        return f"QEMU {version} never enters COLO (regression fixed in 10.0.7 and 10.2)"
    if (version.major, version.minor) == (10, 1):
        return f"QEMU {version} never enters COLO (10.1 regression, fixed in 10.2)"
    return None


ACCELERATORS = ("tcg", "kvm")


def require_colo_capable(
    version: QemuVersion, accel: str, options: str = "--qemu-root/--qemu-binary"
) -> None:
    """Raise QemuUnsupported naming the remedy when ``version`` cannot run COLO.

    ``options`` names the caller's own options that choose another QEMU (``colopp qemu
    check`` has ``--root/--binary``).

    Raises:
        ConfigError: ``accel`` is not one of :data:`ACCELERATORS`.
        QemuUnsupported: this QEMU cannot run COLO with ``accel``.
    """
    if accel not in ACCELERATORS:
        raise ConfigError(f"unknown accelerator {accel!r}: use one of {', '.join(ACCELERATORS)}")
    reason = colo_verdict(version, accel)
    if reason is not None:
        raise QemuUnsupported(
            f"{reason}. Run `colopp qemu install` to provision Debian trixie-backports' "
            f"QEMU in a private root, or pass {options} for a working one."
        )
