"""A side's serial log survives its next launch on the same host (``serial.log.1`` ...):
the promoted guest's console is still there after a re-protection re-launched the side."""

from __future__ import annotations

from pathlib import Path

from colopp.qemu.qemu_process import keep_previous_serial_log


def launch(log: Path, text: str) -> None:
    keep_previous_serial_log(log, keep=3)
    log.write_text(text)


def test_each_launch_keeps_the_previous_logs_up_to_the_limit(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    keep_previous_serial_log(log, keep=3)  # no log yet: nothing to do
    assert list(tmp_path.iterdir()) == []
    for n in range(1, 6):
        launch(log, f"launch {n}")
    kept = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert kept == {
        "serial.log": "launch 5",
        "serial.log.1": "launch 4",
        "serial.log.2": "launch 3",
        "serial.log.3": "launch 2",
    }


def test_it_never_raises(tmp_path: Path) -> None:
    log = tmp_path / "missing-dir" / "serial.log"
    keep_previous_serial_log(log)  # a directory that does not exist: nothing, no error
    blocked = tmp_path / "serial.log"
    blocked.write_text("x")
    (tmp_path / "serial.log.1").mkdir()  # cannot be replaced by a rename
    (tmp_path / "serial.log.1" / "f").write_text("y")
    keep_previous_serial_log(blocked, keep=1)
    assert blocked.exists() or (tmp_path / "serial.log.1").exists()
