"""The live re-protection plan: the guest never runs with writes reaching only its disk."""

from __future__ import annotations

from colopp.colo.live import (
    COLO_STARTED,
    COMPARATOR,
    MIRROR_DONE,
    MIRROR_READY,
    PRE_SWITCHOVER,
    SECONDARY_LINKED,
    as_points,
    live_plan,
    peer_links_up,
    split_plumbing,
    unreplicated_steps,
)
from colopp.colo.sequence import (
    QmpStep,
    attach_replication,
    finish_resync,
    migrate_to,
    primary_start,
    resume_replication,
    resync_disk,
)
from colopp.domain import ComparatorKind, Ports

PORTS = Ports()


def _plumbing(kind: ComparatorKind = ComparatorKind.COLOPP) -> list[QmpStep]:
    return resume_replication("10.0.0.1", "10.0.0.2", PORTS, ("/c0", "/co"), kind, True, "/cl")


def test_resuming_before_migrate_leaves_writes_unreplicated() -> None:
    # The variant that lost acknowledged writes in trials: mirror cancelled with the guest
    # stopped, replication child attached, then the guest resumed before `migrate`.
    plan = [
        *as_points([resync_disk("10.0.0.2", PORTS), *finish_resync(), *_plumbing()]),
        *as_points([QmpStep("cont"), *migrate_to("10.0.0.2", PORTS, 2000)]),
        COLO_STARTED,
    ]
    bad = unreplicated_steps(plan)
    assert bad[0] == "cont"
    assert "migrate" in bad


def test_the_frozen_plan_is_safe_but_stops_the_guest_for_the_ram_copy() -> None:
    plan = [
        *as_points([resync_disk("10.0.0.2", PORTS), *finish_resync(), *_plumbing()]),
        *as_points(migrate_to("10.0.0.2", PORTS, 2000)),
        COLO_STARTED,
    ]
    assert unreplicated_steps(plan) == []


def test_first_protection_of_a_running_guest_has_the_same_window() -> None:
    # primary_start attaches replication and migrates with the guest running: writes
    # until the COLO switch reach only the primary's disk (fine for a freshly booted
    # guest whose disks are identical copies, not for a serving one).
    plan = [*as_points(primary_start("10.0.0.2", PORTS, 2000)), COLO_STARTED]
    assert "migrate" in unreplicated_steps(plan)


def test_first_protection_takes_the_live_plan_without_a_window() -> None:
    # HostAgent.start_colo: only the replication child is added (the primary's filters
    # come from its command line), in the pause, after the mirror completed.
    plan = live_plan("10.0.0.2", PORTS, attach_replication("10.0.0.2", PORTS), 2000)
    assert unreplicated_steps(plan) == []
    names = [p.name for p in plan]
    assert names.index("block-job-cancel") < names.index("x-blockdev-change")
    assert plan.index(PRE_SWITCHOVER) < names.index("x-blockdev-change")


def test_live_plan_keeps_every_running_moment_replicated() -> None:
    for kind in ComparatorKind:
        plan = live_plan("10.0.0.2", PORTS, _plumbing(kind), 2000)
        assert unreplicated_steps(plan) == []


def test_live_plan_order() -> None:
    plan = live_plan("10.0.0.2", PORTS, _plumbing(), 2000)
    names = [p.name for p in plan]
    mirror = next(p for p in plan if p.name == "drive-mirror")
    assert mirror.step is not None
    caps = next(p.step for p in plan if p.name == "migrate-set-capabilities")
    assert caps is not None
    on = {c["capability"] for c in caps.arguments["capabilities"] if c["state"]}
    assert {"x-colo", "return-path", "pause-before-switchover"} <= on
    order = [
        names.index(n) for n in ("drive-mirror", "migrate", "block-job-cancel", "migrate-continue")
    ]
    assert order == sorted(order)
    assert plan.index(MIRROR_READY) < plan.index(COMPARATOR) < names.index("migrate")
    assert names.index("migrate") < plan.index(PRE_SWITCHOVER) < names.index("block-job-cancel")
    assert plan.index(MIRROR_DONE) < names.index("x-blockdev-change")
    assert plan[-1] is COLO_STARTED
    # Filters only in the pause: before it the guest talks to clients directly.
    for i, point in enumerate(plan):
        if point.name == "object-add":
            assert i > plan.index(PRE_SWITCHOVER)


def test_split_plumbing_keeps_only_chardevs_early() -> None:
    early, late = split_plumbing(_plumbing(ComparatorKind.BUILTIN))
    assert early and all(s.command == "chardev-add" for s in early)
    assert late[0].hmp and late[0].command.startswith("drive_add")
    assert {s.command for s in late} >= {"x-blockdev-change", "object-add"}
    assert len(early) + len(late) == len(_plumbing(ComparatorKind.BUILTIN))


def test_a_stop_ends_the_unsafe_window() -> None:
    plan = [
        *as_points([resync_disk("10.0.0.2", PORTS)]),
        *as_points([QmpStep("block-job-cancel", {"device": "resync"}), QmpStep("stop")]),
    ]
    assert unreplicated_steps(plan) == ["block-job-cancel"]
    assert unreplicated_steps(plan, running=False) == []


def test_the_secondary_links_are_waited_for_before_the_migration() -> None:
    plan = live_plan("10.0.0.2", PORTS, _plumbing(), 2000)
    names = [p.name for p in plan]
    assert plan.index(COMPARATOR) < plan.index(SECONDARY_LINKED) < names.index("migrate")


def test_peer_links_up_reads_query_chardev() -> None:
    up = {"label": "mirror0", "filename": "tcp:10.0.0.1:9003,server=on <-> 10.0.0.2:40000"}
    down = {"label": "compare1", "filename": "disconnected:tcp:10.0.0.1:9004,server=on"}
    assert peer_links_up([up, down], ("mirror0",))
    assert not peer_links_up([up, down], ("mirror0", "compare1"))
    assert not peer_links_up([down], ("mirror0",))  # missing counts as down


def test_guest_writes_never_wait_for_the_secondary_during_the_precopy() -> None:
    # An active (write-blocking) mirror made every guest write wait behind the RAM
    # pre-copy's stream on the replication link: kvd (fsync per PUT, one thread) stalled
    # for the whole pre-copy (bench.inplace: 0.6-2 s client gaps). The mirror copies in
    # the background and completes, with the guest stopped, in the switch pause.
    plan = live_plan("10.0.0.2", PORTS, _plumbing(), 2000)
    mirror = next(p.step for p in plan if p.name == "drive-mirror")
    assert mirror is not None and mirror.arguments["copy-mode"] == "background"
    names = [p.name for p in plan]
    assert plan.index(PRE_SWITCHOVER) < names.index("block-job-cancel")
    assert unreplicated_steps(plan) == []
