"""The relay over unix sockets holds client segments past the secondary guest's receive
window until the guest's ACK opens it (colopp/ingress/pacing.py), this test playing both
QEMUs and the comparator."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from compare_fakes import TIMEOUT, read_frames
from compare_frames import CLIENT, GUEST, ethernet, ipv4, tcp_frame
from relay_rig import relay_rig

from colopp.compare.framing import FrameDecoder, encode_frames

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
    async with relay_rig(tmp, window_pacing=pacing) as rig:
        # The guest's SYN-ACK (window scale 1), then its ACK with room for one segment.
        opening = [_guest_syn_ack(1), tcp_frame(SEQ, CSEQ, "A", window=MSS // 2)]
        rig.red1.write(encode_frames(opening))
        assert await read_frames(rig.comparator, FrameDecoder(), 2) == opening
        rig.mirror.write(encode_frames([_client(i) for i in range(3)]))
        before = await read_frames(rig.red0, FrameDecoder(), 1)
        if pacing:
            assert rig.relay.pacing is not None and rig.relay.pacing.held_frames == 2
        # The guest took the first segment and opens its window for two more.
        rig.red1.write(encode_frames([tcp_frame(SEQ, CSEQ + MSS, "A", window=MSS)]))
        after = await read_frames(rig.red0, FrameDecoder(), 3 - len(before))
        return before, after


def test_segments_past_the_guest_window_wait_until_its_ack_opens_it(tmp_path: Path) -> None:
    before, after = asyncio.run(asyncio.wait_for(pacing_scenario(tmp_path, True), 3 * TIMEOUT))
    assert before == [_client(0)]
    assert after == [_client(1), _client(2)]  # in order, once the window opened


def test_without_pacing_every_segment_goes_at_once(tmp_path: Path) -> None:
    before, after = asyncio.run(asyncio.wait_for(pacing_scenario(tmp_path, False), 3 * TIMEOUT))
    assert before + after == [_client(i) for i in range(3)]
