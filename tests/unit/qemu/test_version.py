from pathlib import Path

import pytest

from colopp.errors import QemuError, QemuUnsupported
from colopp.qemu.version import QemuVersion, colo_verdict, parse_version, require_colo_capable

DATA = Path(__file__).parents[2] / "data"


def test_parses_captured_trixie_backports_output() -> None:
    text = (DATA / "qemu-version-11.1.3.txt").read_text()
    assert parse_version(text) == QemuVersion(11, 1, 3)


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(QemuError, match="cannot read a QEMU version"):
        parse_version("bash: qemu: command not found")


@pytest.mark.parametrize(
    ("version", "accel", "broken"),
    [
        ((7, 2, 19), "tcg", True),
        ((7, 2, 19), "kvm", False),
        ((10, 0, 2), "kvm", True),
        ((10, 0, 6), "tcg", True),
        ((10, 0, 7), "tcg", False),
        ((10, 1, 0), "tcg", True),
        ((10, 2, 0), "tcg", False),
        ((11, 1, 3), "tcg", False),
        ((6, 2, 0), "kvm", True),
    ],
)
def test_verdicts_match_what_was_measured(
    version: tuple[int, int, int], accel: str, broken: bool
) -> None:
    assert (colo_verdict(QemuVersion(*version), accel) is not None) is broken


def test_refusal_names_the_remedy() -> None:
    with pytest.raises(QemuUnsupported, match="colopp qemu install"):
        require_colo_capable(QemuVersion(7, 2, 19), "tcg")
