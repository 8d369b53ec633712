"""The shared leaves: one subprocess wrapper, one atomic private writer, one
connect-with-retry loop, the qemu-img argv (no QEMU, no sleeping on the clock)."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path

import pytest

from colopp.agent.disks import convert_argv, disk_format, overlay_argv
from colopp.clock import FakeClock
from colopp.errors import ImageError, QemuError, QemuNotFound
from colopp.files import write_json_atomic, write_private
from colopp.process import run_tool
from colopp.retry import RetryExhausted, connect_with_retry


def test_run_tool_returns_stdout_and_converts_failures() -> None:
    assert run_tool([sys.executable, "-c", "print('hi')"], QemuError) == "hi\n"
    with pytest.raises(QemuNotFound, match="cannot run /nonexistent/qemu-img"):
        run_tool(["/nonexistent/qemu-img"], QemuError, not_found=QemuNotFound)
    with pytest.raises(ImageError, match=r"tool failed \(3\): boom"):
        code = "import sys; print('boom', file=sys.stderr); sys.exit(3)"
        run_tool([sys.executable, "-c", code], ImageError, name="tool")
    assert run_tool([sys.executable, "-c", "raise SystemExit(1)"], QemuError, check=False) == ""
    with pytest.raises(QemuError, match="did not finish"):
        never = "import os; os.read(os.pipe()[0], 1)"  # a tool that never finishes
        run_tool([sys.executable, "-c", never], QemuError, timeout=0.2)


def test_private_files_are_0600_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "record.json"
    write_json_atomic(path, {"a": 1, "at": Path("/x")})
    assert json.loads(path.read_text()) == {"a": 1, "at": "/x"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    write_private(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temp left


def test_connect_with_retry_retries_until_it_works_then_gives_up() -> None:
    async def main() -> None:
        clock = FakeClock()
        tries: list[float] = []

        async def attempt() -> str:
            tries.append(clock.monotonic())
            if len(tries) < 4:
                raise ConnectionRefusedError("not yet")
            return "connected"

        assert await connect_with_retry(attempt, 5.0, pause=0.5, clock=clock) == "connected"
        assert [t - tries[0] for t in tries] == [0.0, 0.5, 1.0, 1.5]

        async def never() -> str:
            raise ConnectionRefusedError("refused")

        with pytest.raises(RetryExhausted) as caught:
            await connect_with_retry(never, 2.0, pause=0.5, clock=clock)
        assert isinstance(caught.value.last, ConnectionRefusedError)

        def gone() -> None:
            raise QemuError("exited")

        with pytest.raises(QemuError, match="exited"):
            await connect_with_retry(never, 2.0, give_up=gone, clock=clock)

        async def other() -> str:
            raise ValueError("not a connection error")

        with pytest.raises(ValueError):
            await connect_with_retry(other, 2.0, clock=clock)

    asyncio.run(main())


def test_qemu_img_argv() -> None:
    img = ["qemu-img"]
    assert disk_format(Path("a.qcow2")) == "qcow2" and disk_format(Path("a.img")) == "raw"
    assert convert_argv(img, Path("/b.img"), Path("/d.qcow2")) == [
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "/b.img",
        "/d.qcow2",
    ]
    assert overlay_argv(img, Path("/a.qcow2"), "1024") == [
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "/a.qcow2",
        "1024",
    ]
