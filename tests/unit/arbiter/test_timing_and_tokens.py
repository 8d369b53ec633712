"""The lease safety arithmetic and fencing tokens (pure)."""

from __future__ import annotations

import pytest

from colopp.arbiter.timing import LeaseTiming
from colopp.arbiter.token import TokenGate
from colopp.errors import ConfigError, StaleToken


def test_default_timing_fences_before_the_lease_can_expire() -> None:
    t = LeaseTiming()
    # 3 s TTL, 1% drift each way: certainly alive 2.94 s after a renew is sent.
    assert t.guaranteed == pytest.approx(3 * 0.99 / 1.01)
    assert t.fence_after == pytest.approx(t.guaranteed - 0.5 - 0.05)
    assert t.fence_after + t.fence_budget + t.check_period < t.ttl
    assert t.margin == pytest.approx(t.ttl - t.fence_after)


def test_no_drift_still_keeps_the_fence_budget() -> None:
    t = LeaseTiming(drift=0.0)
    assert t.guaranteed == 3
    assert t.fence_after == pytest.approx(2.45)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"ttl": 1}, "at least 2s"),
        ({"renew_interval": 0}, "renew_interval must be positive"),
        ({"fence_budget": -1}, "fence_budget must be positive"),
        ({"drift": 0.6}, "drift bound"),
        ({"ttl": 2, "renew_interval": 1.0}, "too short: two renew attempts"),
        ({"ttl": 3, "fence_budget": 2.5}, "too short"),
    ],
)
def test_unsafe_timings_are_refused(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        LeaseTiming(**kwargs)  # type: ignore[arg-type]


def test_tokens_only_grow_per_protection() -> None:
    gate = TokenGate()
    gate.admit("web", 10)
    gate.admit("web", 10)  # the same holder again
    gate.admit("db", 3)  # another protection has its own sequence
    gate.admit("web", 12)
    with pytest.raises(StaleToken, match="11 is older than 12"):
        gate.admit("web", 11)
    assert gate.newest("web") == 12
    assert gate.newest("db") == 3
    assert gate.newest("other") == 0


@pytest.mark.parametrize("token", [0, -1, "12", 1.5, True, None])
def test_malformed_tokens_are_refused_without_changing_anything(token: object) -> None:
    gate = TokenGate()
    gate.admit("web", 5)
    with pytest.raises(ConfigError, match="positive integer"):
        gate.admit("web", token)
    assert gate.newest("web") == 5
