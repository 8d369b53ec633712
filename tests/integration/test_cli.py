"""The CLI end to end: `colopp protect` holds a pair, `status` shows it, `failover`
refuses while the primary runs and promotes the secondary once it is gone, Ctrl-C tears
everything down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from colopp.polling import wait_until


def colopp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "colopp.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_protect_status_failover_and_teardown(qemu_root: Path, tmp_path: Path) -> None:
    state = tmp_path / "cli"
    record = state / "pair.json"
    protect = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "colopp.cli",
            "protect",
            "--state-dir",
            str(state),
            "--qemu-root",
            str(qemu_root),
            "--comparator",
            "colopp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def recorded() -> bool:  # the record appears when COLO is reached
            assert protect.poll() is None, protect.stderr.read() if protect.stderr else ""
            return record.exists()

        wait_until("colopp protect to record a pair", recorded, 180, 0.2)
        assert record.stat().st_mode & 0o777 == 0o600
        shown = colopp("status", "--state-dir", str(state), "--json")
        assert shown.returncode == 0, shown.stderr
        sides = json.loads(shown.stdout)["sides"]
        assert sides["hosta"]["colo"]["mode"] == "primary"
        assert sides["hostb"]["colo"]["mode"] == "secondary"

        refused = colopp("failover", "--state-dir", str(state))
        assert refused.returncode == 4  # conflict with the current state (colopp --help)
        assert "still runs" in refused.stderr

        os.kill(int(sides["hosta"]["pid"]), signal.SIGKILL)
        done = colopp("failover", "--state-dir", str(state))
        assert done.returncode == 0, done.stderr
        after = json.loads(record.read_text())
        assert (after["state"], after["primary"]["name"], after["secondary"]) == (
            "failed_over",
            "hostb",
            None,
        )
    finally:
        protect.send_signal(signal.SIGINT)
        try:
            protect.wait(timeout=60)
        except subprocess.TimeoutExpired:
            protect.kill()
            pytest.fail("colopp protect did not stop on SIGINT")
        finally:
            if protect.stderr is not None:
                protect.stderr.close()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert "colopp-" not in namespaces.stdout
    assert not record.exists()
