from colopp.demo.run import pause_percentiles


def test_the_migration_stop_is_left_out_while_every_pause_is_kept() -> None:
    # 4 pauses, 3 checkpoints: the first pause ended the migration into COLO.
    primary = {"checkpoints": 3, "checkpoint_pauses_ms": [900.0, 50.0, 40.0, 60.0]}
    assert pause_percentiles(primary) == {
        "checkpoint_pause_ms_p50": 50.0,
        "checkpoint_pause_ms_p99": 60.0,
    }


def test_a_window_of_recent_pauses_is_used_whole() -> None:
    primary = {"checkpoints": 500, "checkpoint_pauses_ms": [float(n) for n in range(1, 101)]}
    found = pause_percentiles(primary)
    assert found["checkpoint_pause_ms_p50"] == 51.0
    assert found["checkpoint_pause_ms_p99"] == 99.0


def test_no_checkpoint_yet_gives_none() -> None:
    assert pause_percentiles({"checkpoints": 0, "checkpoint_pauses_ms": [700.0]}) == {
        "checkpoint_pause_ms_p50": None,
        "checkpoint_pause_ms_p99": None,
    }
