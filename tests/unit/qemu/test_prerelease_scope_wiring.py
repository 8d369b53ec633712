"""The pre-release scope and the RESP ports travel from the controller to the comparator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from colopp.agent.comparator_process import comparator_argv
from colopp.compare.__main__ import options_from_args
from colopp.controller.store import config_from_dict, config_to_dict
from colopp.domain import (
    ComparatorKind,
    HostSlot,
    PairConfig,
    Ports,
    ProtectionOptions,
    Role,
    SideSpec,
    VmSpec,
)
from colopp.errors import ConfigError
from colopp.side_request import SideRequest

OPTIONS = ProtectionOptions(comparator=ComparatorKind.COLOPP)
BASE = SideSpec(
    Role.PRIMARY,
    Path("/run/c"),
    "tap-x",
    Path("/run/c/disk.qcow2"),
    "198.18.1.10",
    "198.18.1.11",
    options=OPTIONS,
)


def test_scope_and_resp_ports_reach_the_comparator() -> None:
    options = dataclasses.replace(
        OPTIONS,
        prerelease="auto",
        read_prefixes=("/kv/",),
        prerelease_scope="key",
        resp_ports=(6379,),
    )
    request = SideRequest(Role.PRIMARY, "tap-x", "198.18.1.10", "198.18.1.11", Ports(), options)
    spec = SideRequest.from_dict(request.to_dict()).spec(Path("/run/c"))
    got = spec.options
    assert (got.prerelease_scope, got.resp_ports, got.client_frames) == ("key", (6379,), True)
    argv = comparator_argv(spec, 2000, python="py")
    opts = options_from_args(argv[argv.index("colopp.compare") + 1 :])
    assert opts.prerelease.scope == "key"
    assert opts.prerelease.resp_ports == (6379,)
    assert opts.prerelease.rules >= {"http_read", "resp_read"}
    assert opts.client_in is not None


def test_resp_ports_alone_need_the_client_copy() -> None:
    options = dataclasses.replace(OPTIONS, prerelease="auto", resp_ports=(6379,))
    spec = dataclasses.replace(BASE, options=options)
    assert options.client_frames
    assert "--prerelease-scope" not in comparator_argv(spec, 2000, python="py")


@pytest.mark.parametrize(
    "change",
    [{"prerelease_scope": "path"}, {"resp_ports": (0,)}, {"resp_ports": tuple(range(1, 10))}],
)
def test_bad_scope_or_port_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(OPTIONS, **change).validate()  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ProtectionOptions.from_dict(OPTIONS.to_dict() | change)


def test_pair_record_keeps_the_scope() -> None:
    slot = HostSlot("a", "tap-a", "198.18.1.10")
    cfg = PairConfig(
        VmSpec("demo", Path("/k"), Path("/i"), "x"),
        Path("/d"),
        slot,
        slot,
        options=dataclasses.replace(OPTIONS, prerelease_scope="key", resp_ports=(6379,)),
    )
    back = config_from_dict(config_to_dict(cfg)).options
    assert (back.prerelease_scope, back.resp_ports) == ("key", (6379,))


def test_a_semi_active_pair_bounds_the_secondary_lag() -> None:
    from colopp.agent.comparator_process import SEMIACTIVE_MAX_LAG_MS

    spec = dataclasses.replace(BASE, options=dataclasses.replace(OPTIONS, semiactive=True))
    argv = comparator_argv(spec, 2000, python="py")
    opts = options_from_args(argv[argv.index("colopp.compare") + 1 :])
    assert opts.config.max_lag == SEMIACTIVE_MAX_LAG_MS / 1000
    assert "--max-lag-ms" not in comparator_argv(BASE, 2000, python="py")
