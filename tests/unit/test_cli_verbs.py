"""The CLI without an API or QEMU: `qemu check` refuses an unknown accelerator and names
its own options in the hint; exit codes map errors as `colopp --help` documents."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from colopp.cli import app
from colopp.cli_exit import Exit, exit_code
from colopp.errors import ColoppError, ConfigError, DomainNotFound, QemuUnsupported, StateError
from colopp.qemu.version import QemuVersion, require_colo_capable
from colopp_api.client import ApiError


def colopp(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLOPP_API")}
    return subprocess.run(
        [sys.executable, "-m", "colopp.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env | {"COLUMNS": "200"},
    )


def fake_qemu(tmp_path: Path, version: str) -> Path:
    """A 'QEMU' that prints ``version`` and lists the COLO objects."""
    binary = tmp_path / "qemu-system-x86_64"
    binary.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && echo "QEMU emulator version {version}" && exit 0\n'
        "echo colo-compare filter-rewriter filter-mirror\n"
    )
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary


def test_qemu_check_refuses_an_unknown_accelerator(tmp_path: Path) -> None:
    binary = fake_qemu(tmp_path, "11.1.3")
    done = colopp("qemu", "check", "--binary", str(binary), "--accel", "xyz")
    assert done.returncode == Exit.USAGE
    assert "can run COLO" not in done.stdout + done.stderr
    assert "'xyz' is not one of 'tcg', 'kvm'" in done.stderr
    ok = colopp("qemu", "check", "--binary", str(binary), "--accel", "kvm", "--json")
    assert ok.returncode == 0, ok.stderr
    assert '"colo_capable": true' in ok.stdout and '"accel": "kvm"' in ok.stdout


def test_qemu_check_hint_names_its_own_options(tmp_path: Path) -> None:
    done = colopp("qemu", "check", "--binary", str(fake_qemu(tmp_path, "7.2.19")))
    assert done.returncode == Exit.FAILURE
    message = " ".join(done.stderr.split())
    assert "--root/--binary" in message and "--qemu-root" not in message


def test_require_colo_capable_refuses_unknown_accelerators() -> None:
    with pytest.raises(ConfigError, match="unknown accelerator 'xyz'"):
        require_colo_capable(QemuVersion(11, 1, 3), "xyz")
    with pytest.raises(QemuUnsupported, match="--qemu-root/--qemu-binary"):
        require_colo_capable(QemuVersion(7, 2, 19), "tcg")  # the agent's own options


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ApiError("down", unreachable=True), Exit.UNREACHABLE),
        (ApiError("no such", 404), Exit.NOT_FOUND),
        (ApiError("busy", 409), Exit.CONFLICT),
        (ApiError("bad token", 401), Exit.DENIED),
        (ApiError("read-only token", 403), Exit.DENIED),
        (ApiError("bad body", 422), Exit.USAGE),
        (ApiError("server", 500), Exit.FAILURE),
        (ApiError("timed out"), Exit.FAILURE),
        (ConfigError("no token"), Exit.USAGE),
        (StateError("not now"), Exit.CONFLICT),
        (DomainNotFound("no domain"), Exit.NOT_FOUND),
        (ColoppError("qemu died"), Exit.FAILURE),
    ],
)
def test_exit_codes(error: ColoppError, code: Exit) -> None:
    assert exit_code(error) is code


def test_help_lists_the_exit_codes() -> None:
    done = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    text = " ".join(done.output.split())
    for code in Exit:
        assert f"{code.value} " in text
    assert "6 API token refused" in text


def test_every_reporting_verb_takes_json() -> None:
    for verb in (
        ["list"],
        ["events"],
        ["status"],
        ["failover"],
        ["switchover"],
        ["protect"],
        ["reprotect"],
        ["unprotect"],
        ["qemu", "check"],
        ["image", "build"],
        ["demo"],
    ):
        shown = CliRunner().invoke(app, [*verb, "-h"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0 and "--json" in shown.output, verb
