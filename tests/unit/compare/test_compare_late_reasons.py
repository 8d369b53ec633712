"""Why an answer did not leave early: the comparator counts each payload frame released only
by its comparison under the reason of its last refused offer (issue 15: measure why reads
are not granted)."""

from __future__ import annotations

from compare_actions import released
from compare_frames import CLIENT, GUEST, tcp_frame

from colopp.compare import Comparator, PreReleaseConfig, build_policy

G_SEQ = 5000
C_SEQ = 7000
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def comparator() -> Comparator:
    policy = build_policy(PreReleaseConfig(frozenset({"http_read"}), ("/kv/",)))
    assert policy is not None
    return Comparator(policy=policy)


def request(text: str, seq: int = C_SEQ, dport: int = 40000) -> bytes:
    return tcp_frame(seq, G_SEQ, "AP", text.encode(), src=CLIENT, dst=GUEST, sport=dport, dport=80)


GET = "GET /kv/a HTTP/1.1\r\nHost: guest\r\n\r\n"
END = C_SEQ + len(GET)
REPLY = tcp_frame(G_SEQ, END, "AP", RESPONSE)


def late(c: Comparator) -> tuple[int, int, int, int]:
    k = c.counters
    return (k.matched_on_arrival, k.late_unoffered, k.late_ack_refused, k.late_policy_refused)


def test_a_read_answer_waiting_for_the_secondary_ack_counts_as_ack_refused() -> None:
    c = comparator()
    c.feed_client(request(GET), 0.0)
    assert c.feed_primary(REPLY, 0.01) == []  # the secondary has not ACKed the request
    assert released(c.feed_secondary(REPLY, 0.02)) == [REPLY]  # its answer carries the ACK
    assert late(c) == (0, 0, 1, 0)
    assert c.snapshot()["late_ack_refused"] == 1


def test_a_write_answer_counts_as_refused_by_the_policy() -> None:
    c = comparator()
    put = "PUT /kv/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nnew"
    end = C_SEQ + len(put)
    reply = tcp_frame(G_SEQ, end, "AP", RESPONSE)
    c.feed_client(request(put), 0.0)
    c.feed_secondary(tcp_frame(G_SEQ, end, "A"), 0.0)  # the secondary ACKed the PUT
    assert c.feed_primary(reply, 0.01) == []
    assert released(c.feed_secondary(reply, 0.02)) == [reply]
    assert late(c) == (0, 0, 0, 1)


def test_an_answer_whose_secondary_copy_came_first_did_not_wait() -> None:
    c = comparator()
    c.feed_client(request(GET), 0.0)
    assert c.feed_secondary(REPLY, 0.01) == []
    assert released(c.feed_primary(REPLY, 0.02)) == [REPLY]
    assert late(c) == (1, 0, 0, 0)


def test_an_answer_queued_behind_a_refused_one_counts_its_own_last_refusal() -> None:
    c = comparator()
    put = "PUT /kv/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nnew"
    end = C_SEQ + len(put)
    first = tcp_frame(G_SEQ, end, "AP", RESPONSE)
    second = tcp_frame(G_SEQ + len(RESPONSE), end, "AP", RESPONSE)
    c.feed_client(request(put), 0.0)
    c.feed_secondary(tcp_frame(G_SEQ, end, "A"), 0.0)
    assert c.feed_primary(first, 0.01) == []  # a write's answer: refused by the policy
    assert c.feed_primary(second, 0.02) == []  # behind it: not offered yet
    assert released(c.feed_secondary(first, 0.03)) == [first]
    assert released(c.feed_secondary(second, 0.04)) == [second]
    # Offered once it became the head (and refused: it answers the write too).
    assert late(c) == (0, 0, 0, 2)


def test_without_a_policy_nothing_is_counted() -> None:
    c = Comparator()
    c.feed_primary(REPLY, 0.0)
    assert released(c.feed_secondary(REPLY, 0.01)) == [REPLY]
    assert late(c) == (0, 0, 0, 0)


def test_a_lagging_secondary_gets_a_checkpoint_after_max_lag() -> None:
    from compare_actions import checkpoints

    from colopp.compare import CompareConfig

    c = Comparator(CompareConfig(max_lag=0.25))
    c.feed_primary(REPLY, 0.0)
    assert checkpoints(c.tick(0.2)) == []
    assert checkpoints(c.tick(0.3)) == ["secondary_lag"]
    assert c.counters.divergences["secondary_lag"] == 1
    # Off by default: only the compare timeout (3 s) would act.
    plain = Comparator()
    plain.feed_primary(REPLY, 0.0)
    assert checkpoints(plain.tick(0.3)) == []


def test_max_lag_is_checked_and_reaches_the_comparator() -> None:
    import pytest

    from colopp.compare import CompareConfig
    from colopp.compare.__main__ import options_from_args
    from colopp.errors import ConfigError

    with pytest.raises(ConfigError):
        CompareConfig(max_lag=0.0)
    with pytest.raises(ConfigError):
        CompareConfig(max_lag=5.0)  # beyond the compare timeout: meaningless
    base = ["--primary-in", "unix:/p", "--secondary-in", "unix:/s", "--outdev", "unix:/o"]
    assert options_from_args([*base, "--max-lag-ms", "250"]).config.max_lag == 0.25
    assert options_from_args(base).config.max_lag is None
