"""Receipts from the secondary host (issue #22): the codec, the coverage rule, the log.

An early ACK may acknowledge client bytes the secondary *guest* has not acknowledged yet
only when the secondary *host* holds them (``colopp.compare.receipts``): a contiguous range
from at or below the guest's own ACK up to at least the ACK that leaves.
"""

from __future__ import annotations

from compare_actions import released
from compare_frames import CLIENT, GUEST, tcp_frame

from colopp.compare import Comparator, PreRelease, PreReleasePolicy
from colopp.compare.packet import TCP, FlowKey, Packet, parse_frame
from colopp.compare.prerelease import AckOnlyRule
from colopp.compare.receipts import (
    MAX_ENTRIES,
    Receipt,
    decode_receipts,
    encode_receipts,
    host_covers,
    is_receipt_frame,
)
from colopp.compare.shell import ComparatorShell, ShellOptions
from colopp.ingress.log import ClientLog

SEQ = 5_000  # the guest's
CSEQ = 4_294_960_000  # the client's: wraps during the tests
MSS = 1000


def _key() -> FlowKey:
    pkt = parse_frame(tcp_frame(SEQ, CSEQ))
    assert isinstance(pkt, Packet)
    return pkt.key


def _client(seq: int, size: int = MSS, flags: str = "AP") -> bytes:
    payload = bytes([seq % 251]) * size
    return tcp_frame(seq, SEQ, flags, payload, src=CLIENT, dst=GUEST, sport=40000, dport=80)


def _guest_ack(ack: int) -> bytes:
    return tcp_frame(SEQ, ack, "A")


def test_receipts_round_trip_and_split_into_frames() -> None:
    receipts = [Receipt((TCP, 1 + i, 2, 80, 40000 + i), i, i + 10) for i in range(MAX_ENTRIES + 3)]
    frames = encode_receipts(receipts)
    assert len(frames) == 2 and all(len(f) <= 1500 for f in frames)
    assert all(is_receipt_frame(f) for f in frames)
    assert [r for f in frames for r in decode_receipts(f) or []] == receipts
    v6 = Receipt((TCP, 0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 2, 80, 1), 7, 8)
    assert decode_receipts(encode_receipts([v6])[0], 0) == [v6]
    vnet = b"\0" * 12
    assert decode_receipts(vnet + frames[1], 12) == receipts[MAX_ENTRIES:]


def test_bad_receipt_frames_are_refused() -> None:
    frame = encode_receipts([Receipt(_key(), 1, 5)])[0]
    assert decode_receipts(frame[:-1]) is None
    assert decode_receipts(frame[:14] + b"XXXX" + frame[18:]) is None
    assert decode_receipts(tcp_frame(1)) is None
    assert not is_receipt_frame(tcp_frame(1))


def test_coverage_needs_no_hole_between_the_guest_and_the_host() -> None:
    assert host_covers(100, (100, 500), 500)
    assert host_covers(100, (40, 500), 300)
    assert not host_covers(100, (120, 500), 300)  # bytes 100..119: nobody holds them
    assert not host_covers(100, (100, 500), 501)
    assert not host_covers(None, (0, 500), 10)
    assert not host_covers(100, None, 10)
    assert host_covers(0xFFFFFF00, (0xFFFFFF00, 0x100), 0x80)  # across the wrap


def test_an_ack_leaves_early_once_the_host_holds_what_it_acknowledges() -> None:
    c = Comparator(policy=PreReleasePolicy([AckOnlyRule()]))
    out = c.feed_primary(_guest_ack(CSEQ), 0.0) + c.feed_secondary(_guest_ack(CSEQ), 0.0)
    assert len(released(out)) == 1
    ahead = _guest_ack(CSEQ + 4 * MSS)
    assert c.feed_primary(ahead, 0.1) == []  # the absolute rule: the guest has not acked
    assert c.feed_receipts([Receipt(_key(), CSEQ, CSEQ + 3 * MSS)], 0.11) == []  # too short
    assert c.feed_receipts([Receipt(_key(), CSEQ + MSS, CSEQ + 8 * MSS)], 0.12) == []  # hole
    out = c.feed_receipts([Receipt(_key(), CSEQ, CSEQ + 8 * MSS)], 0.13)
    assert out == [PreRelease([ahead])]
    assert c.counters.host_covered_frames == 1 and c.counters.host_receipts == 3
    # Compared later as usual: the secondary guest's ACK only accounts for it.
    assert c.feed_secondary(_guest_ack(CSEQ + 4 * MSS), 0.2) == []
    assert c.counters.held_frames == 0


def test_receipts_of_a_restarted_stream_promise_nothing() -> None:
    c = Comparator(policy=PreReleasePolicy([AckOnlyRule()]))
    c.feed_primary(_guest_ack(CSEQ), 0.0)
    c.feed_secondary(_guest_ack(CSEQ), 0.0)
    c.feed_receipts([Receipt(_key(), CSEQ, CSEQ + 8 * MSS)], 0.05)
    c.forget_receipts()  # the shell: the secondary's connection closed or reopened
    assert c.feed_primary(_guest_ack(CSEQ + 4 * MSS), 0.1) == []


def test_without_a_policy_receipts_release_nothing() -> None:
    c = Comparator()
    c.feed_primary(_guest_ack(CSEQ), 0.0)
    c.feed_secondary(_guest_ack(CSEQ), 0.0)
    assert c.feed_primary(_guest_ack(CSEQ + MSS), 0.1) == []
    assert c.feed_receipts([Receipt(_key(), CSEQ, CSEQ + 8 * MSS)], 0.1) == []


