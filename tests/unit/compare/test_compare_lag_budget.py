"""The pre-release lag budget (issue 15): nothing leaves early while the secondary lags more
than the budget behind the primary (backpressure), so a closed-loop client cannot drive the
primary ahead of a slow secondary until a write's answer waits for the whole backlog."""

from __future__ import annotations

from compare_actions import released
from compare_frames import CLIENT, GUEST, tcp_frame

from colopp.compare import Action, Comparator, PreRelease, PreReleaseConfig, build_policy
from colopp.compare.__main__ import options_from_args

G_SEQ = 5000
C_SEQ = 7000
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
GET = "GET /kv/a HTTP/1.1\r\n\r\n"


def comparator(budget_ms: int | None) -> Comparator:
    config = PreReleaseConfig(frozenset({"http_read"}), ("/kv/",), lag_budget_ms=budget_ms)
    policy = build_policy(config)
    assert policy is not None
    return Comparator(policy=policy)


def early(actions: list[Action]) -> list[bytes]:
    return [f for a in actions if isinstance(a, PreRelease) for f in a.frames]


def exchange(c: Comparator, i: int, now: float) -> tuple[bytes, list[Action]]:
    """Read ``i`` on its own connection: the client's GET, the secondary's ACK of it, then
    the primary's answer; returns the answer and the actions it caused."""
    port = 40000 + i
    c.feed_client(
        tcp_frame(C_SEQ, G_SEQ, "AP", GET.encode(), src=CLIENT, dst=GUEST, sport=port, dport=80),
        now,
    )
    end = C_SEQ + len(GET)
    c.feed_secondary(tcp_frame(G_SEQ, end, "A", dport=port), now)
    answer = tcp_frame(G_SEQ, end, "AP", ANSWER, dport=port)
    return answer, c.feed_primary(answer, now)


def test_reads_wait_while_the_secondary_lags_past_the_budget() -> None:
    c = comparator(50)
    first, out = exchange(c, 0, 0.0)
    assert early(out) == [first]  # its copy from the secondary has not come yet
    second, out = exchange(c, 1, 0.03)
    assert early(out) == [second]  # 30 ms behind: within the budget
    third, out = exchange(c, 2, 0.08)
    assert early(out) == []  # 80 ms behind: the client waits for the secondary
    assert c.counters.prerelease_lag_pauses == 1
    # The secondary catches up: the third answer is compared and released, not early.
    assert c.feed_secondary(first, 0.09) == [] and c.feed_secondary(second, 0.09) == []
    assert released(c.feed_secondary(third, 0.09)) == [third]
    fourth, out = exchange(c, 3, 0.1)
    assert early(out) == [fourth]  # back within the budget
    assert c.snapshot()["pre_release"]["lag_budget_s"] == 0.05


def test_no_budget_no_backpressure() -> None:
    c = comparator(None)
    exchange(c, 0, 0.0)
    third, out = exchange(c, 2, 5.0)
    assert early(out) == [third] and c.counters.prerelease_lag_pauses == 0


def test_the_budget_reaches_the_comparator_and_the_agent_sets_it() -> None:
    base = ["--primary-in", "unix:/p", "--secondary-in", "unix:/s", "--outdev", "unix:/o"]
    args = [*base, "--prerelease=auto", "--prerelease-read-prefix", "/kv/"]
    assert options_from_args(args).prerelease.lag_budget_ms is None
    opts = options_from_args([*args, "--prerelease-lag-budget-ms", "50"])
    assert opts.prerelease.lag_budget_ms == 50
