"""The live copy's bounds (pure): when a pre-copy or mirror that does not converge falls
back to copying with the guest stopped, and when colopp gives up."""

from __future__ import annotations

import pytest

from colopp.colo.converge import (
    STOPPED_DOWNTIME_MS,
    LiveBudget,
    MirrorStage,
    Stage,
    describe_progress,
    migration_passes,
    mirror_stage,
    mirror_steps,
    precopy_stage,
    stage_steps,
)
from colopp.colo.live import MAX_BANDWIDTH, live_migration_setup
from colopp.errors import ConfigError

BUDGET = LiveBudget(widen_s=10, stop_s=20, give_up_s=80, per_gib_s=4, widen_passes=8)


@pytest.mark.parametrize(
    ("elapsed", "passes", "stage"),
    [
        (0.0, 0, Stage.LIVE),
        (9.9, 7, Stage.LIVE),
        (10.0, 0, Stage.WIDEN),
        (1.0, 8, Stage.WIDEN),  # eight passes that each missed: it will not converge
        (19.9, 15, Stage.WIDEN),
        (20.0, 0, Stage.STOP_AND_COPY),
        (2.0, 16, Stage.STOP_AND_COPY),
        (79.9, 100, Stage.STOP_AND_COPY),
        (80.0, 0, Stage.GIVE_UP),
    ],
)
def test_precopy_escalates_on_time_or_on_missed_passes(
    elapsed: float, passes: int, stage: Stage
) -> None:
    assert precopy_stage(elapsed, passes, 0, BUDGET) is stage


def test_precopy_times_grow_with_ram() -> None:
    # A 4 GiB guest's first pass alone sends 4 GiB: its stages start 16 s later.
    assert precopy_stage(25.0, 0, 4096, BUDGET) is Stage.LIVE
    assert precopy_stage(27.0, 0, 4096, BUDGET) is Stage.WIDEN
    assert precopy_stage(25.0, 0, 256, BUDGET) is Stage.STOP_AND_COPY
    assert precopy_stage(95.9, 0, 4096, BUDGET) is Stage.STOP_AND_COPY
    assert precopy_stage(96.0, 0, 4096, BUDGET) is Stage.GIVE_UP


def test_every_wait_is_bounded() -> None:
    # Mirror give-up + pre-copy give-up (RAM-scaled) + the switch's own timeouts.
    budget = LiveBudget()
    assert budget.bound_s(1024) == (
        budget.mirror_give_up_s + budget.give_up_s + budget.per_gib_s + 125.0
    )
    assert precopy_stage(budget.give_up_s + budget.per_gib_s, 0, 1024, budget) is Stage.GIVE_UP


@pytest.mark.parametrize(
    ("elapsed", "stalled", "stage"),
    [
        (5.0, 0.0, MirrorStage.BACKGROUND),
        (60.0, 0.0, MirrorStage.WRITE_BLOCKING),
        (5.0, 30.0, MirrorStage.GIVE_UP),  # copied nothing for 30 s: stuck
        (900.0, 0.0, MirrorStage.GIVE_UP),
    ],
)
def test_mirror_stages(elapsed: float, stalled: float, stage: MirrorStage) -> None:
    assert mirror_stage(elapsed, stalled, LiveBudget()) is stage


def test_stage_steps_are_qemus_own_stop_and_copy() -> None:
    assert stage_steps(Stage.LIVE, BUDGET) == stage_steps(Stage.GIVE_UP, BUDGET) == []
    (widen,) = stage_steps(Stage.WIDEN, BUDGET)
    assert widen.arguments == {"downtime-limit": 250}
    (stop,) = stage_steps(Stage.STOP_AND_COPY, BUDGET)
    # No `stop` from colopp: QEMU stops the guest itself at its next check, so the run
    # state it migrates stays "running" (the secondary resumes it after a failover).
    assert stop.command == "migrate-set-parameters"
    assert stop.arguments == {
        "max-bandwidth": MAX_BANDWIDTH,
        "avail-switchover-bandwidth": MAX_BANDWIDTH,
        "downtime-limit": STOPPED_DOWNTIME_MS,
    }
    (change,) = mirror_steps(MirrorStage.WRITE_BLOCKING)
    assert change.command == "block-job-change"
    assert change.arguments["copy-mode"] == "write-blocking"
    assert mirror_steps(MirrorStage.BACKGROUND) == []


def test_each_migration_resets_what_a_fallback_changed() -> None:
    # A QEMU keeps migration parameters: the next re-protection must not start widened.
    params = live_migration_setup(2000, 1 << 20)[1].arguments
    assert params["avail-switchover-bandwidth"] == 0
    assert params["max-bandwidth"] == 1 << 20
    assert params["downtime-limit"] < 250


def test_budget_from_rpc_rejects_bad_input() -> None:
    assert LiveBudget.from_dict(None) == LiveBudget()
    assert LiveBudget.from_dict(BUDGET.to_dict()) == BUDGET
    with pytest.raises(ConfigError, match="unknown live budget fields: nope"):
        LiveBudget.from_dict({"nope": 1})
    with pytest.raises(ConfigError, match="stop_s"):
        LiveBudget.from_dict({"stop_s": 0})
    with pytest.raises(ConfigError, match="widen_s <= stop_s < give_up_s"):
        LiveBudget(stop_s=100, give_up_s=90)
    with pytest.raises(ConfigError, match="must be a positive number"):
        LiveBudget.from_dict({"widen_passes": True})
    with pytest.raises(ConfigError, match="must be an object"):
        LiveBudget.from_dict([1])  # type: ignore[arg-type]


def test_progress_read_from_query_migrate() -> None:
    info = {"status": "active", "ram": {"remaining": 4096, "mbps": 8.5, "dirty-sync-count": 3}}
    assert migration_passes(info) == 3
    assert migration_passes({"status": "setup"}) == migration_passes(None) == 0
    assert "4096 bytes of RAM left" in describe_progress(info)
    assert "3 passes" in describe_progress(info)
