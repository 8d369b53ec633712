"""The wheel (issue #13 item 16): it builds with the declared setuptools floor, installs
colopp and colopp_api and the QEMU templates, and no top-level ``bench`` package."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_build_requires_a_setuptools_that_knows_license_expressions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "GPL-2.0-or-later"  # an SPDX expression
    floors = [
        int(m.group(1))
        for req in project["build-system"]["requires"]
        if (m := re.fullmatch(r"setuptools>=(\d+).*", req))
    ]
    assert floors and floors[0] >= 77


def test_the_wheel_has_no_bench_and_keeps_the_qemu_templates(tmp_path: Path) -> None:
    # A clean copy: an in-tree build/ left by an earlier build would leak into the wheel.
    source = tmp_path / "src"
    skip = shutil.ignore_patterns(
        ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "docs", "*.png"
    )
    shutil.copytree(ROOT, source, ignore=skip)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = out.glob("colopp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert "bench" not in tops, sorted(tops)
    assert {"colopp", "colopp_api"} <= tops
    assert any("share/colopp/qemu-configs/" in n and n.endswith(".conf") for n in names)


def test_bench_still_runs_from_the_checkout() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import bench, sys; print(bench.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve().is_relative_to(ROOT / "bench")
