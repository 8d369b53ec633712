"""The relay's fast path (frames read in place, forwarded as they came) does what the
log and the ACK gate do on parsed packets, and sends the same bytes."""

from __future__ import annotations

import asyncio

from compare_frames import CLIENT, GUEST, arp_frame, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare.addresses import parse_endpoint
from colopp.compare.framing import FrameDecoder, encode_frame, encode_frames
from colopp.compare.receipts import decode_receipts
from colopp.ingress.ackgate import AckGate
from colopp.ingress.log import ClientLog
from colopp.ingress.options import RelayOptions
from colopp.ingress.relay import Relay
from colopp.ingress.side import RelaySide

MSS = 100
CSEQ, GSEQ = 1_000_000, 5_000


class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return None  # no socket: RelaySide.drain has nothing to read


def _relay(
    vnet: bool = False, interval: float = 0.0, lowering: bool = False
) -> tuple[Relay, dict[str, RelaySide]]:
    relay = Relay(
        RelayOptions(
            parse_endpoint("unix:/nonexistent/mirror"),
            parse_endpoint("listen:unix:/nonexistent/red0"),
            parse_endpoint("listen:unix:/nonexistent/red1"),
            parse_endpoint("unix:/nonexistent/comparator"),
            vnet_hdr=vnet,
            receipt_interval=interval,
            gate_lowering=lowering,
        )
    )
    sides = {}
    for name in ("mirror", "red0", "red1", "comparator"):
        side = RelaySide(relay, name, vnet)
        side.transport = _Transport()  # type: ignore[assignment]
        relay._sides[name] = side
        sides[name] = side
    return relay, sides


def _client(i: int, flags: str = "A", ack: int = GSEQ, port: int = 40000) -> bytes:
    return tcp_frame(
        CSEQ + i * MSS,
        ack,
        flags,
        bytes([i % 256]) * MSS,
        src=CLIENT,
        dst=GUEST,
        sport=port,
        dport=80,
    )


def _guest(ack_index: int, flags: str = "A", sent: int = 0, port: int = 40000) -> bytes:
    return tcp_frame(GSEQ, CSEQ + ack_index * MSS, flags, b"g" * sent, dport=port)


# One step: ("c", segment index, flags, ack offset, port) or ("g", ack index, flags, bytes
# sent, port), or ("x",): a frame that is not IPv4/TCP.
STEP = st.one_of(
    st.tuples(
        st.just("c"),
        st.integers(0, 12),
        st.sampled_from(["A", "AP", "FA", "S", "R", ""]),
        st.integers(0, 3 * MSS),
        st.sampled_from([40000, 40001]),
    ),
    st.tuples(
        st.just("g"),
        st.integers(0, 13),
        st.sampled_from(["A", "AP", "SA", "R", "FA"]),
        st.integers(0, MSS),
        st.sampled_from([40000, 40001]),
    ),
    st.tuples(st.just("x")),
)


def _frame(step: tuple) -> bytes:  # type: ignore[type-arg]
    if step[0] == "c":
        _, i, flags, ack_off, port = step
        return _client(i, flags, GSEQ + ack_off, port)
    if step[0] == "g":
        _, i, flags, sent, port = step
        return _guest(i, flags, sent, port)
    return arp_frame()


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, max_size=40), batch=st.integers(1, 5))
def test_fast_path_matches_the_parsed_path(steps: list, batch: int) -> None:  # type: ignore[type-arg]
    async def run() -> None:
        relay, sides = _relay()
        log, gate = ClientLog(), AckGate()
        to_guest: list[bytes] = []
        to_comparator: list[bytes] = []
        now = asyncio.get_running_loop().time()
        # Steps in batches of one kind each (a read of one stream brings several frames).
        groups: list[list[tuple]] = []  # type: ignore[type-arg]
        for step in steps:
            kind = "g" if step[0] == "g" else "c"
            if (
                groups
                and ("g" if groups[-1][0][0] == "g" else "c") == kind
                and len(groups[-1]) < batch
            ):
                groups[-1].append(step)
            else:
                groups.append([step])
        for group in groups:
            frames = [_frame(s) for s in group]
            if group[0][0] == "g":
                sides["red1"].data_received(encode_frames(frames))
                for f in frames:
                    log.guest_frame(f)
                    to_guest += [d for d, _ in gate.guest_frame(f)]
                to_comparator += frames
            else:
                sides["mirror"].data_received(encode_frames(frames))
                for f in frames:
                    log.client_frame(f)
                    to_guest += [d for d, _ in gate.client_frame(f, now)]
            to_comparator += [encode_frame(r)[4:] for r in _receipt_frames(log)]
        assert _frames(sides["red0"]) == to_guest
        assert _frames(sides["comparator"]) == to_comparator
        assert relay.log.unacked() == log.unacked()
        assert relay.log.bytes_kept == log.bytes_kept
        assert relay.gate.counters() == gate.counters()

    asyncio.run(run())


