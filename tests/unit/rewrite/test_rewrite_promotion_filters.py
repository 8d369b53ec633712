"""A promoted secondary keeps translating (issue 18: young at failover N, broken at N+1).

QEMU's ``x-colo-lost-heartbeat`` on a secondary sends ``COLO_EVENT_FAILOVER`` to every filter;
the default handler (``net/filter.c``) sets ``status=off`` on every filter without a handler of
its own (``filter-redirector``, ``filter-mirror``); ``filter-rewriter`` keeps its state. A
small model of that, driven by the agent's promotion steps, must end with the translator's
four redirectors on, turned on right after the heartbeat.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from colopp.colo.sequence import QmpStep, secondary_failover
from colopp.rewrite.splice import FILTERS, promotion_steps

SECONDARY_FILTERS = {
    "f1": "filter-redirector",
    "f2": "filter-redirector",
    "rew0": "filter-rewriter",
}
TRANSLATOR = [fid for fid, _, _ in FILTERS]


def _qemu(steps: list[QmpStep], filters: dict[str, str]) -> tuple[dict[str, bool], list[int]]:
    """Filter id -> status after ``steps``; and, per step, how many translator filters are
    off after it."""
    on = dict.fromkeys(filters, True)
    off_after: list[int] = []
    for step in steps:
        args = step.arguments
        if step.command == "x-colo-lost-heartbeat":
            for fid, kind in filters.items():
                if fid in on and kind != "filter-rewriter":
                    on[fid] = False  # default_handle_event(COLO_EVENT_FAILOVER)
        elif step.command == "object-del":
            on.pop(args["id"], None)
        elif step.command == "qom-set" and args["property"] == "status":
            on[args["path"].removeprefix("/objects/")] = args["value"] == "on"
        off_after.append(sum(1 for fid in TRANSLATOR if fid in on and not on[fid]))
    return on, off_after


def _spliced() -> dict[str, str]:
    return SECONDARY_FILTERS | dict.fromkeys(TRANSLATOR, "filter-redirector")


def test_translator_filters_are_on_after_promotion() -> None:
    on, _ = _qemu(promotion_steps(secondary_failover(), spliced=True), _spliced())
    assert all(on[fid] for fid in TRANSLATOR)
    assert on["rew0"]


def test_translator_filters_come_back_right_after_the_heartbeat() -> None:
    steps = promotion_steps(secondary_failover(), spliced=True)
    _, off_after = _qemu(steps, _spliced())
    beat = [s.command for s in steps].index("x-colo-lost-heartbeat")
    # Off only between the heartbeat and the qom-sets that follow it at once.
    assert all(n == 0 for n in off_after[:beat])
    assert off_after[beat + len(TRANSLATOR)] == 0
    assert all(n == 0 for n in off_after[beat + len(TRANSLATOR) :])


def test_without_translator_the_failover_is_unchanged() -> None:
    assert promotion_steps(secondary_failover(), spliced=False) == secondary_failover()


@given(st.lists(st.sampled_from(["object-del", "nbd-server-stop", "announce-self"]), max_size=6))
def test_any_failover_sequence_ends_with_the_translator_on(extra: list[str]) -> None:
    base = [QmpStep(c, {"id": "f2"} if c == "object-del" else {}) for c in extra]
    steps = promotion_steps([*base, QmpStep("x-colo-lost-heartbeat"), *base], spliced=True)
    on, _ = _qemu(steps, _spliced())
    assert all(on[fid] for fid in TRANSLATOR)


def test_the_model_shows_the_bug_the_plain_failover_leaves_them_off() -> None:
    on, _ = _qemu(secondary_failover(), _spliced())
    assert not any(on[fid] for fid in TRANSLATOR)
