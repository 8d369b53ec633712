"""`colopp demo` end to end, as a user runs it (a subprocess, real QEMU pair on the lab).

- The default demo: colopp's comparator with pre-release on the read path and a
  semi-active secondary; the supervisor detects the SIGKILL, fails over and re-protects;
  its JSON summary has the figures the README promises.
- ``--guest debian`` (slow): the Debian server guest, with redis-benchmark and wrk against
  its redis and nginx across the kill.
- ``--dashboard --hold``: the API and its dashboard answer with the printed read token while
  the pair is held; SIGTERM (as Ctrl-C) tears everything down.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from colopp.agent.semiactive import semiactive_quota

ENV = {**os.environ, "COLUMNS": "250"}  # no wrapped URLs or tokens in rich's output


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short run directory (QMP socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="clpdemo-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_bounded(argv: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` whose timeout stops the demo with SIGTERM (it tears its pair down)
    and kills it only if teardown hangs: a demo that overruns must not leave agents, QEMUs
    or the lab lock to the tests after it."""
    kw.pop("check", None)
    kw.pop("capture_output", None)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                out, err = proc.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            pytest.fail(
                f"the demo overran {timeout:.0f}s and was stopped: {out[-3000:]}{err[-2000:]}"
            )
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def lab_namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.startswith("colopp-")}


def test_demo_summary(qemu_root: Path, short_dir: Path) -> None:
    summary_path = short_dir / "demo.json"
    done = run_bounded(
        [
            sys.executable,
            "-m",
            "colopp.cli",
            "demo",
            "--json",
            str(summary_path),
            "--state-dir",
            str(short_dir / "run"),
            "--qemu-root",
            str(qemu_root),
            "--before-kill",
            "4",
            "--after-failover",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["comparator"] == "colopp"
    assert summary["semiactive"] is True and summary["secondary_cpu_quota"] == semiactive_quota()
    assert summary["prerelease_ratio"] > 0
    assert summary["reprotected"] is True and summary["reprotect_s"] > 0
    assert summary["failover_verdict"] == "dead"
    for key in ("requests_failed", "connections_reset", "writes_lost", "read_mismatch"):
        assert summary[key] == 0, (key, summary)
    assert summary["requests_ok"] > 0 and summary["writes_acked"] > 0
    assert summary["colo_reached"] is True and summary["failover_outage_ms"] is not None
    assert summary["primary_after"] != "hosta" or summary["secondary_after"] != "hostb"
    # The story in order, each section rule on a line of its own.
    rules = [line for line in done.stdout.splitlines() if re.search(r"─ \d\. ", line)]
    assert [re.search(r"─ (\d)\. ", r).group(1) for r in rules] == list("1234567")  # type: ignore[union-attr]
    for line in rules:
        assert not any(c in line for c in "┘│┌"), line
    assert "colopp-hosta" not in lab_namespaces()


@pytest.mark.slow
def test_demo_debian_guest_summary(qemu_root: Path, short_dir: Path) -> None:
    """`colopp demo --guest debian`: redis-benchmark and wrk across the kill, 0 errors."""
    summary_path = short_dir / "demo.json"
    done = run_bounded(
        [
            *(sys.executable, "-m", "colopp.cli", "demo", "--guest", "debian"),
            *("--json", str(summary_path), "--state-dir", str(short_dir / "run")),
            *("--qemu-root", str(qemu_root), "--before-kill", "6", "--after-failover", "4"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=ENV,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert (summary["guest"], summary["vcpus"], summary["memory_mb"]) == ("debian", 2, 1024)
    assert summary["boot_s"] > 0
    assert 0 < summary["checkpoint_pause_ms_p50"] <= summary["checkpoint_pause_ms_p99"]
    for key in (
        "requests_failed",
        "connections_reset",
        "writes_lost",
        "redis_benchmark_errors",
        "wrk_errors",
    ):
        assert summary[key] == 0, (key, summary)
    assert summary["redis_benchmark_requests"] > 0 and summary["wrk_requests"] > 0
    assert summary["colo_reached"] is True and summary["reprotected"] is True


def test_demo_dashboard_and_hold(qemu_root: Path, short_dir: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "colopp.cli",
            "demo",
            "--dashboard",
            "--hold",
            "--state-dir",
            str(short_dir / "run"),
            "--qemu-root",
            str(qemu_root),
            "--before-kill",
            "3",
            "--after-failover",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []

    def until(pattern: str, timeout: float = 600) -> re.Match[str]:
        while True:
            line = lines.get(timeout=timeout)
            assert line is not None, "".join(seen[-60:])
            seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    try:
        url = until(r"dashboard: (http://127\.0\.0\.1:\d+)/dashboard").group(1)
        token = until(r"read token for the dashboard: (\S+)").group(1)
        until(r"holding: the pair stays protected")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            assert c.get("/dashboard").status_code == 200
            (protection,) = c.get("/v1/protections").json()["protections"]
            assert protection["state"] == "protected", protection
            assert protection["options"]["semiactive"] is True
            events = c.get(f"/v1/protections/{protection['id']}/events", params={"limit": 1000})
            assert "failover" in {e["type"] for e in events.json()["events"]}
            refused = c.post(f"/v1/protections/{protection['id']}/failover")
            assert refused.status_code == 403  # a read token cannot act
        proc.send_signal(signal.SIGTERM)  # as systemd stops it; Ctrl-C takes the same path
        until(r"and the API stopped", timeout=180)
        assert proc.wait(timeout=60) == 0, "".join(seen[-40:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert "colopp-hosta" not in lab_namespaces()
