from bench.checkpoint_cost import format_table, percentile, window_figures


def status(checkpoints: int, normal: int, duplicate: int, transferred: int) -> dict[str, object]:
    ram = {"normal": normal, "duplicate": duplicate, "transferred": transferred, "page-size": 4096}
    return {"checkpoints": checkpoints, "ram": ram}


def test_window_figures_divide_ram_deltas_by_checkpoints() -> None:
    f = window_figures(status(5, 1000, 10, 10**6), status(9, 1400, 30, 3 * 10**6), [4, 5, 6, 30])
    assert f["checkpoints"] == 4
    assert f["dirty_pages_per_checkpoint"] == 100
    assert f["zero_pages_per_checkpoint"] == 5
    assert f["transferred_bytes_per_checkpoint"] == 500_000
    assert f["pause_ms_p50"] == 5.5 and f["pause_ms_p99"] == 30 and f["pause_ms_max"] == 30


def test_window_without_ram_counters_or_pauses() -> None:
    f = window_figures({"checkpoints": 1}, {"checkpoints": 1, "ram": None}, [])
    assert f["checkpoints"] == 0 and f["pause_ms_p50"] is None
    assert f["dirty_pages_per_checkpoint"] == 0


def test_percentile_nearest_rank() -> None:
    assert percentile([1.0, 2.0, 3.0, 100.0], 0.99) == 100.0
    assert percentile([7.0], 0.5) == 7.0


def test_table_lists_each_window() -> None:
    f = window_figures(status(0, 0, 0, 0), status(2, 20, 0, 0), [1.0, 3.0])
    table = format_table({"kvd": {"idle": f}, "meta": {}})
    assert "kvd" in table and "idle" in table and "10" in table
