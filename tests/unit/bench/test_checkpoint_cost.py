from bench.checkpoint_cost import format_table, parse_bytes_acked, percentile, window_figures


def test_window_figures_divide_the_stream_by_checkpoints() -> None:
    f = window_figures({"checkpoints": 5}, {"checkpoints": 9}, [4, 5, 6, 30], 4 * 409600)
    assert f["checkpoints"] == 4
    assert f["stream_bytes_per_checkpoint"] == 409600
    assert f["dirty_pages_per_checkpoint"] == 100
    assert f["pause_ms_p50"] == 5.5 and f["pause_ms_p99"] == 30 and f["pause_ms_max"] == 30


def test_window_without_stream_or_pauses() -> None:
    f = window_figures({"checkpoints": 1}, {"checkpoints": 1}, [], None)
    assert f["checkpoints"] == 0 and f["pause_ms_p50"] is None
    assert f["dirty_pages_per_checkpoint"] is None


def test_bytes_acked_sums_the_sockets() -> None:
    out = (
        "ESTAB 0 0 198.18.1.10:40000 198.18.1.11:9998\n"
        "\t cubic wscale:7,7 rto:204 bytes_sent:900 bytes_acked:800 bytes_received:10\n"
        "ESTAB 0 0 198.18.1.10:40002 198.18.1.11:9998\n"
        "\t cubic bytes_acked:200 bytes_received:0\n"
    )
    assert parse_bytes_acked(out) == 1000
    assert parse_bytes_acked("") == 0


def test_percentile_nearest_rank() -> None:
    assert percentile([1.0, 2.0, 3.0, 100.0], 0.99) == 100.0
    assert percentile([7.0], 0.5) == 7.0


def test_table_lists_each_window() -> None:
    f = window_figures({"checkpoints": 0}, {"checkpoints": 2}, [1.0, 3.0], 2 * 40960)
    table = format_table({"kvd": {"idle": f}, "meta": {}})
    assert "kvd" in table and "idle" in table and "10" in table
