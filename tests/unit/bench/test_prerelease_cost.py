"""bench.prerelease_cost: its frames are accepted by the read rule, every answer leaves early."""

from __future__ import annotations

from bench.prerelease_cost import requests, run


def test_every_answer_is_pre_released_and_cost_is_measured() -> None:
    frames = requests(64)
    assert run(frames, False) > 0
    assert run(frames, True) > 0  # asserts inside: every answer was pre-released
