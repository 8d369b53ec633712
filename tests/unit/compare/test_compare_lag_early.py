"""Two lag bounds for a semi-active secondary with pre-release (issue 15, item 5): answers
that left early are off the clients' path, so the secondary may lag behind them up to
``max_lag_early``; an answer that still holds a client back (a write's) gets a checkpoint
once it has waited ``max_lag``."""

from __future__ import annotations

import pytest
from compare_actions import checkpoints
from compare_frames import CLIENT, GUEST, tcp_frame

from colopp.compare import (
    Action,
    Comparator,
    CompareConfig,
    PreRelease,
    PreReleaseConfig,
    build_policy,
)
from colopp.compare.__main__ import options_from_args
from colopp.errors import ConfigError

G_SEQ = 5000
C_SEQ = 7000
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def comparator(max_lag: float, early: float | None) -> Comparator:
    policy = build_policy(PreReleaseConfig(frozenset({"http_read"}), ("/kv/",)))
    assert policy is not None
    return Comparator(CompareConfig(max_lag=max_lag, max_lag_early=early), policy=policy)


def early_frames(actions: list[Action]) -> list[bytes]:
    return [f for a in actions if isinstance(a, PreRelease) for f in a.frames]


def exchange(c: Comparator, i: int, request: str, now: float) -> tuple[bytes, list[Action]]:
    """``request`` on connection ``i``: the client's bytes, the secondary's ACK of them
    (the secondary holds the request but has not answered: it lags), the primary's answer."""
    port = 40000 + i
    c.feed_client(
        tcp_frame(
            C_SEQ, G_SEQ, "AP", request.encode(), src=CLIENT, dst=GUEST, sport=port, dport=80
        ),
        now,
    )
    end = C_SEQ + len(request)
    c.feed_secondary(tcp_frame(G_SEQ, end, "A", dport=port), now)
    answer = tcp_frame(G_SEQ, end, "AP", ANSWER, dport=port)
    return answer, c.feed_primary(answer, now)


def test_early_answers_may_lag_longer_than_a_write_answer_waits() -> None:
    c = comparator(0.04, 1.0)
    read, out = exchange(c, 0, "GET /kv/a HTTP/1.1\r\n\r\n", 0.0)
    assert early_frames(out) == [read]
    # Only an early answer waits for the lagging secondary: no checkpoint before 1 s.
    assert checkpoints(c.tick(0.05)) == []
    assert checkpoints(c.tick(0.5)) == []
    _write, out = exchange(c, 1, "PUT /kv/b HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 0.5)
    assert early_frames(out) == []  # a write's answer waits for the comparison
    assert checkpoints(c.tick(0.53)) == []  # 30 ms: within max_lag
    assert checkpoints(c.tick(0.55)) == ["secondary_lag"]  # 50 ms: the secondary skips
    assert c.counters.divergences["secondary_lag"] == 1


def test_the_early_bound_still_holds() -> None:
    c = comparator(0.04, 1.0)
    exchange(c, 0, "GET /kv/a HTTP/1.1\r\n\r\n", 0.0)
    assert checkpoints(c.tick(0.99)) == []
    assert checkpoints(c.tick(1.01)) == ["secondary_lag"]


def test_without_an_early_bound_every_frame_has_max_lag() -> None:
    c = comparator(0.04, None)
    exchange(c, 0, "GET /kv/a HTTP/1.1\r\n\r\n", 0.0)
    assert checkpoints(c.tick(0.03)) == []
    assert checkpoints(c.tick(0.05)) == ["secondary_lag"]


def test_the_early_bound_is_checked_and_parsed() -> None:
    with pytest.raises(ConfigError):
        CompareConfig(max_lag_early=1.0)  # needs max_lag
    with pytest.raises(ConfigError):
        CompareConfig(max_lag=0.5, max_lag_early=0.1)  # below max_lag
    with pytest.raises(ConfigError):
        CompareConfig(max_lag=0.5, max_lag_early=5.0)  # past the compare timeout
    base = ["--primary-in", "unix:/p", "--secondary-in", "unix:/s", "--outdev", "unix:/o"]
    config = options_from_args([*base, "--max-lag-ms", "40", "--max-lag-early-ms", "1500"]).config
    assert (config.max_lag, config.max_lag_early) == (0.04, 1.5)
    assert options_from_args(base).config.max_lag_early is None
