"""The etcd test lab's lock: a second run waits instead of deleting the first one's
namespaces (the names are fixed)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from colopp.arbiter import cluster
from colopp.errors import ConfigError


@pytest.fixture
def lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "etcd-lab.lock"
    monkeypatch.setattr(cluster, "LAB_LOCK", path)
    monkeypatch.setattr(cluster, "run", lambda *argv: None)  # no namespaces made
    monkeypatch.setattr(cluster.subprocess, "run", lambda *a, **k: None)
    return path


def can_lock(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_the_lab_lock_is_held_from_make_until_delete(lock: Path) -> None:
    cluster.make_netns_lab(["x1"])
    assert not can_lock(lock)  # another run waits
    cluster.delete_netns_lab(["x1"])
    assert can_lock(lock)


def test_a_run_that_waits_too_long_is_a_clear_error(lock: Path) -> None:
    other = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)  # another run holds it
    try:
        with pytest.raises(ConfigError, match="another etcd lab holds"):
            cluster._lock(timeout=0.3)
    finally:
        os.close(other)
    assert not cluster._held