def _receipt_frames(log: ClientLog) -> list[bytes]:
    from colopp.compare.receipts import encode_receipts

    return encode_receipts(log.receipts())


def _frames(side: RelaySide) -> list[bytes]:
    assert isinstance(side.transport, _Transport)
    return [bytes(f.data) for f in FrameDecoder().feed(bytes(side.transport.data))]


def test_a_held_frame_waits_while_other_connections_pass_in_order() -> None:
    async def run() -> None:
        relay, sides = _relay()
        sides["red1"].data_received(encode_frames([_guest(0, sent=MSS, port=40001)]))
        ahead = _client(0, ack=GSEQ + 2 * MSS, port=40001)  # acknowledges unsent bytes
        before, after = _client(0), _client(1)
        sides["mirror"].data_received(encode_frames([before, ahead, after]))
        assert _frames(sides["red0"]) == [before, after]
        assert relay.gate.held_frames == 1
        sides["red1"].data_received(encode_frames([_guest(0, sent=2 * MSS, port=40001)]))
        assert _frames(sides["red0"]) == [before, after, ahead]
        assert relay.gate.held_frames == 0

    asyncio.run(run())


def test_frames_go_on_as_the_very_bytes_that_came_with_vnet_headers() -> None:
    async def run() -> None:
        relay, sides = _relay(vnet=True)
        vnet = bytes(range(12))
        client = [vnet + _client(i) for i in range(4)]
        stream = encode_frames(client, 12, vnet_hdr=True)
        sides["mirror"].data_received(stream[:50])  # any chunking
        sides["mirror"].data_received(stream[50:])
        assert isinstance(sides["red0"].transport, _Transport)
        assert bytes(sides["red0"].transport.data) == stream
        assert isinstance(sides["comparator"].transport, _Transport)
        held = FrameDecoder(vnet_hdr=True).feed(bytes(sides["comparator"].transport.data))
        receipts = [r for f in held for r in decode_receipts(f.data, f.vnet_hdr_len) or []]
        assert [(r.start, r.end) for r in receipts] == [(CSEQ, CSEQ + 4 * MSS)]
        sides["comparator"].transport.data.clear()
        ack = encode_frames([vnet + _guest(4)], 12, vnet_hdr=True)
        sides["red1"].data_received(ack)
        # As it came; no receipt after it (only the start of what the host holds moved).
        assert bytes(sides["comparator"].transport.data) == ack
        # The guest acknowledged all four: nothing kept, and the count says so (vnet
        # headers are not kept, so they must not be counted either).
        assert relay.log.unacked() == []
        assert relay.log.bytes_kept == 0

    asyncio.run(run())


def _receipts(side: RelaySide) -> list[tuple[int, int]]:
    return [(r.start, r.end) for f in _frames(side) for r in decode_receipts(f) or []]


def test_receipts_after_client_reads_are_spaced_by_the_interval() -> None:
    async def run() -> None:
        relay, sides = _relay(interval=0.05)
        comparator = sides["comparator"]
        sides["mirror"].data_received(encode_frames([_client(0)]))
        assert _receipts(comparator) == [(CSEQ, CSEQ + MSS)]  # the first goes at once
        sides["mirror"].data_received(encode_frames([_client(1)]))
        sides["mirror"].data_received(encode_frames([_client(2)]))
        assert _receipts(comparator) == [(CSEQ, CSEQ + MSS)]  # the next ones wait...
        assert relay._receipt_timer is not None
        await asyncio.sleep(0.1)
        # ... and go together, once the interval is over.
        assert _receipts(comparator) == [(CSEQ, CSEQ + MSS), (CSEQ, CSEQ + 3 * MSS)]
        assert relay.stats["receipt_frames"] == 2

    asyncio.run(run())


def test_guest_frames_take_pending_receipts_along() -> None:
    async def run() -> None:
        relay, sides = _relay(interval=10.0)
        sides["mirror"].data_received(encode_frames([_client(0)]))
        sides["mirror"].data_received(encode_frames([_client(1)]))
        assert relay._receipt_timer is not None
        ack = _guest(1)
        sides["red1"].data_received(encode_frames([ack]))
        frames = _frames(sides["comparator"])
        assert frames[1] == ack  # after the first receipt, in the guest frames' write
        assert [(r.start, r.end) for r in decode_receipts(frames[2]) or []] == [
            (CSEQ + MSS, CSEQ + 2 * MSS)
        ]
        assert relay._receipt_timer is None  # nothing left to wait for
        await relay.stop()

    asyncio.run(run())
