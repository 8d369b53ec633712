from hypothesis import given
from hypothesis import strategies as st

from colopp.controller.health import Beat, DetectorConfig, Health, SideDetector

CFG = DetectorConfig(hang_after=0.5, unreachable_after=0.5)


def test_exited_qemu_is_dead_at_once() -> None:
    det = SideDetector(CFG, 0.0)
    assert det.observe(Beat(0.05, True, vm_alive=False)) is Health.DEAD


def test_silent_qmp_is_hung_only_after_the_threshold() -> None:
    det = SideDetector(CFG, 0.0)
    assert det.observe(Beat(0.1, True, qmp_ok=True)) is Health.HEALTHY
    assert det.observe(Beat(0.3, True, qmp_ok=False)) is Health.HEALTHY
    assert det.observe(Beat(0.59, True, qmp_ok=False)) is Health.HEALTHY
    assert det.observe(Beat(0.6, True, qmp_ok=False)) is Health.HUNG


def test_a_qmp_answer_resets_the_hang_clock() -> None:
    det = SideDetector(CFG, 0.0)
    det.observe(Beat(0.4, True, qmp_ok=False))
    det.observe(Beat(0.45, True, qmp_ok=True))
    assert det.observe(Beat(0.9, True, qmp_ok=False)) is Health.HEALTHY


def test_unreachable_agent_after_threshold() -> None:
    det = SideDetector(CFG, 0.0)
    assert det.observe(Beat(0.2, False)) is Health.HEALTHY
    assert det.observe(Beat(0.5, False)) is Health.UNREACHABLE


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=50))
def test_answering_agents_with_live_qmp_are_never_judged(flags: list[tuple[bool, bool]]) -> None:
    det = SideDetector(CFG, 0.0)
    for i, _ in enumerate(flags):
        assert det.observe(Beat(0.05 * (i + 1), True, True, True)) is Health.HEALTHY


def test_a_restarting_agent_is_waited_for_within_its_notice_only() -> None:
    det = SideDetector(CFG, 0.0)
    assert det.observe(Beat(0.1, True, restarting_s=5.0)) is Health.HEALTHY
    assert det.observe(Beat(3.0, False)) is Health.HEALTHY  # the next agent is starting
    assert det.observe(Beat(5.2, False)) is Health.UNREACHABLE  # it never came back


def test_the_restart_notice_ends_with_the_first_beat_without_it() -> None:
    det = SideDetector(CFG, 0.0)
    det.observe(Beat(0.1, True, restarting_s=5.0))
    assert det.observe(Beat(0.5, True)) is Health.HEALTHY  # the new agent answered
    assert det.observe(Beat(1.1, False)) is Health.UNREACHABLE  # no notice any more
