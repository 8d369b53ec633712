"""COLO++ options on a side: the client-copy mirror, the standalone baseline, validation,
and how they travel to the agent and into the comparator's command line (pure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from colopp.agent.comparator_process import comparator_argv
from colopp.colo.sequence import primary_failover, resume_replication
from colopp.domain import (
    ComparatorKind,
    Ports,
    ProtectionOptions,
    Role,
    SideSpec,
    VmSpec,
)
from colopp.errors import ConfigError
from colopp.qemu.argv import qemu_argv
from colopp.qemu.runtime import QemuRuntime
from colopp.side_request import SideRequest

VM = VmSpec("demo", Path("/k"), Path("/i"), "console=ttyS0")
BASE = SideSpec(
    Role.PRIMARY,
    Path("/run/c"),
    "tap-x",
    Path("/run/c/disk.qcow2"),
    "198.18.1.10",
    "198.18.1.11",
    options=ProtectionOptions(comparator=ComparatorKind.COLOPP),
)


def with_options(spec: SideSpec, **changes: object) -> SideSpec:
    return dataclasses.replace(spec, options=dataclasses.replace(spec.options, **changes))  # type: ignore[arg-type]


def objects(spec: SideSpec) -> list[str]:
    argv = qemu_argv(QemuRuntime(), VM, spec)
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-object"]


@pytest.mark.parametrize(
    ("prerelease", "prefixes", "client"),
    [
        (None, (), False),
        ("auto", (), False),
        ("auto", ("/kv/",), True),
        ("all", (), True),
        ("ack_only,retransmission", ("/kv/",), False),
        ("http_read", ("/kv/",), True),
    ],
)
def test_client_copy_only_for_the_read_rule(
    prerelease: str | None, prefixes: tuple[str, ...], client: bool
) -> None:
    spec = with_options(BASE, prerelease=prerelease, read_prefixes=prefixes)
    assert spec.options.client_frames is client
    mirror = "filter-mirror,id=mc0,netdev=hn0,queue=tx,outdev=client0,vnet_hdr_support=off"
    assert (mirror in objects(spec)) is client
    argv = comparator_argv(spec, 2000, python="py")
    assert ("--client-in" in argv) is client
    if client:
        assert argv[argv.index("--client-in") + 1] == "unix:/run/c/client0.sock"
    if prerelease is None:
        assert not any(a.startswith("--prerelease") for a in argv)
    else:
        assert f"--prerelease={prerelease}" in argv
        assert argv.count("--prerelease-read-prefix") == len(prefixes)


def test_builtin_comparator_never_gets_the_client_copy() -> None:
    spec = with_options(
        BASE, comparator=ComparatorKind.BUILTIN, prerelease="all", read_prefixes=("/kv/",)
    )
    assert not spec.options.client_frames


def test_standalone_primary_has_no_colo_filters() -> None:
    spec = dataclasses.replace(BASE, standalone=True)
    assert objects(spec) == []
    argv = qemu_argv(QemuRuntime(), VM, spec)
    assert "-incoming" not in argv
    assert any("file=/run/c/disk.qcow2" in a for a in argv)


@pytest.mark.parametrize(
    "change",
    [
        {"prerelease": "all; rm -rf /"},
        {"prerelease": ""},
        {"read_prefixes": ("kv/",)},
        {"read_prefixes": ("/kv /",)},
        {"read_prefixes": ("/kv/../etc",)},
        {"prerelease_rearm_ms": 0},
        {"checkpoint_delay_ms": 0},
    ],
)
def test_bad_options_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        qemu_argv(QemuRuntime(), VM, with_options(BASE, **change))
    request = SideRequest(Role.PRIMARY, "tap-x", "a", "b").to_dict()
    request["options"] |= {k: list(v) if isinstance(v, tuple) else v for k, v in change.items()}
    with pytest.raises(ConfigError):
        SideRequest.from_dict(request)


def test_a_secondary_never_runs_standalone() -> None:
    with pytest.raises(ConfigError):
        qemu_argv(
            QemuRuntime(), VM, dataclasses.replace(BASE, standalone=True, role=Role.SECONDARY)
        )


@pytest.mark.parametrize(
    "change",
    [
        {"options": {"unknown": 1}},
        {"options": {"semiactive": "yes"}},
        {"options": {"backend": "xen"}},
        {"options": {"comparator": "other"}},
        {"options": "colopp"},
        {"ports": {"nbd": 70000}},
        {"role": "tertiary"},
        {"tap": "a tap name far too long"},
        {"standalone": 1},
        {"prerelease": "all"},  # a flat option of an older controller: refused, not lost
    ],
)
def test_bad_side_requests_are_refused(change: dict[str, object]) -> None:
    request = SideRequest(Role.PRIMARY, "tap-x", "a", "b").to_dict() | change
    with pytest.raises(ConfigError):
        SideRequest.from_dict(request)


def test_options_travel_from_controller_to_agent() -> None:
    options = ProtectionOptions(
        comparator=ComparatorKind.COLOPP,
        prerelease="auto",
        read_prefixes=("/kv/", "/static/"),
        semiactive=True,
    )
    request = SideRequest(Role.SECONDARY, "tap-y", "198.18.1.11", "198.18.1.10", Ports(), options)
    spec = SideRequest.from_dict(request.to_dict()).spec(Path("/run/s"))
    assert spec.options == options and spec.standalone is False
    assert spec.disk == Path("/run/s/disk.qcow2")
    # Options left out take their defaults.
    del request.to_dict()["options"]
    bare = request.to_dict()
    del bare["options"]
    assert SideRequest.from_dict(bare).options == ProtectionOptions()


def test_reprotection_rebuilds_the_client_copy() -> None:
    ports = Ports()
    socks = ("/c0", "/co")
    steps = resume_replication(
        "198.18.1.10", "198.18.1.11", ports, socks, ComparatorKind.COLOPP, True, "/cl"
    )
    adds = [s.arguments for s in steps if s.command == "object-add"]
    mc0 = next(a for a in adds if a["id"] == "mc0")
    assert (mc0["qom-type"], mc0["queue"], mc0["outdev"], mc0["position"]) == (
        "filter-mirror",
        "tx",
        "client0",
        "id=rew0",
    )
    chardevs = [s.arguments["id"] for s in steps if s.command == "chardev-add"]
    assert "client0" in chardevs
    plain = resume_replication(
        "198.18.1.10", "198.18.1.11", ports, socks, ComparatorKind.COLOPP, False
    )
    assert not any(s.arguments.get("id") == "mc0" for s in plain)
    # A primary that loses its secondary drops the copy too.
    assert any(s.arguments.get("id") == "mc0" for s in primary_failover(ComparatorKind.COLOPP))
