"""Client frames that acknowledge bytes the secondary guest has not sent wait on host B
(issue #22, large reads with pre-release): Linux would discard them, with their data."""

from __future__ import annotations

from compare_frames import CLIENT, GUEST, tcp_frame

from colopp.ingress.ackgate import AckGate

GSEQ, CSEQ = 9_000, 1_000


def _guest(seq: int, size: int) -> bytes:
    return tcp_frame(seq, CSEQ, "AP", b"g" * size)


def _client(ack: int, payload: bytes = b"", dport: int = 80) -> bytes:
    flags = "AP" if payload else "A"
    return tcp_frame(CSEQ, ack, flags, payload, src=CLIENT, dst=GUEST, sport=40000, dport=dport)


def test_a_request_acknowledging_unsent_answer_bytes_waits_for_them() -> None:
    gate = AckGate()
    assert gate.guest_frame(_guest(GSEQ, 1000)) == []  # the secondary sent 1000 bytes
    ok = _client(GSEQ + 1000)
    assert gate.client_frame(ok, 0.0) == [(ok, 0)]
    early = _client(GSEQ + 3000)  # the primary's early bytes were acknowledged
    request = _client(GSEQ + 3000, b"GET /kv/k1 HTTP/1.1\r\n\r\n")
    assert gate.client_frame(early, 0.01) == []
    assert gate.client_frame(request, 0.02) == []
    assert gate.guest_frame(_guest(GSEQ + 1000, 1000)) == []  # 2000: not yet
    assert gate.guest_frame(_guest(GSEQ + 2000, 1000)) == [(early, 0), (request, 0)]
    assert gate.held_frames == 0 and gate.released_late == 2


def test_a_held_frame_goes_anyway_after_max_wait_and_order_is_kept() -> None:
    gate = AckGate(max_wait=0.2)
    gate.guest_frame(_guest(GSEQ, 1000))
    first, second = _client(GSEQ + 5000), _client(GSEQ + 1000)
    assert gate.client_frame(first, 0.0) == []
    assert gate.client_frame(second, 0.05) == []  # covered, but behind the first
    assert gate.due(0.1) == []
    assert gate.due(0.2) == [(first, 0), (second, 0)]
    assert gate.released_expired == 1 and gate.released_late == 1


def test_other_connections_and_unknown_ones_pass() -> None:
    gate = AckGate()
    gate.guest_frame(_guest(GSEQ, 1000))
    gate.client_frame(_client(GSEQ + 5000), 0.0)
    other = _client(GSEQ + 5000, dport=81)  # the secondary's output of it is unknown
    assert gate.client_frame(other, 0.0) == [(other, 0)]


def test_the_gate_is_bounded() -> None:
    gate = AckGate(max_frames=2)
    gate.guest_frame(_guest(GSEQ, 10))
    frames = [_client(GSEQ + 5000 + n) for n in range(3)]
    assert [gate.client_frame(f, 0.0) for f in frames] == [[], [], [(frames[2], 0)]]


def test_the_secondary_syn_ack_does_not_count_as_sent() -> None:
    """Its sequence number is the secondary guest's own (filter-rewriter translates only the
    segments after it): a secondary ISN far above the primary's made every later client
    ACK look covered, and the gate never held anything (seen in a capture on host B)."""
    gate = AckGate()
    gate.guest_frame(tcp_frame(GSEQ + 500_000, CSEQ, "SA"))  # the guest's own ISN
    gate.guest_frame(_guest(GSEQ, 208))  # rewritten into the client's sequence space
    request = _client(GSEQ + 416, b"GET /kv/k1 HTTP/1.1\r\n\r\n")
    assert gate.client_frame(request, 0.0) == []
    assert gate.guest_frame(_guest(GSEQ + 208, 208)) == [(request, 0)]


def test_a_checkpoint_forgets_what_the_old_secondary_sent_and_lets_everything_go() -> None:
    gate = AckGate()
    gate.guest_frame(_guest(GSEQ, 100))
    held = [_client(GSEQ + 300), _client(GSEQ + 300, b"GET /kv/k2 HTTP/1.1\r\n\r\n")]
    assert [gate.client_frame(f, 0.0) for f in held] == [[], []]
    assert gate.checkpoint() == [(f, 0) for f in held]
    assert gate.held_frames == 0 and gate.counters()["gate_released_checkpoint"] == 2
    assert gate.counters()["gate_checkpoints"] == 1
    # The new secondary (the primary's copy) sent what the primary sent: nothing known.
    later = _client(GSEQ + 900, b"GET /kv/k3 HTTP/1.1\r\n\r\n")
    assert gate.client_frame(later, 0.01) == [(later, 0)]
