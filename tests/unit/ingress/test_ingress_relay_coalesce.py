"""Host B's relay over unix sockets sends the comparator the guest's data segments of one
read coalesced (``colopp/ingress/coalesce.py``), or as they came with ``coalesce=False``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from compare_fakes import TIMEOUT, read_frames
from compare_frames import tcp_frame
from relay_rig import relay_rig

from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.compare.packet import Packet, parse_frame

SEQ, ACK, MSS = 5_000, 1_000_000, 1448


def _segments(count: int) -> list[bytes]:
    return [tcp_frame(SEQ + i * MSS, ACK, "A", bytes([i]) * MSS, dport=40000) for i in range(count)]


async def scenario(tmp: Path, coalesce: bool) -> None:
    async with relay_rig(tmp, coalesce=coalesce, receipts=False) as rig:
        frames = _segments(10)
        rig.red1.write(encode_frames(frames))  # one write: one read at the relay
        want = 1 if coalesce else 10
        got = await read_frames(rig.comparator, FrameDecoder(), want)
        if not coalesce:
            assert got == frames
        else:
            pkt = parse_frame(got[0])
            assert isinstance(pkt, Packet)
            assert (pkt.seq, pkt.ack) == (SEQ, ACK)
            assert got[0][pkt.payload_start : pkt.payload_end] == b"".join(
                bytes([i]) * MSS for i in range(10)
            )
        assert rig.relay.stats["guest_frames"] == 10
        assert rig.relay.stats["coalesced_frames"] == 10 - want
        # Kept for a failover as the guest sent them, whatever the comparator got.
        assert rig.relay.keep.counters()["keep_segments"] == 10


@pytest.mark.parametrize("coalesce", [True, False])
def test_the_comparator_gets_one_segment_per_run(tmp_path: Path, coalesce: bool) -> None:
    asyncio.run(asyncio.wait_for(scenario(tmp_path, coalesce), 3 * TIMEOUT))
