"""bench.fleet writes every key of issue 21, null where nothing was measured."""

from __future__ import annotations

from typing import Any

import pytest

from bench import fleet


def test_every_issue_key_is_present_and_unmeasured_ones_are_null(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fleet, "controller_kill", lambda trials, ttl: {"takeover_s": 3.2})
    monkeypatch.setattr(fleet, "etcd_partition", lambda ttl: {"dual_primary_observed": False})
    out: dict[str, Any] = fleet.figures(1, 3, None)
    assert out["hosts"] is None and out["protections"] is None
    assert set(out["host_kill"]) == {
        "protections_affected",
        "reprotected_elsewhere",
        "recovered_s",
        "requests_failed",
        "writes_lost",
    }
    assert all(v is None for v in out["host_kill"].values())
    assert out["controller_kill"]["takeover_s"] == 3.2
    assert out["etcd_partition"]["dual_primary_observed"] is False
    assert out["not_measured"]


def test_with_vms_every_key_comes_from_the_lab_run(monkeypatch: pytest.MonkeyPatch) -> None:
    measured = {
        "hosts": 3,
        "protections": 3,
        "host_kill": {"protections_affected": 2},
        "controller_kill": {"takeover_s": 3.4},
    }
    monkeypatch.setattr(fleet, "with_vms", lambda count, ttl, state: dict(measured))
    monkeypatch.setattr(fleet, "etcd_partition", lambda ttl: {"dual_primary_observed": False})
    out: dict[str, Any] = fleet.figures(1, 3, 3)
    assert out["hosts"] == 3 and out["controller_kill"]["takeover_s"] == 3.4
    assert out["etcd_partition"]["dual_primary_observed"] is False
    assert "not_measured" not in out
