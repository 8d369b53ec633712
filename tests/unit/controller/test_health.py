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


# A QMP silence inside a checkpoint (the primary holds QEMU's big lock while it stops the VM
# and sends the device state; with the replication link cut, its main loop waits on the peer).
BOUND = CFG.checkpoint_silence_limit  # 2.5 s with the defaults


def test_the_flaky_partition_sequence_is_stalled_never_hung() -> None:
    """CI's test_partition: QMP stops answering at 0.3 s, 0.1 s into a checkpoint's stop."""
    det = SideDetector(CFG, 0.0)
    verdicts = [det.observe(Beat(t, True)) for t in (0.05, 0.1, 0.15, 0.2, 0.25)]
    t = 0.3
    while t < 2.25:
        verdicts.append(det.observe(Beat(t, True, qmp_ok=False, stalled_s=t - 0.2)))
        t = round(t + 0.05, 2)
    assert Health.HUNG not in verdicts
    assert verdicts[-1] is Health.STALLED  # stalled_s 2.0 at t = 2.2
    assert set(verdicts[:-1]) == {Health.HEALTHY}


def test_a_checkpoint_stall_beyond_the_bound_is_still_stalled() -> None:
    """STALLED is judged before HUNG: the checkpoint, not a hang, explains the silence."""
    det = SideDetector(CFG, 0.0)
    det.observe(Beat(0.1, True))
    assert det.observe(Beat(5.0, True, qmp_ok=False, stalled_s=4.95)) is Health.STALLED


def test_a_sigstop_outside_a_checkpoint_is_hung_after_hang_after() -> None:
    det = SideDetector(CFG, 0.0)
    det.observe(Beat(0.0, True))
    assert det.observe(Beat(0.45, True, qmp_ok=False)) is Health.HEALTHY
    assert det.observe(Beat(0.5, True, qmp_ok=False)) is Health.HUNG


def test_a_checkpoint_report_that_never_grows_does_not_excuse_silence_forever() -> None:
    """stalled_s stuck at 0.3 s (an agent whose checkpoint log stopped moving) while QMP is
    silent: no checkpoint; HUNG once the silence reaches the bound."""
    det = SideDetector(CFG, 0.0)
    det.observe(Beat(1.0, True))
    assert det.observe(Beat(1.0 + BOUND - 0.05, True, qmp_ok=False, stalled_s=0.3)) is (
        Health.HEALTHY
    )
    assert det.observe(Beat(1.0 + BOUND, True, qmp_ok=False, stalled_s=0.3)) is Health.HUNG


def test_a_silence_that_outlives_its_checkpoint_is_hung_at_hang_after() -> None:
    """The checkpoint ended (stalled_s back to 0) but QMP stays silent: a hang as usual."""
    det = SideDetector(CFG, 0.0)
    det.observe(Beat(0.1, True))
    assert det.observe(Beat(0.8, True, qmp_ok=False, stalled_s=0.5)) is Health.HEALTHY
    assert det.observe(Beat(0.85, True, qmp_ok=False)) is Health.HUNG


def test_the_bound_leaves_a_real_checkpoint_a_heartbeat_round_of_margin() -> None:
    """A checkpoint that stopped the VM a whole heartbeat round (0.2 s QMP bound + period)
    after the last QMP answer is STALLED before its silence reaches the bound."""
    det = SideDetector(CFG, 0.0)
    det.observe(Beat(0.0, True))
    stopped_at, t, verdict = 0.25, 0.25, Health.HEALTHY
    while verdict is Health.HEALTHY:
        t = round(t + 0.25, 2)
        verdict = det.observe(Beat(t, True, qmp_ok=False, stalled_s=t - stopped_at))
    assert verdict is Health.STALLED and t < BOUND


beats = st.lists(
    st.tuples(
        st.floats(0.01, 0.6),  # time since the previous beat
        st.booleans(),  # agent answered
        st.sampled_from([True, True, True, False]),  # VM alive
        st.booleans(),  # QMP answered
        st.one_of(st.just(0.0), st.floats(0.0, 3.0)),  # stalled_s
    ),
    max_size=40,
)


@given(beats)
def test_hung_only_after_the_silence_its_checkpoint_state_allows(
    sequence: list[tuple[float, bool, bool, bool, float]],
) -> None:
    """For any beats: HUNG only when QMP has been silent >= hang_after and the side is not
    in a checkpoint or the silence reached the bound; and a silence past the bound is
    always judged (HUNG or STALLED), never left healthy."""
    det = SideDetector(CFG, 0.0)
    at = last_qmp_ok = 0.0
    for gap, agent_ok, vm_alive, qmp_ok, stalled_s in sequence:
        at += gap
        verdict = det.observe(Beat(at, agent_ok, vm_alive, qmp_ok, stalled_s))
        if agent_ok and vm_alive and qmp_ok:
            last_qmp_ok = at
        silent = at - last_qmp_ok
        if verdict is Health.HUNG:
            assert not qmp_ok and silent >= CFG.hang_after
            assert stalled_s == 0 or silent >= BOUND
            assert stalled_s < CFG.stall_after
        if agent_ok and vm_alive and silent >= BOUND:
            assert verdict in (Health.HUNG, Health.STALLED)
