from colopp.agent.side import CheckpointLog
from colopp.demo.workload import outage_around


def test_stop_resume_pairs_count_as_checkpoints_with_pauses() -> None:
    log = CheckpointLog()
    for name, stamp in [
        ("STOP", 10.0),
        ("RESUME", 10.05),
        ("RESUME", 11.0),
        ("STOP", 12.0),
        ("RESUME", 12.047),
    ]:
        log.on_event(name, stamp)
    assert log.count == 2
    assert [round(p) for p in log.pauses_ms] == [50, 47]
    assert log.last_at == 12.047


def test_outage_is_the_gap_that_spans_the_mark() -> None:
    assert outage_around([1.0, 1.1, 1.2, 1.5, 1.6], 1.25) == pytest_approx(300.0)
    assert outage_around([1.0], 2.0) is None
    assert outage_around([1.0], None) is None


def pytest_approx(value: float) -> object:
    import pytest

    return pytest.approx(value)
