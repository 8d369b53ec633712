"""The client copy read a buffer at a time (pure): a lost connection's payload segments (an
upload that is no service's requests, all writes until its next SYN) are read in place,
never copied, and counted in runs; bare ACKs (no payload, no SYN, no RST) are only counted;
every other frame goes to the core one by one.

Measured on a synthetic upload (1448-byte segments, the decoding included): 2.3-2.5 us a
client frame one by one, 1.1 us in runs.
"""

from __future__ import annotations

from collections.abc import Callable

from colopp.compare.counters import Counters
from colopp.compare.held import ClientAwarePolicy
from colopp.compare.packet import RST, SYN, TCP
from colopp.compare.spans import Span, plain_tcp
from colopp.compare.verdict import Action

#: (src, dst, sport, dport) of the client's frames of one connection.
Quad = tuple[int, int, int, int]


def feed_client_runs(
    feed_client: Callable[[bytes, float, int], list[Action]],
    policy: ClientAwarePolicy,
    counters: Counters,
    buf: bytes,
    spans: list[Span],
    now: float,
) -> list[Action]:
    """Every frame of ``buf`` (``spans``) in order, as ``feed_client`` would take them one
    by one; the actions, in order."""
    out: list[Action] = []
    run_key: Quad | None = None  # the lost connection of the run
    run = 0
    for _, start, end, vnet in spans:
        fields = plain_tcp(buf, start, end, vnet)
        if fields is not None:
            src, dst, sport, dport, _, _, flags, size = fields
            if not size and not flags & (SYN | RST):
                # A bare ACK (or FIN): the classifier takes nothing from it and no read
                # grows (a download's client sends one every other segment).
                counters.client_frames_in += 1
                continue
            if not flags & (SYN | RST):
                key = (src, dst, sport, dport)
                if key == run_key:
                    run += 1
                    continue
                if run:
                    _lost_run(policy, counters, run_key, run, now)
                run_key, run = key, 0
                if policy.lost_writes((TCP, dst, src, dport, sport), 1, now):
                    counters.client_frames_in += 1
                    continue
                run_key = None
        if run:
            _lost_run(policy, counters, run_key, run, now)
        run_key, run = None, 0
        out += feed_client(buf[start:end], now, vnet)
    if run:
        _lost_run(policy, counters, run_key, run, now)
    return out


def _lost_run(
    policy: ClientAwarePolicy, counters: Counters, key: Quad | None, count: int, now: float
) -> None:
    """``count`` more segments of a lost connection (``key``, as the client sends)."""
    assert key is not None
    src, dst, sport, dport = key
    policy.lost_writes((TCP, dst, src, dport, sport), count, now)
    counters.client_frames_in += count
