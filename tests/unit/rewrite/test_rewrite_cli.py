"""The comparator's ``--young-to`` option and the agent's comparator command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from colopp.agent.comparator_process import comparator_argv
from colopp.compare.__main__ import options_from_args
from colopp.domain import ComparatorKind, Ports, ProtectionOptions, Role, SideSpec
from colopp.errors import ConfigError

BASE = [
    "--primary-in",
    "unix:/a",
    "--secondary-in",
    "listen:tcp:127.0.0.1:9004",
    "--outdev",
    "unix:/b",
]


def test_young_to_parses_host_and_port() -> None:
    assert options_from_args([*BASE, "--young-to", "198.18.0.11:11004"]).young_to == (
        "198.18.0.11",
        11004,
    )
    assert options_from_args(BASE).young_to is None


@pytest.mark.parametrize("bad", ["nope", "host:", ":80", "h:0", "h:99999", "h:x"])
def test_bad_young_to_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="young-to"):
        options_from_args([*BASE, "--young-to", bad])


def test_comparator_sends_young_offsets_to_the_secondary_host(tmp_path: Path) -> None:
    spec = SideSpec(
        Role.PRIMARY,
        tmp_path,
        "tap0",
        tmp_path / "d",
        "198.18.0.10",
        "198.18.0.11",
        Ports(compare=9004),
        ProtectionOptions(comparator=ComparatorKind.COLOPP),
    )
    argv = comparator_argv(spec, 2000)
    assert argv[argv.index("--young-to") + 1] == "198.18.0.11:11004"
