"""The read rule sees what the guest saw (issue 13, bugs 4 and 5): a client segment the guest
dropped (bad checksum) does not hide the write sent in its place, a retransmission carrying
other bytes is a write, and losing the client copy disarms every read, even one seen before.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from compare_frames import CLIENT, GUEST, tcp_frame
from test_compare_shell import FakeQemuSide, connect_when_ready, read_frames, status_until

from colopp.compare import Action, Comparator, PreRelease, PreReleaseConfig, build_policy
from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.compare.http_reads import MAX_HEAD_BYTES

G_SEQ, C_SEQ = 5000, 9000
TIMEOUT = 10.0
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
RULES = frozenset({"retransmission", "ack_only", "http_read"})
# Two requests of the same length (42 bytes), as in the issue.
GET_Z = "GET /kv/z HTTP/1.1\r\nHost: guest-hostxx\r\n\r\n"
PUT_Z = "PUT /kv/z HTTP/1.1\r\nContent-Length:  0\r\n\r\n"
TCP_CSUM = 14 + 20 + 16  # offset of the TCP checksum in a plain frame


def early(actions: list[Action]) -> list[bytes]:
    return [f for a in actions if isinstance(a, PreRelease) for f in a.frames]


def comparator() -> Comparator:
    policy = build_policy(PreReleaseConfig(RULES, ("/kv/",)))
    assert policy is not None
    return Comparator(policy=policy)


def client(text: str, seq: int = C_SEQ, dport: int = 40000, vnet: bytes = b"") -> bytes:
    return tcp_frame(
        seq, G_SEQ, "AP", text.encode(), src=CLIENT, dst=GUEST, sport=dport, dport=80, vnet=vnet
    )


def corrupt_checksum(frame: bytes, at: int = TCP_CSUM) -> bytes:
    return frame[:at] + bytes([frame[at] ^ 0xFF]) + frame[at + 1 :]


def later_read_leaves_early(c: Comparator, dport: int = 40001) -> bool:
    """A GET on another connection, acknowledged by the secondary: does its reply go early?"""
    get = "GET /kv/a HTTP/1.1\r\nHost: g\r\n\r\n"
    end = C_SEQ + len(get)
    c.feed_client(client(get, dport=dport), 1.0)
    c.feed_secondary(tcp_frame(G_SEQ, end, "A", dport=dport), 1.0)
    reply = tcp_frame(G_SEQ, end, "AP", REPLY, dport=dport)
    return early(c.feed_primary(reply, 1.1)) == [reply]


def test_requests_are_the_same_length() -> None:
    assert len(GET_Z) == len(PUT_Z) == 42


def test_a_write_behind_a_dropped_segment_disarms_reads() -> None:
    c = comparator()
    c.feed_client(corrupt_checksum(client(GET_Z)), 0.0)  # the guest drops it
    c.feed_client(client(PUT_Z), 0.1)  # what the guest takes
    snap = c.snapshot()["pre_release"]
    assert snap["write_seen"] and snap["write_requests"] >= 1
    assert snap["bad_checksum_frames"] == 1
    assert not later_read_leaves_early(c)


def test_a_bad_ip_header_checksum_is_dropped_too() -> None:
    c = comparator()
    c.feed_client(corrupt_checksum(client(GET_Z), 14 + 10), 0.0)
    c.feed_client(client(PUT_Z), 0.1)
    assert c.snapshot()["pre_release"]["write_seen"]
    assert not later_read_leaves_early(c)


def test_a_retransmission_with_other_bytes_is_a_write() -> None:
    # Both copies valid: either may be the one the guest kept.
    c = comparator()
    c.feed_client(client(GET_Z), 0.0)
    c.feed_client(client(PUT_Z), 0.1)
    assert c.snapshot()["pre_release"]["write_seen"]
    assert not later_read_leaves_early(c)


def test_an_identical_retransmission_is_classified_once() -> None:
    c = comparator()
    c.feed_client(client(GET_Z), 0.0)
    c.feed_client(client(GET_Z), 0.1)
    snap = c.snapshot()["pre_release"]
    assert (snap["read_requests"], snap["write_requests"], snap["write_seen"]) == (1, 0, False)
    assert later_read_leaves_early(c)


def test_a_lost_connection_is_all_writes_until_its_next_syn() -> None:
    """Not HTTP (an iperf3 upload, say): classified once, then every segment is a write
    without its checksum read; a new connection on the same ports is classified afresh."""
    c = comparator()
    junk = "\x00" * (MAX_HEAD_BYTES + 1)  # no request head ends in it: lost
    c.feed_client(client(junk), 0.0)
    snap = c.snapshot()["pre_release"]
    assert snap["write_seen"] and snap["write_requests"] == 1
    more = C_SEQ + len(junk)
    c.feed_client(corrupt_checksum(client(junk[:100], more)), 0.1)  # not even checked
    c.feed_client(client(junk[:100], more + 100), 0.2)
    snap = c.snapshot()["pre_release"]
    assert (snap["write_requests"], snap["bad_checksum_frames"]) == (3, 0)
    c.checkpoint_done(0.3)
    syn = tcp_frame(C_SEQ - 1, 0, "S", src=CLIENT, dst=GUEST, sport=40000, dport=80)
    c.feed_client(syn, 0.4)
    c.feed_client(client(GET_Z), 0.5)
    snap = c.snapshot()["pre_release"]
    assert (snap["read_requests"], snap["write_requests"], snap["write_seen"]) == (1, 3, False)


def test_vnet_header_checksum_offload_is_trusted() -> None:
    # NEEDS_CSUM: the checksum field holds a partial sum the guest never checks.
    c = comparator()
    frame = corrupt_checksum(client(GET_Z, vnet=bytes([1]) + bytes(9)), TCP_CSUM + 10)
    c.feed_client(frame, 0.0, vnet_hdr_len=10)
    assert c.snapshot()["pre_release"]["read_requests"] == 1


def test_losing_the_client_copy_disarms_reads_seen_before() -> None:
    c = comparator()
    get = "GET /kv/a HTTP/1.1\r\nHost: g\r\n\r\n"
    end = C_SEQ + len(get)
    c.feed_client(client(get), 0.0)
    c.feed_secondary(tcp_frame(G_SEQ, end, "A"), 0.0)
    c.client_lost()
    reply = tcp_frame(G_SEQ, end, "AP", REPLY)
    assert early(c.feed_primary(reply, 0.1)) == []
    assert c.snapshot()["pre_release"]["client_lost"] is True
    c.checkpoint_done(0.2)  # a checkpoint does not bring the client copy back
    assert not later_read_leaves_early(c, dport=40002)


async def client_loss_scenario(tmp: Path) -> None:
    primary, outdev, copy = (
        FakeQemuSide(tmp / name) for name in ("compare0.sock", "compare_out.sock", "c.sock")
    )
    for side in (primary, outdev, copy):
        await side.start()
    status_path = tmp / "status.json"
    args = [
        *("-m", "colopp.compare", "--primary-in", f"unix:{primary.path}"),
        *("--outdev", f"unix:{outdev.path}", "--client-in", f"unix:{copy.path}"),
        *("--secondary-in", f"listen:unix:{tmp / 'red1.sock'}", "--status", str(status_path)),
        *("--status-interval", "0.05", "--compare-timeout", "60"),
        *("--prerelease", "--prerelease-read-prefix", "/kv/"),
    ]
    proc = await asyncio.create_subprocess_exec(sys.executable, *args)
    s_writer: asyncio.StreamWriter | None = None
    try:
        _, c_writer = await asyncio.wait_for(copy.conn, TIMEOUT)
        _, p_writer = await asyncio.wait_for(primary.conn, TIMEOUT)
        out_reader, _ = await asyncio.wait_for(outdev.conn, TIMEOUT)
        s_writer = await connect_when_ready(tmp / "red1.sock")
        get = "GET /kv/a HTTP/1.1\r\nHost: g\r\n\r\n"
        end = C_SEQ + len(get)
        c_writer.write(encode_frames([client(get)], 0))
        await status_until(status_path, lambda st: st["client_frames_in"] == 1)
        s_writer.write(encode_frames([tcp_frame(G_SEQ, end, "A")], 0))
        await status_until(status_path, lambda st: st["secondary_frames_in"] == 1)
        await copy.close()  # QEMU's client copy goes away
        await status_until(status_path, lambda st: st["shell"]["client_connected"] is False)
        reply = tcp_frame(G_SEQ, end, "AP", REPLY)
        p_writer.write(encode_frames([reply], 0))
        await status_until(status_path, lambda st: st["primary_frames_in"] == 1)
        # Held until the secondary's copy: it leaves compared, not early.
        s_writer.write(encode_frames([reply], 0))
        assert await read_frames(out_reader, FrameDecoder(vnet_hdr=False), 1) == [reply]
        final = await status_until(status_path, lambda st: st["held_frames"] == 0)
        assert final["pre_released_frames"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), TIMEOUT)
        for side in (primary, outdev):
            await side.close()
        if s_writer is not None:
            s_writer.close()
            await s_writer.wait_closed()
    status = json.loads(status_path.read_text())
    assert status["pre_release"]["client_lost"] is True


def test_shell_disarms_reads_when_client_in_closes(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(client_loss_scenario(tmp_path), 3 * TIMEOUT))
