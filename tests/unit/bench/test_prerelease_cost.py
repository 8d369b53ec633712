"""bench.prerelease_cost: its frames are accepted by the read rule, every answer leaves early."""

from __future__ import annotations

from bench.prerelease_cost import downloads, requests, run, run_downloads


def test_every_answer_is_pre_released_and_cost_is_measured() -> None:
    frames = requests(64)
    assert run(frames, False) > 0
    assert run(frames, True) > 0  # asserts inside: every answer was pre-released


def test_downloads_pre_release_every_answer_segment_and_match_their_copy() -> None:
    items = downloads(8)
    assert all(len(item.primary) == 46 and len(item.secondary) == 2 for item in items)
    assert run_downloads(items, False) > 0  # asserts inside: no divergence, all released
    assert run_downloads(items, True) > 0  # and every answer segment left early
