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


def late(c: Comparator) -> tuple[int, int, int]:
    k = c.counters
    return (k.late_unoffered, k.late_ack_refused, k.late_policy_refused)


def test_a_read_answer_waiting_for_the_secondary_ack_counts_as_ack_refused() -> None:
    c = comparator()
    c.feed_client(request(GET), 0.0)
    assert c.feed_primary(REPLY, 0.01) == []  # the secondary has not ACKed the request
    assert released(c.feed_secondary(REPLY, 0.02)) == [REPLY]  # its answer carries the ACK
    assert late(c) == (0, 1, 0)
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
    assert late(c) == (0, 0, 1)


def test_an_answer_whose_secondary_copy_came_first_was_never_offered() -> None:
    c = comparator()
    c.feed_client(request(GET), 0.0)
    assert c.feed_secondary(REPLY, 0.01) == []
    assert released(c.feed_primary(REPLY, 0.02)) == [REPLY]
    assert late(c) == (1, 0, 0)


def test_without_a_policy_nothing_is_counted() -> None:
    c = Comparator()
    c.feed_primary(REPLY, 0.0)
    assert released(c.feed_secondary(REPLY, 0.01)) == [REPLY]
    assert late(c) == (0, 0, 0)
