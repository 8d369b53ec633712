"""The relay over unix sockets holds client segments past the secondary guest's receive
window until the guest's ACK opens it (colopp/ingress/pacing.py), this test playing both
QEMUs and the comparator."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from compare_fakes import TIMEOUT, FakeQemuSide, connect_when_ready, read_frames
from compare_frames import CLIENT, GUEST, ethernet, ipv4, tcp_frame

from colopp.compare.addresses import parse_endpoint
from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.ingress.relay import Relay, RelayOptions

SEQ, CSEQ, MSS = 5_000, 1_000_000, 500


def _client(index: int) -> bytes:
    payload = bytes([index]) * MSS
    return tcp_frame(
        CSEQ + index * MSS, SEQ, "AP", payload, src=CLIENT, dst=GUEST, sport=40000, dport=80
    )


def _guest_syn_ack(scale: int) -> bytes:
    options = b"\x02\x04\x05\xb4\x01\x03\x03" + bytes([scale])
    header = struct.pack("!HHIIBBHHH", 80, 40000, SEQ - 1, CSEQ, 7 << 4, 0x12, 64240, 0, 0)
    return ethernet(ipv4(6, header + options, GUEST, CLIENT))


async def pacing_scenario(tmp: Path, pacing: bool) -> tuple[list[bytes], list[bytes]]:
    """Returns what red0 got before and after the guest's window opened."""
    mirror = FakeQemuSide(tmp / "mirror0.sock")
    comparator = FakeQemuSide(tmp / "secondary_in.sock")
    await mirror.start()
    await comparator.start()
    relay = Relay(
        RelayOptions(
            mirror_from=parse_endpoint(f"unix:{mirror.path}"),
            mirror_to=parse_endpoint(f"listen:unix:{tmp / 'red0.sock'}"),
            output_from=parse_endpoint(f"listen:unix:{tmp / 'red1.sock'}"),
            output_to=parse_endpoint(f"unix:{comparator.path}"),
            window_pacing=pacing,
        )
    )
    await relay.start()
    red0 = await asyncio.open_unix_connection(str(tmp / "red0.sock"))
    red1 = await connect_when_ready(tmp / "red1.sock")
    try:
        _, m_writer = await asyncio.wait_for(mirror.conn, TIMEOUT)
        c_reader, _ = await asyncio.wait_for(comparator.conn, TIMEOUT)
        # The guest's SYN-ACK (window scale 1), then its ACK with room for one segment.
        opening = [_guest_syn_ack(1), tcp_frame(SEQ, CSEQ, "A", window=MSS // 2)]
        red1.write(encode_frames(opening))
        assert await read_frames(c_reader, FrameDecoder(), 2) == opening
        m_writer.write(encode_frames([_client(i) for i in range(3)]))
        before = await read_frames(red0[0], FrameDecoder(), 1)
        if pacing:
            assert relay.pacing is not None and relay.pacing.held_frames == 2
        # The guest took the first segment and opens its window for two more.
        red1.write(encode_frames([tcp_frame(SEQ, CSEQ + MSS, "A", window=MSS)]))
        after = await read_frames(red0[0], FrameDecoder(), 3 - len(before))
        return before, after
    finally:
        await relay.stop()
        red0[1].close()
        red1.close()
        await mirror.close()
        await comparator.close()


def test_segments_past_the_guest_window_wait_until_its_ack_opens_it(tmp_path: Path) -> None:
    before, after = asyncio.run(asyncio.wait_for(pacing_scenario(tmp_path, True), 3 * TIMEOUT))
    assert before == [_client(0)]
    assert after == [_client(1), _client(2)]  # in order, once the window opened


def test_without_pacing_every_segment_goes_at_once(tmp_path: Path) -> None:
    before, after = asyncio.run(asyncio.wait_for(pacing_scenario(tmp_path, False), 3 * TIMEOUT))
    assert before + after == [_client(i) for i in range(3)]
