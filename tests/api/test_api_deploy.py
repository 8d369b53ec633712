"""What ships in deploy/: the Prometheus rules (``promtool check rules`` and ``promtool test
rules``) and the Grafana dashboard (parses; valid PromQL; only metrics that /metrics serves)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from populated import Manager, scrape, setup

from colopp_api.db.store import Store
from colopp_api.live.runner import ProtectionRunner
from colopp_api.live.sampler import SamplerMemory, digest

__all__ = ["setup"]  # the fixture

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "colopp-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "colopp.json"
METRIC = re.compile(r"\b(colopp_[a-z0-9_]+)\b")


def promtool(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool missing: Debian's prometheus package (scripts/setup.sh)"
    return subprocess.run([binary, *argv], cwd=cwd, capture_output=True, text=True, check=False)


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_promtool_unit_tests_the_rules() -> None:
    result = promtool("test", "rules", "colopp-rules.test.yml", cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression of the dashboard: panels (and rows' panels), annotations,
    template variables."""
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield query["query"] if isinstance(query, dict) else query


def as_promql(expr: str) -> str:
    """Grafana's variables replaced by what they expand to, so promtool can parse it."""
    label_values = re.fullmatch(r"label_values\((\w+), *\w+\)", expr)
    if label_values:
        return label_values.group(1)
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "6h")
    return expr.replace("$protection", ".*")


def served_names(manager: Manager, store: Store, runner: ProtectionRunner) -> set[str]:
    """Sample names of /metrics once the runner has seen everything a live pair reports."""
    status = {
        "pid": 10,
        "vm_alive": True,
        "checkpoints": 3,
        "checkpoint_pauses_ms": [40.0, 60.0, 80.0],
        "last_checkpoint_at": 99.0,
        "comparator": {
            "alive": True,
            "counters": {"matched_frames": 5, "divergences": {"payload": 1}},
        },
    }
    memory = SamplerMemory()
    roles = ("hosta", "hostb")
    digest(memory, runner.tally, {"hosta": {**status, "checkpoints": 0}}, roles, 1.0, {})
    digest(memory, runner.tally, {"hosta": status, "hostb": {}}, roles, 2.0, {"hosta": 1.0})
    runner.tally.failovers = runner.tally.switchovers = 1
    return {name for name, _ in scrape(manager, store)}


def test_dashboard_queries_only_served_metrics(
    setup: tuple[Manager, Store, ProtectionRunner],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "colopp" and dashboard["panels"]
    served = served_names(*setup)
    assert "colopp_build_info" in served
    queried = {m for expr in dashboard_queries(dashboard) for m in METRIC.findall(expr)}
    assert "colopp_build_info" in queried
    assert queried - served == set()
    rules = yaml.safe_load(RULES.read_text())
    alerted = {m for r in rules["groups"][0]["rules"] for m in METRIC.findall(r["expr"])}
    assert alerted - served == set()


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    exprs = list(dashboard_queries(json.loads(DASHBOARD.read_text())))
    rules = [
        {"record": f"colopp:dashboard_query_{i}", "expr": as_promql(e)} for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("expr", ["rate(colopp_x_total[$__rate_interval", "sum by (a) (b"])
def test_broken_promql_is_caught(tmp_path: Path, expr: str) -> None:
    path = tmp_path / "r.yml"
    rules = [{"record": "colopp:broken", "expr": as_promql(expr)}]
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}))
    assert promtool("check", "rules", path.name, cwd=tmp_path).returncode != 0
