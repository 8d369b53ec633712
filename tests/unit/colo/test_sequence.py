from colopp.colo.sequence import (
    YANK_PEER,
    peer_yank_instances,
    primary_failover,
    primary_start,
    replication_drive,
    secondary_failover,
    secondary_prepare,
)
from colopp.domain import ComparatorKind, Ports


def commands(steps):  # type: ignore[no-untyped-def]
    return [s.command.split()[0] for s in steps]


def test_secondary_prepare_sets_caps_then_nbd_then_incoming() -> None:
    steps = secondary_prepare("198.18.1.11", Ports())
    assert commands(steps) == [
        "migrate-set-capabilities",
        "nbd-server-start",
        "nbd-server-add",
        "migrate-incoming",
    ]
    caps = {c["capability"] for c in steps[0].arguments["capabilities"]}
    assert caps == {"x-colo", "return-path"}
    assert steps[-1].arguments == {"uri": "tcp:198.18.1.11:9998"}


def test_primary_start_attaches_replication_before_migrate() -> None:
    steps = primary_start("198.18.1.11", Ports(nbd=10999), 2000)
    assert commands(steps) == [
        "drive_add",
        "x-blockdev-change",
        "migrate-set-capabilities",
        "migrate-set-parameters",
        "migrate",
    ]
    assert steps[0].hmp
    assert "file.host=198.18.1.11,file.port=10999" in replication_drive(
        "198.18.1.11", Ports(nbd=10999)
    )
    assert steps[3].arguments == {"x-checkpoint-delay": 2000}


def test_secondary_failover_yanks_before_lost_heartbeat() -> None:
    names = commands(secondary_failover())
    assert names.index("yank") < names.index("x-colo-lost-heartbeat")
    assert names.index("nbd-server-stop") < names.index("x-colo-lost-heartbeat")
    assert secondary_failover()[0].oob


def test_primary_failover_removes_compare_only_when_builtin() -> None:
    builtin = [s.arguments.get("id") for s in primary_failover(ComparatorKind.BUILTIN)]
    colopp = [s.arguments.get("id") for s in primary_failover(ComparatorKind.COLOPP)]
    assert "comp0" in builtin and "comp0" not in colopp
    assert commands(primary_failover(ComparatorKind.COLOPP))[-1] == "x-colo-lost-heartbeat"


def test_peer_yank_keeps_only_what_reaches_the_peer() -> None:
    available = [
        {"type": "migration"},
        {"type": "block-node", "node-name": "#block123"},
        {"type": "chardev", "id": "mirror0"},
        {"type": "chardev", "id": "compare0"},
        {"type": "chardev", "id": "red1"},
    ]
    assert peer_yank_instances(available) == [
        {"type": "migration"},
        {"type": "block-node", "node-name": "#block123"},
        {"type": "chardev", "id": "mirror0"},
        {"type": "chardev", "id": "red1"},
    ]
    assert secondary_failover()[0] is YANK_PEER
    assert primary_failover(ComparatorKind.BUILTIN)[0] is YANK_PEER
