"""A client frame that runs ahead of the secondary goes on at once with its ACK lowered to
what the secondary sent; the client's own ACK follows, as a bare ACK, once the secondary's
output reaches it (``ackgate.py``, ``wire.py``)."""

from __future__ import annotations

import asyncio
import struct

from compare_frames import CLIENT, GUEST, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ingress_fastpath import CSEQ, GSEQ, MSS, _frames, _relay

from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.compare.packet import ACK, TCP, Packet, parse_frame
from colopp.ingress.wire import lower_ack, pure_ack


def _sum16(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _valid(frame: bytes, vnet: int = 0) -> bool:
    """Both checksums of an IPv4/TCP frame hold, and the IP length is the frame's."""
    ip = frame[vnet + 14 :]
    total = int.from_bytes(ip[2:4], "big")
    pseudo = ip[12:20] + bytes((0, TCP)) + (total - 20).to_bytes(2, "big")
    return (
        total == len(ip) and _sum16(ip[:20]) == 0xFFFF and _sum16(pseudo + ip[20:total]) == 0xFFFF
    )


def _client(i: int, ack: int, flags: str = "A", payload: bytes = b"GET /") -> bytes:
    return tcp_frame(CSEQ + i, ack, flags, payload, src=CLIENT, dst=GUEST, sport=40000, dport=80)


def test_lowering_keeps_the_checksum_right() -> None:
    frame = _client(0, GSEQ + 5000, "AP", b"x" * 333)
    for ack in (GSEQ, 0, 0xFFFFFFFF, GSEQ + 4999):
        out = lower_ack(frame, 0, ack)
        assert _valid(out)
        pkt = parse_frame(out)
        assert isinstance(pkt, Packet) and pkt.ack == ack
        assert out[:42] == frame[:42] and out[54:] == frame[54:]  # only ACK and checksum


def test_the_owed_ack_is_the_bare_ack_the_client_would_send() -> None:
    vnet = bytes(10)
    for flags, extra in (("AP", 0), ("FA", 1)):
        frame = vnet + _client(0, GSEQ + 100, flags, b"y" * 77)
        out = pure_ack(frame, 10, GSEQ + 900)
        assert _valid(out, 10)
        pkt = parse_frame(out, 10)
        assert isinstance(pkt, Packet)
        assert pkt.flags == ACK and pkt.payload_end == pkt.payload_start  # no payload
        assert (pkt.seq, pkt.ack) == (CSEQ + 77 + extra, GSEQ + 900)
        assert pkt.key == parse_frame(frame, 10).key  # type: ignore[union-attr]


def _guest(sent: int) -> bytes:
    return tcp_frame(GSEQ, CSEQ, "AP", b"g" * sent)


def test_a_frame_ahead_goes_at_once_lowered_and_the_ack_follows() -> None:
    async def run() -> None:
        relay, sides = _relay(lowering=True)
        sides["red1"].data_received(encode_frames([_guest(MSS)]))
        request = _client(0, GSEQ + 3 * MSS, "AP")  # the client got 3 MSS from the primary
        after = _client(5, GSEQ + 3 * MSS, "A", b"")  # its next frame, as far
        sides["mirror"].data_received(encode_frames([request, after]))
        got = _frames(sides["red0"])
        assert [parse_frame(f).ack for f in got] == [GSEQ + MSS, GSEQ + MSS]  # type: ignore[union-attr]
        assert all(_valid(f) for f in got)
        assert relay.gate.held_frames == 0 and relay.gate.lowered_frames == 2
        # The secondary sends on, not yet as far: nothing owed goes.
        sides["red1"].data_received(encode_frames([tcp_frame(GSEQ + MSS, CSEQ, "A", b"g" * MSS)]))
        assert len(_frames(sides["red0"])) == 2
        # As far as the client acknowledged: its ACK goes, after its newest frame.
        sides["red1"].data_received(
            encode_frames([tcp_frame(GSEQ + 2 * MSS, CSEQ, "A", b"g" * MSS)])
        )
        owed = _frames(sides["red0"])[2]
        pkt = parse_frame(owed)
        assert isinstance(pkt, Packet) and (pkt.seq, pkt.ack) == (CSEQ + 5, GSEQ + 3 * MSS)
        assert _valid(owed)
        assert relay.gate.counters()["gate_acks_sent"] == 1
        assert relay.gate.owed == {}

    asyncio.run(run())


def test_a_later_frame_as_far_pays_the_debt_and_a_checkpoint_forgets_it() -> None:
    async def run() -> None:
        relay, sides = _relay(lowering=True)
        sides["red1"].data_received(encode_frames([_guest(MSS)]))
        sides["mirror"].data_received(encode_frames([_client(0, GSEQ + 2 * MSS, "AP")]))
        assert relay.gate.owed
        sides["red1"].data_received(encode_frames([tcp_frame(GSEQ + MSS, CSEQ, "A", b"g" * MSS)]))
        assert not relay.gate.owed  # owed ACK sent: the secondary caught up
        sides["mirror"].data_received(encode_frames([_client(5, GSEQ + 4 * MSS, "A", b"")]))
        assert relay.gate.owed
        paid = _client(5, GSEQ + 2 * MSS, "A", b"")  # not ahead: goes as it came...
        sides["mirror"].data_received(encode_frames([paid]))
        assert relay.gate.owed  # ... but acknowledges less than owed: still owed
        relay.checkpoint()
        assert relay.gate.owed == {} and relay.gate.counters()["gate_acks_sent"] == 1

    asyncio.run(run())


def test_a_frame_whose_checksum_a_device_completes_is_lowered_with_its_checksum_field_kept() -> (
    None
):
    """A NEEDS_CSUM frame (an offloading client's GSO super-frame) carries only the
    pseudo-header's sum, which the ACK is not part of: lowered, that field stays as it was."""

    async def run() -> None:
        relay, sides = _relay(vnet=True, lowering=True)
        plain = bytes(12)
        needs_csum = b"\x01" + bytes(11)  # VIRTIO_NET_HDR_F_NEEDS_CSUM
        guest = plain + _guest(MSS)
        sides["red1"].data_received(encode_frames([guest], 12, vnet_hdr=True))
        ahead = needs_csum + _client(0, GSEQ + 3 * MSS, "AP")
        sides["mirror"].data_received(encode_frames([ahead], 12, vnet_hdr=True))
        transport = sides["red0"].transport
        assert transport is not None
        (sent,) = [f.data for f in FrameDecoder(vnet_hdr=True).feed(bytes(transport.data))]
        assert relay.gate.held_frames == 0 and relay.gate.lowered_frames == 1
        pkt = parse_frame(sent, 12)
        assert isinstance(pkt, Packet) and pkt.ack == GSEQ + MSS  # what the guest sent
        csum = slice(12 + 50, 12 + 52)  # the TCP checksum field (IPv4 without options)
        assert sent[csum] == ahead[csum] and sent[:12] == needs_csum
        assert sent[: 12 + 42] + sent[12 + 46 :] == ahead[: 12 + 42] + ahead[12 + 46 :]
        assert relay.gate.owed  # the client's own ACK follows once the guest sent as far

    asyncio.run(run())


def test_the_owed_ack_keeps_the_furthest_sequence_number() -> None:
    async def run() -> None:
        _, sides = _relay(lowering=True)
        sides["red1"].data_received(encode_frames([_guest(MSS)]))
        newer = _client(50, GSEQ + 2 * MSS, "AP", b"z" * 10)
        older = _client(0, GSEQ + 3 * MSS, "AP", b"z" * 10)  # a retransmission, later
        sides["mirror"].data_received(encode_frames([newer, older]))
        sides["red1"].data_received(
            encode_frames([tcp_frame(GSEQ + MSS, CSEQ, "A", b"g" * 2 * MSS)])
        )
        owed = parse_frame(_frames(sides["red0"])[-1])
        assert isinstance(owed, Packet)
        assert (owed.seq, owed.ack) == (CSEQ + 60, GSEQ + 3 * MSS)

    asyncio.run(run())


# One step: ("c", data index, ack offset, payload?) from the client, or ("g", bytes the
# secondary sent so far) from the secondary, on one connection.
LOWERING_STEP = st.one_of(
    st.tuples(st.just("c"), st.integers(0, 20), st.integers(0, 8 * MSS), st.booleans()),
    st.tuples(st.just("g"), st.integers(0, 8 * MSS)),
    st.tuples(st.just("k")),  # the secondary loaded a checkpoint
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(LOWERING_STEP, max_size=30))
def test_lowering_never_acks_unsent_bytes_and_loses_no_client_data(steps: list) -> None:  # type: ignore[type-arg]
    async def run() -> None:
        relay, sides = _relay(lowering=True)
        sent_end: int | None = None  # what the secondary sent, as the test knows it
        client_data: list[tuple[int, bytes]] = []
        seen = 0
        for step in steps:
            if step[0] == "c":
                _, i, ack_off, has_data = step
                payload = bytes([i]) * 10 if has_data else b""
                frame = _client(i * 10, GSEQ + ack_off, "AP" if has_data else "A", payload)
                sides["mirror"].data_received(encode_frames([frame]))
                if has_data:
                    client_data.append((CSEQ + i * 10, payload))
            elif step[0] == "g":
                sent = step[1]
                sides["red1"].data_received(
                    encode_frames([tcp_frame(GSEQ, CSEQ, "A", b"g" * sent)])
                )
                if sent_end is None or GSEQ + sent > sent_end:
                    sent_end = GSEQ + sent
            else:
                relay.checkpoint()
                sent_end = None
            out = _frames(sides["red0"])
            for frame in out[seen:]:
                pkt = parse_frame(frame)
                assert isinstance(pkt, Packet) and _valid(frame)
                if sent_end is not None and step[0] != "k":
                    assert pkt.ack <= sent_end  # never ahead of the secondary's output
            seen = len(out)
        delivered = [
            (p.seq, f[p.payload_start : p.payload_end])
            for f in _frames(sides["red0"])
            if isinstance(p := parse_frame(f), Packet) and p.payload_end > p.payload_start
        ]
        assert delivered == client_data  # every client byte, once, in order
        assert relay.gate.held_frames == 0

    asyncio.run(run())
