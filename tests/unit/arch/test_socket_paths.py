"""A side's run directory must leave room for every UNIX socket colopp puts in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from colopp.domain import LONGEST_SOCKET_NAME, MAX_SOCKET_PATH, Role, SideSpec
from colopp.errors import ConfigError

SOURCES = Path(__file__).resolve().parents[3] / "colopp"


def _spec(run_dir: Path) -> SideSpec:
    return SideSpec(
        Role.SECONDARY, run_dir, "tap0", run_dir / "d.qcow2", "198.18.0.1", "198.18.0.2"
    )


def test_the_longest_socket_name_is_the_longest_in_the_sources() -> None:
    names = {
        m.group(1)
        for path in SOURCES.rglob("*.py")
        for m in re.finditer(r'"([A-Za-z0-9_.-]+\.sock)"', path.read_text())
    }
    assert LONGEST_SOCKET_NAME in names
    assert max(len(n) for n in names) == len(LONGEST_SOCKET_NAME), sorted(names, key=len)[-3:]


def test_a_run_directory_at_the_limit_is_accepted() -> None:
    room = MAX_SOCKET_PATH - len(LONGEST_SOCKET_NAME) - 1
    _spec(Path("/" + "a" * (room - 1))).validate()


def test_a_run_directory_one_byte_over_is_refused_with_the_reason() -> None:
    room = MAX_SOCKET_PATH - len(LONGEST_SOCKET_NAME) - 1
    with pytest.raises(ConfigError, match="too long for UNIX sockets"):
        _spec(Path("/" + "a" * room)).validate()


def test_the_ci_failure_path_is_refused() -> None:
    """Session 8's CI: QEMU refused this socket and the re-protection failed much later."""
    run_dir = Path(
        "/tmp/pytest-of-root/pytest-108/test_a_running_libvirt_domain_0/state/hosta/kvd/secondary"
    )
    with pytest.raises(ConfigError):
        _spec(run_dir).validate()
