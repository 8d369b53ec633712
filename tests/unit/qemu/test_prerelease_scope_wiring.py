"""The pre-release scope and the RESP ports travel from the controller to the comparator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from colopp.agent.comparator_process import comparator_argv
from colopp.agent.specs import side_from_request, side_request
from colopp.compare.__main__ import options_from_args
from colopp.controller.store import config_from_dict, config_to_dict
from colopp.errors import ConfigError
from colopp.qemu.argv import ComparatorKind, Ports, Role, SideSpec

BASE = SideSpec(
    Role.PRIMARY,
    Path("/run/c"),
    "tap-x",
    Path("/run/c/disk.qcow2"),
    "198.18.1.10",
    "198.18.1.11",
    comparator=ComparatorKind.COLOPP,
)


def test_scope_and_resp_ports_reach_the_comparator() -> None:
    request = side_request(
        Role.PRIMARY,
        "tap-x",
        "198.18.1.10",
        "198.18.1.11",
        Ports(),
        ComparatorKind.COLOPP,
        prerelease="auto",
        read_prefixes=("/kv/",),
        prerelease_scope="key",
        resp_ports=(6379,),
    )
    spec = side_from_request(request, Path("/run/c"))
    assert (spec.prerelease_scope, spec.resp_ports, spec.client_frames) == ("key", (6379,), True)
    argv = comparator_argv(spec, 2000, python="py")
    opts = options_from_args(argv[argv.index("colopp.compare") + 1 :])
    assert opts.prerelease.scope == "key"
    assert opts.prerelease.resp_ports == (6379,)
    assert opts.prerelease.rules >= {"http_read", "resp_read"}
    assert opts.client_in is not None


def test_resp_ports_alone_need_the_client_copy() -> None:
    spec = dataclasses.replace(BASE, prerelease="auto", resp_ports=(6379,))
    assert spec.client_frames
    assert "--prerelease-scope" not in comparator_argv(spec, 2000, python="py")


@pytest.mark.parametrize("change", [{"prerelease_scope": "path"}, {"resp_ports": (0,)}])
def test_bad_scope_or_port_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(BASE, **change).validate()  # type: ignore[arg-type]


def test_pair_record_keeps_the_scope() -> None:
    from colopp.controller.pair import HostSlot, PairConfig
    from colopp.qemu.argv import VmSpec

    slot = HostSlot("a", "tap-a", "198.18.1.10")
    cfg = PairConfig(
        VmSpec("demo", Path("/k"), Path("/i"), "x"),
        Path("/d"),
        slot,
        slot,
        prerelease_scope="key",
        resp_ports=(6379,),
    )
    back = config_from_dict(config_to_dict(cfg))
    assert (back.prerelease_scope, back.resp_ports) == ("key", (6379,))
