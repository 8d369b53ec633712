"""The relay over unix sockets holds a client's Redis write on host B until the secondary
guest answered a read that came before it on another connection (colopp/ingress/fence.py),
this test playing both QEMUs and the comparator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from compare_fakes import TIMEOUT, read_frames
from compare_frames import CLIENT, GUEST, tcp_frame
from relay_rig import relay_rig

from colopp.compare.framing import FrameDecoder, encode_frames

GSEQ, CSEQ = 5_000, 1_000_000
GET = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
SET = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv2\r\n"
ANSWER = b"$2\r\nv1\r\n"


def _client(port: int, payload: bytes, seq: int = CSEQ) -> bytes:
    return tcp_frame(seq, GSEQ, "AP", payload, src=CLIENT, dst=GUEST, sport=port, dport=6379)


async def fence_scenario(tmp: Path, ports: tuple[int, ...]) -> tuple[list[bytes], list[bytes]]:
    """Returns what red0 got before and after the guest answered the read."""
    async with relay_rig(tmp, resp_ports=ports) as rig:
        read, write = _client(40001, GET), _client(40002, SET)
        rig.mirror.write(encode_frames([read, write]))
        decoder = FrameDecoder()
        before = await read_frames(rig.red0, decoder, 1 if ports else 2)
        if ports:
            fence = rig.relay.fence
            assert fence is not None and fence.held_frames == 1
        # The secondary guest answers the read.
        answer = tcp_frame(GSEQ, CSEQ + len(GET), "AP", ANSWER, sport=6379, dport=40001)
        rig.red1.write(encode_frames([answer]))
        after = await read_frames(rig.red0, decoder, 2 - len(before))
        return before, after


def test_a_write_waits_on_host_b_until_the_read_before_it_is_answered(tmp_path: Path) -> None:
    before, after = asyncio.run(asyncio.wait_for(fence_scenario(tmp_path, (6379,)), 3 * TIMEOUT))
    assert before == [_client(40001, GET)]
    assert after == [_client(40002, SET)]


def test_without_a_read_rule_there_is_no_fence(tmp_path: Path) -> None:
    before, after = asyncio.run(asyncio.wait_for(fence_scenario(tmp_path, ()), 3 * TIMEOUT))
    assert before == [_client(40001, GET), _client(40002, SET)] and after == []


async def flood_scenario(tmp: Path, bound: int) -> tuple[list[bytes], list[bytes], int]:
    """A read the guest never answers, then writes past the fence's byte bound."""
    async with relay_rig(tmp, resp_ports=(6379,)) as rig:
        fence = rig.relay.fence
        assert fence is not None
        fence.max_bytes = bound
        read = _client(40001, GET)
        writes, seq = [], CSEQ
        while sum(map(len, writes)) <= bound:
            payload = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n" + b"v" * 1000 + b"\r\n"
            writes.append(_client(40002, payload, seq))
            seq += len(payload)
        rig.mirror.write(encode_frames([read, *writes]))
        got = await read_frames(rig.red0, FrameDecoder(), 1 + len(writes))
        return got, [read, *writes], fence.counters()["fence_overflow"]


def test_writes_flooding_behind_an_unanswered_read_go_on_past_the_byte_bound(
    tmp_path: Path,
) -> None:
    got, sent, overflows = asyncio.run(
        asyncio.wait_for(flood_scenario(tmp_path, 20_000), 3 * TIMEOUT)
    )
    assert got == sent and overflows == 1
