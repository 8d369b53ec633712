"""The stuck-workload report's traffic counters (``colopp.demo.lab_report``), pure parts."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from colopp.demo import lab_report
from colopp.demo.harness import ClientWorkload, WorkloadStuck
from colopp.demo.lab_report import counters, traffic_deltas
from colopp.lab import plan_lab


def link(name: str, rx: int, tx: int, rx_drop: int = 0, tx_drop: int = 0) -> dict[str, Any]:
    return {
        "ifname": name,
        "stats64": {
            "rx": {"packets": rx, "dropped": rx_drop, "bytes": 0},
            "tx": {"packets": tx, "dropped": tx_drop, "bytes": 0},
        },
    }


def test_counters_read_ip_json_and_skip_what_they_cannot_read() -> None:
    links = [
        link("tap-pvm", 10, 20, 1, 0),
        {"ifname": "lo"},  # no stats64
        {"stats64": {}},  # no name
        {"ifname": "odd", "stats64": {"rx": {"packets": "x"}}},
    ]
    assert counters(links) == {"tap-pvm": (10, 20, 1, 0)}


def test_deltas_show_what_moved_and_what_stood_still() -> None:
    before = {"svc0": (100, 50, 0, 0), "tap-pvm": (7, 7, 0, 0), "gone": (1, 1, 0, 0)}
    after = {"svc0": (180, 50, 0, 3), "tap-pvm": (7, 7, 0, 0), "new": (5, 5, 0, 0)}
    assert traffic_deltas("clp-hosta", before, after) == [
        "clp-hosta svc0: rx +80 tx +0 packets dropped rx +0 tx +3",
        "clp-hosta tap-pvm: rx +0 tx +0 packets",
    ]


def test_a_stuck_finish_reports_while_the_workload_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ClientWorkload.finish`` past its timeout: the caller's report, the lab's forwarding
    and its counters are taken before the workload is killed, and all are in the error (a
    lab whose namespaces are gone says so instead of raising)."""
    monkeypatch.setattr(lab_report, "TRAFFIC_WINDOW_S", 0.0)  # the window, not what's in it
    load = object.__new__(ClientWorkload)
    load.plan = plan_lab("clpnone")
    load.proc = subprocess.Popen(  # never answers, never exits by itself
        [sys.executable, "-c", "import os; r, w = os.pipe(); os.read(r, 1)"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    alive: list[bool] = []

    def report() -> str:
        alive.append(load.proc.poll() is None)
        return "pair status: {}"

    try:
        with pytest.raises(WorkloadStuck) as stuck:
            load.finish(timeout=0.2, on_stuck=report)
    finally:
        load.kill()
    assert alive == [True]
    text = str(stuck.value)
    assert "pair status: {}" in text and "what moved in" in text
    assert "clpnone-sw ip: exit" in text
    assert load.proc.poll() is not None
