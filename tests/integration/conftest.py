"""Shared fixtures of the integration tier: root, a QEMU runtime, the guest image."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from colopp.image.builder import GuestImage, build_image
from colopp.qemu.runtime import DEFAULT_ROOT, QemuRuntime


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short per-test directory in place of pytest's: agents put UNIX sockets under it,
    and a long test name under ``/tmp/pytest-of-root/pytest-NNN/`` pushed one past
    sun_path's 108 bytes (session 8's CI). Removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="clp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (namespaces, taps, QEMU)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's ip is missing")


@pytest.fixture(scope="session")
def qemu_root(needs_root: None) -> Path:
    root = Path(os.environ.get("COLOPP_QEMU_ROOT", DEFAULT_ROOT))
    if not (root / "usr/bin/qemu-system-x86_64").exists():
        pytest.skip(f"no QEMU runtime at {root}: run `colopp qemu install` (make test does)")
    return root


@pytest.fixture(scope="session")
def runtime(qemu_root: Path) -> QemuRuntime:
    return QemuRuntime(root=qemu_root)


@pytest.fixture(scope="session")
def guest_image(needs_root: None) -> GuestImage:
    return build_image()
