"""``python -m bench.pair --quick`` end to end on the two-host lab (short windows, two
configurations, one mix): the result has issue 15's keys and a verdict per target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.pair_figures import CLOSED_FIGURES, OPEN_FIGURES, evaluate_targets

pytestmark = pytest.mark.integration


def test_quick_run_writes_every_key(qemu_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pair.json"
    argv = [
        sys.executable, "-m", "bench.pair", "--quick", "--duration", "3", "--warmup", "1",
        "--configs", "unreplicated,colopp_prerelease_semiactive",
        "--mixes", "redis_read_mostly", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    assert out.exists(), done.stderr[-3000:]
    result = json.loads(out.read_text())
    for loop, figures in (("closed_loop", CLOSED_FIGURES), ("open_loop", OPEN_FIGURES)):
        for config in ("unreplicated", "colopp_prerelease_semiactive"):
            entry = result[loop]["redis_read_mostly"][config]
            assert set(figures) <= set(entry), (loop, config)
            assert entry["errors"] == 0 and entry["prerelease_mismatches"] == 0
    assert set(result["meta"]["two_hosts"]) == {"hosta", "hostb", "client"}
    assert len(result["targets"]) == len(evaluate_targets({}))
    assert result["open_loop"]["redis_read_mostly"]["unreplicated"]["offered_rps"] > 0
