"""The demo's live panel leaves a clean line for what follows, on a terminal or not."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from colopp.demo.display import live_panel
from colopp.demo.run import DemoLive, demo_ok, prerelease_ratio


def lines_after_panel(terminal: bool) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=80, height=24)
    live = DemoLive()
    with live_panel(console, live.table) as panel:
        console.log("pair: protected → failing_over")
        live.state = "failed_over"
        panel.update(live.table())
    console.rule("next phase")
    return out.getvalue().replace("\r", "\n").splitlines()


@pytest.mark.parametrize("terminal", [True, False])
def test_the_rule_after_the_panel_is_on_its_own_line(terminal: bool) -> None:
    lines = lines_after_panel(terminal)
    ruled = [line for line in lines if "next phase" in line]
    assert ruled, lines
    for line in ruled:
        assert not any(c in line for c in "┘│┌"), line
    assert any("failed_over" in line for line in lines)  # the last frame stays


def test_prerelease_ratio_and_verdict() -> None:
    assert prerelease_ratio({"released_frames": 200, "pre_released_frames": 50}) == 0.25
    assert prerelease_ratio({}) == 0.0
    good = {
        "colo_reached": True,
        "reprotected": True,
        "requests_failed": 0,
        "connections_reset": 0,
        "writes_lost": 0,
        "read_mismatch": 0,
    }
    assert demo_ok(good)
    assert not demo_ok(good | {"reprotected": False})
    assert not demo_ok(good | {"writes_lost": 1})


def test_the_table_shows_pre_release() -> None:
    live = DemoLive(prereleased="5 of 10")
    out = io.StringIO()
    Console(file=out, width=80).print(live.table())
    assert "5 of 10" in out.getvalue() and isinstance(live.table(), Table)
