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


def test_tolerated_errors_are_matched_by_class_and_command_never_by_text() -> None:
    from colopp.colo.sequence import DEVICE_NOT_FOUND, GENERIC_ERROR, QmpStep
    from colopp.errors import HMP_ERROR_CLASS, QmpError

    steps = {s.arguments.get("id", s.command): s for s in secondary_failover()}
    remove_red0 = steps["red0"]
    assert remove_red0.command == "chardev-remove"
    # QEMU 11: "Chardev 'red0' not found" is a GenericError.
    assert remove_red0.tolerates(
        QmpError("chardev-remove", "Chardev 'red0' not found", GENERIC_ERROR)
    )
    # The same words from another command, or without QEMU's class, are not tolerated.
    assert not remove_red0.tolerates(QmpError("object-del", "whatever", GENERIC_ERROR))
    assert not remove_red0.tolerates(QmpError("chardev-remove", "not found", None))
    assert not remove_red0.tolerates(QmpError("chardev-remove", "x", "CommandNotFound"))
    # yank of a vanished instance: DeviceNotFound (util/yank.c), not GenericError.
    assert YANK_PEER.tolerates(QmpError("yank", "Instance not found", DEVICE_NOT_FOUND))
    assert not YANK_PEER.tolerates(QmpError("yank", "Instance not found", GENERIC_ERROR))
    # x-colo-lost-heartbeat tolerates nothing.
    lost = next(s for s in secondary_failover() if s.command == "x-colo-lost-heartbeat")
    assert not lost.tolerates(QmpError("x-colo-lost-heartbeat", "", GENERIC_ERROR))
    # HMP: the error names the HMP command; only that drive_del tolerates HMP reports.
    drive_del = next(s for s in primary_failover(ComparatorKind.BUILTIN) if s.hmp)
    hmp_error = QmpError("human-monitor-command drive_del", "Failed flush", HMP_ERROR_CLASS)
    assert drive_del.tolerates(hmp_error)
    assert not QmpStep("drive_add x", hmp=True).tolerates(hmp_error)


def test_no_step_tolerates_by_text() -> None:
    from colopp.colo.sequence import DEVICE_NOT_FOUND, GENERIC_ERROR, resume_replication
    from colopp.errors import HMP_ERROR_CLASS

    classes = {GENERIC_ERROR, DEVICE_NOT_FOUND, HMP_ERROR_CLASS}
    every = [
        *secondary_failover(),
        *primary_failover(ComparatorKind.BUILTIN),
        *primary_failover(ComparatorKind.COLOPP),
        *resume_replication("a", "b", Ports(), ("/c", "/o"), ComparatorKind.BUILTIN, True, "/cl"),
    ]
    for step in every:
        assert set(step.tolerate) <= classes, step


def test_mirror0_is_the_mirror_process_socket_only_with_colopps_comparator() -> None:
    from colopp.colo.sequence import resume_replication

    def mirror0(kind: ComparatorKind, socket: str | None) -> dict[str, object]:
        steps = resume_replication(
            "198.18.1.10", "198.18.1.11", Ports(), ("/c", "/o"), kind, False, None,
            mirror_socket=socket,
        )  # fmt: skip
        (step,) = [s for s in steps if s.arguments.get("id") == "mirror0"]
        backend = step.arguments["backend"]
        assert isinstance(backend, dict)
        return backend

    batched = mirror0(ComparatorKind.COLOPP, "/run/m.sock")
    assert batched["data"]["addr"] == {"type": "unix", "data": {"path": "/run/m.sock"}}
    stock = mirror0(ComparatorKind.BUILTIN, "/run/m.sock")
    assert stock["data"]["addr"]["type"] == "inet"
    assert mirror0(ComparatorKind.COLOPP, None)["data"]["addr"]["type"] == "inet"
