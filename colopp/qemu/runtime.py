"""The QEMU colopp runs: the host's, or one in a private Debian trixie root.

The private root is made with ``debootstrap`` and holds trixie-backports' QEMU; colopp
runs that QEMU through the root's own dynamic loader, so no chroot and no bind mounts
are needed and paths (sockets, images, pidfiles) mean the same to QEMU and to colopp.
Argv builders here are pure; :func:`probe` and :func:`provision` do the I/O.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from colopp.errors import QemuError, QemuNotFound
from colopp.process import run_tool
from colopp.qemu.version import QemuVersion, parse_version

DEFAULT_ROOT = Path("/var/lib/colopp/runtime/root")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
RUNTIME_SUITE = "trixie"
BACKPORTS = "trixie-backports"
_LIBDIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")


@dataclass(frozen=True)
class QemuRuntime:
    """How to start QEMU tools: a host binary, or a binary inside a private root."""

    root: Path | None = None
    binary: str = "qemu-system-x86_64"
    extra_env: dict[str, str] = field(default_factory=dict)

    def tool_argv(self, tool: str) -> list[str]:
        """Argv prefix that runs ``tool`` (e.g. ``qemu-img``) from this runtime."""
        if self.root is None:
            return [tool]
        library_path = ":".join(str(self.root / d) for d in _LIBDIRS)
        return [
            str(self.root / "lib64/ld-linux-x86-64.so.2"),
            "--library-path",
            library_path,
            str(self.root / "usr/bin" / tool),
        ]

    def system_argv(self) -> list[str]:
        """Argv prefix for qemu-system, firmware paths included."""
        argv = self.tool_argv(self.binary)
        if self.root is not None:
            argv += ["-L", str(self.root / "usr/share/qemu")]
            argv += ["-L", str(self.root / "usr/share/seabios")]
        return argv

    def env(self) -> dict[str, str]:
        """Environment additions; a private root must not load the host's QEMU modules."""
        env = dict(self.extra_env)
        if self.root is not None:
            env["QEMU_MODULE_DIR"] = str(self.root / "usr/lib/x86_64-linux-gnu/qemu")
        return env

    def require_present(self) -> None:
        """Raise QemuNotFound naming the missing QEMU binary (or runtime root)."""
        program = self.tool_argv(self.binary)[-1]
        if self.root is not None:
            if not Path(program).exists():
                raise QemuNotFound(f"no {program}: run `colopp qemu install --root {self.root}`")
        elif shutil.which(program) is None:
            raise QemuNotFound(f"QEMU binary {program} not found (cannot execute it)")

    def describe(self) -> str:
        """One line for humans."""
        return f"{self.binary} in {self.root}" if self.root else f"host {self.binary}"


def runtime_from(root: Path | None, binary: str | None = None) -> QemuRuntime:
    """Pick the runtime: an explicit root, the default private root if provisioned,
    else the host's binary.

    Raises:
        QemuNotFound: the named root or binary does not exist.
    """
    if root is not None:
        if not (root / "usr/bin/qemu-system-x86_64").exists():
            raise QemuNotFound(
                f"no QEMU in runtime root {root}; run `colopp qemu install --root {root}`"
            )
        return QemuRuntime(root=root)
    if binary is not None:
        if shutil.which(binary) is None and not Path(binary).exists():
            raise QemuNotFound(f"QEMU binary {binary!r} not found")
        return QemuRuntime(binary=binary)
    if (DEFAULT_ROOT / "usr/bin/qemu-system-x86_64").exists():
        return QemuRuntime(root=DEFAULT_ROOT)
    if shutil.which("qemu-system-x86_64") is not None:
        return QemuRuntime()
    raise QemuNotFound("no QEMU found: run `colopp qemu install` (provisions a working QEMU)")


def _run(argv: Sequence[str], env: dict[str, str] | None, timeout: float) -> str:
    return run_tool(argv, QemuError, timeout=timeout, env=env, not_found=QemuNotFound)


def probe(runtime: QemuRuntime) -> QemuVersion:
    """Run ``--version`` and check the COLO objects are compiled in.

    Raises:
        QemuNotFound: the binary cannot be run.
        QemuError: it runs but lacks colo-compare, filter-rewriter or replication.
    """
    version = parse_version(_run([*runtime.system_argv(), "--version"], runtime.env(), 30))
    objects = _run([*runtime.system_argv(), "-object", "help"], runtime.env(), 30)
    missing = [o for o in ("colo-compare", "filter-rewriter", "filter-mirror") if o not in objects]
    if missing:
        raise QemuError(f"QEMU {version} lacks COLO objects: {', '.join(missing)}")
    return version


def debootstrap_argv(root: Path, mirror: str = DEBIAN_MIRROR) -> list[str]:
    """Argv that creates the private root (minbase trixie)."""
    return ["debootstrap", "--variant=minbase", RUNTIME_SUITE, str(root), mirror]


def install_qemu_argv(root: Path) -> list[list[str]]:
    """Argv lists, run on the host, that install QEMU from trixie-backports in ``root``."""
    chroot = ["chroot", str(root)]
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    return [
        [*chroot, "apt-get", "update", "-q"],
        [
            *chroot,
            *env,
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-t",
            BACKPORTS,
            "qemu-system-x86",
            "qemu-utils",
        ],
    ]


def backports_source(mirror: str = DEBIAN_MIRROR) -> str:
    """The sources.list line for trixie-backports inside the root."""
    return f"deb {mirror} {BACKPORTS} main\n"


def provision(
    root: Path = DEFAULT_ROOT,
    *,
    mirror: str = DEBIAN_MIRROR,
    step: Callable[[str], None] = lambda _msg: None,
) -> QemuRuntime:
    """Make (or complete) the private trixie root with a working QEMU; idempotent.

    Raises:
        QemuError: debootstrap or apt failed (the command is named).
    """
    if not shutil.which("debootstrap"):
        step("installing debootstrap (apt)")
        _run(["apt-get", "install", "-y", "-q", "debootstrap"], None, 600)
    if not (root / "usr/bin/apt-get").exists():
        step(f"debootstrap {RUNTIME_SUITE} into {root} (~30 s)")
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        _run(debootstrap_argv(root, mirror), None, 1200)
    if not (root / "usr/bin/qemu-system-x86_64").exists():
        (root / "etc/apt/sources.list.d/backports.list").write_text(backports_source(mirror))
        for argv in install_qemu_argv(root):
            step(" ".join(argv[2:5]))
            _run(argv, None, 1200)
    return QemuRuntime(root=root)