def test_the_log_promises_only_contiguous_bytes_and_frees_what_the_guest_acked() -> None:
    log = ClientLog()
    log.client_frame(tcp_frame(CSEQ - 1, 0, "S", src=CLIENT, dst=GUEST, sport=40000, dport=80))
    log.client_frame(_client(CSEQ))
    log.client_frame(_client(CSEQ + 2 * MSS))  # out of order: a hole at CSEQ + MSS
    assert log.receipts() == [Receipt(_key(), CSEQ, (CSEQ + MSS) & 0xFFFFFFFF)]
    log.client_frame(_client(CSEQ + MSS))
    assert log.receipts() == [Receipt(_key(), CSEQ, (CSEQ + 3 * MSS) & 0xFFFFFFFF)]
    log.guest_frame(_guest_ack(CSEQ + 2 * MSS))
    assert log.receipts() == []  # only the start moved: nothing new to promise
    assert log.unacked() == [_client(CSEQ + 2 * MSS)]
    log.client_frame(_client(CSEQ + 3 * MSS))
    assert log.receipts() == [
        Receipt(_key(), (CSEQ + 2 * MSS) & 0xFFFFFFFF, (CSEQ + 4 * MSS) & 0xFFFFFFFF)
    ]
    log.guest_frame(_guest_ack(CSEQ + 4 * MSS))
    assert log.settled() and log.bytes_kept == 0


def test_after_the_comparator_forgot_receipts_the_next_guest_ack_brings_one() -> None:
    log = ClientLog()
    log.client_frame(tcp_frame(CSEQ - 1, 0, "S", src=CLIENT, dst=GUEST, sport=40000, dport=80))
    log.client_frame(_client(CSEQ))
    log.client_frame(_client(CSEQ + MSS))
    assert log.receipts() == [Receipt(_key(), CSEQ, (CSEQ + 2 * MSS) & 0xFFFFFFFF)]
    log.receipts_forgotten()  # a checkpoint: the comparator dropped that receipt
    log.guest_frame(_guest_ack(CSEQ + MSS))
    assert log.receipts() == [
        Receipt(_key(), (CSEQ + MSS) & 0xFFFFFFFF, (CSEQ + 2 * MSS) & 0xFFFFFFFF)
    ]
    log.guest_frame(_guest_ack(CSEQ + 2 * MSS))
    assert log.receipts() == []  # once: later ACKs that move only the start bring none


def test_a_full_log_stops_promising_until_the_guest_acks_past_the_gap() -> None:
    log = ClientLog(max_bytes=2 * len(_client(CSEQ)))
    for n in range(4):
        log.client_frame(_client(CSEQ + n * MSS))
    assert log.frames_refused == 2
    assert log.receipts()[-1].end == (CSEQ + 2 * MSS) & 0xFFFFFFFF
    log.guest_frame(_guest_ack(CSEQ + 3 * MSS))  # the guest got them anyway
    log.client_frame(_client(CSEQ + 3 * MSS))
    log.client_frame(_client(CSEQ + 4 * MSS))
    assert log.receipts()[-1] == Receipt(
        _key(), (CSEQ + 3 * MSS) & 0xFFFFFFFF, (CSEQ + 5 * MSS) & 0xFFFFFFFF
    )


def test_a_reset_or_a_new_incarnation_forgets_the_connection() -> None:
    log = ClientLog()
    log.client_frame(_client(CSEQ))
    log.client_frame(tcp_frame(CSEQ + MSS, 0, "R", src=CLIENT, dst=GUEST, sport=40000, dport=80))
    assert log.unacked() == [] and log.bytes_kept == 0
    log.client_frame(_client(CSEQ))
    log.client_frame(tcp_frame(77, 0, "S", src=CLIENT, dst=GUEST, sport=40000, dport=80))
    assert log.unacked() == [] and log.bytes_kept == 0


def _shell(host_receipts: bool) -> ComparatorShell:
    from colopp.compare.addresses import parse_endpoint
    from colopp.compare.config import PreReleaseConfig

    return ComparatorShell(
        ShellOptions(
            primary_in=parse_endpoint("unix:/p"),
            secondary_in=parse_endpoint("listen:unix:/s"),
            outdev=parse_endpoint("unix:/o"),
            prerelease=PreReleaseConfig(rules=frozenset({"ack_only"})),
            host_receipts=host_receipts,
        )
    )


def test_the_shell_takes_receipts_on_the_secondary_stream_only_when_told() -> None:
    receipt = encode_receipts([Receipt(_key(), CSEQ, CSEQ + MSS)])[0]
    on, off = _shell(True), _shell(False)
    for shell in (on, off):
        shell.frames_received("secondary", [(_guest_ack(CSEQ), 0), (receipt, 0), (b"x" * 60, 0)])
    assert on.core.counters.host_receipts == 1
    assert off.core.counters.host_receipts == 0
    # Without the flag a receipt is one more unknown EtherType, dropped as before.
    assert (on.core.counters.secondary_dropped, off.core.counters.secondary_dropped) == (1, 2)
    bad = receipt[:-1]
    on.frames_received("secondary", [(bad, 0)])
    assert on.stats["bad_receipt_frames"] == 1
    from colopp.compare.__main__ import options_from_args

    base = ["--primary-in", "unix:/p", "--secondary-in", "unix:/s", "--outdev", "unix:/o"]
    assert options_from_args([*base, "--host-receipts"]).host_receipts
    assert not options_from_args(base).host_receipts
