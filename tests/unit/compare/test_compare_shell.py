"""The comparator process over real unix sockets, this test playing both QEMUs.

The test is the primary QEMU (chardev servers for primary_in and outdev) and the secondary
QEMU (a client of the comparator's secondary_in). Waits are on socket events with timeouts.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest
from compare_fakes import TIMEOUT, FakeQemuSide, connect_when_ready, read_frames, status_until
from compare_frames import CLIENT, GUEST, arp_frame, segments, tcp_frame

from colopp.compare.addresses import parse_endpoint
from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.compare.shell import ComparatorShell, ShellOptions

DATA = bytes(range(256)) * 8


async def scenario(tmp: Path, vnet: bool) -> None:
    primary = FakeQemuSide(tmp / "compare0.sock")
    outdev = FakeQemuSide(tmp / "compare_out.sock")
    await primary.start()
    await outdev.start()
    status_path = tmp / "status.json"
    args = [
        "-m",
        "colopp.compare",
        "--primary-in",
        f"unix:{primary.path}",
        "--outdev",
        f"unix:{outdev.path}",
        "--secondary-in",
        f"listen:unix:{tmp / 'red1.sock'}",
        "--status",
        str(status_path),
        "--status-interval",
        "0.05",
        "--compare-timeout",
        "60",
        *(["--vnet-hdr"] if vnet else []),
    ]
    proc = await asyncio.create_subprocess_exec(sys.executable, *args)
    writers: list[asyncio.StreamWriter] = []
    try:
        _, p_writer = await asyncio.wait_for(primary.conn, TIMEOUT)
        out_reader, _ = await asyncio.wait_for(outdev.conn, TIMEOUT)
        s_writer = await connect_when_ready(tmp / "red1.sock")
        writers += [p_writer, s_writer, outdev.conn.result()[1]]
        dec = FrameDecoder(vnet_hdr=vnet)
        vlen = 10 if vnet else 0
        hdr = bytes(vlen)

        # 1. Equal streams, different segmentation, plus an ARP that passes straight through.
        p = segments(DATA, [1448], seq=100, ack=7, vnet=hdr)
        s = segments(DATA, [300], seq=100, ack=7, vnet=hdr)
        arp = hdr + arp_frame()
        p_writer.write(encode_frames([arp, *p], vlen, vnet_hdr=vnet))
        s_writer.write(encode_frames(s, vlen, vnet_hdr=vnet))
        assert await read_frames(out_reader, dec, len(p) + 1) == [arp, *p]

        # 2. A difference: held, one checkpoint requested; SIGUSR1 = checkpoint done.
        bad_p = tcp_frame(100 + len(DATA), 7, "AP", b"primary", vnet=hdr)
        p_writer.write(encode_frames([bad_p], vlen, vnet_hdr=vnet))
        s_writer.write(
            encode_frames(
                [tcp_frame(100 + len(DATA), 7, "AP", b"secondary", vnet=hdr)], vlen, vnet_hdr=vnet
            )
        )
        await status_until(status_path, lambda st: st["checkpoints_requested"] == 1)
        proc.send_signal(signal.SIGUSR1)
        assert await read_frames(out_reader, dec, 1) == [bad_p]

        # 3. Garbage on the primary stream is counted, never fatal.
        p_writer.write(b"\xff\xff\xff\xff" * 4 + encode_frames([arp], vlen, vnet_hdr=vnet))
        assert await read_frames(out_reader, dec, 1) == [arp]
        status = await status_until(
            status_path, lambda st: st["shell"]["primary_framing_errors"] > 0
        )
        assert status["checkpoints_done"] == 1
        assert status["held_frames"] == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), TIMEOUT)
        await primary.close()
        await outdev.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
    assert code == 0
    assert stat.S_IMODE(os.stat(status_path).st_mode) == 0o600
    final = json.loads(status_path.read_text())
    assert final["released_frames"] == len(p) + 3


@pytest.mark.parametrize("vnet", [False, True], ids=["plain", "vnet_hdr"])
def test_shell_over_unix_sockets(tmp_path: Path, vnet: bool) -> None:
    asyncio.run(asyncio.wait_for(scenario(tmp_path, vnet), 3 * TIMEOUT))


G_SEQ, C_SEQ = 5000, 9000
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def client_segment(text: str, dport: int) -> bytes:
    """A client->guest segment (what the primary's filter-mirror copies to client_in)."""
    return tcp_frame(
        C_SEQ, G_SEQ, "AP", text.encode(), src=CLIENT, dst=GUEST, sport=dport, dport=80
    )


async def read_scenario(tmp: Path) -> None:
    """The shell drains the client copy before deciding on primary output: a write that
    reached the guest before a read's reply was produced always disarms that reply."""
    primary, outdev, client = (
        FakeQemuSide(tmp / name) for name in ("compare0.sock", "compare_out.sock", "c.sock")
    )
    for side in (primary, outdev, client):
        await side.start()
    status_path = tmp / "status.json"
    args = [
        *("-m", "colopp.compare", "--primary-in", f"unix:{primary.path}"),
        *("--outdev", f"unix:{outdev.path}", "--client-in", f"unix:{client.path}"),
        *("--secondary-in", f"listen:unix:{tmp / 'red1.sock'}", "--status", str(status_path)),
        *("--status-interval", "0.05", "--compare-timeout", "60"),
        *("--prerelease", "--prerelease-read-prefix", "/kv/"),
    ]
    proc = await asyncio.create_subprocess_exec(sys.executable, *args)
    s_writer: asyncio.StreamWriter | None = None
    try:
        _, c_writer = await asyncio.wait_for(client.conn, TIMEOUT)
        _, p_writer = await asyncio.wait_for(primary.conn, TIMEOUT)
        out_reader, _ = await asyncio.wait_for(outdev.conn, TIMEOUT)
        s_writer = await connect_when_ready(tmp / "red1.sock")
        dec = FrameDecoder(vnet_hdr=False)
        get = "GET /kv/a HTTP/1.1\r\nHost: g\r\n\r\n"
        end = C_SEQ + len(get)
        reply = tcp_frame(G_SEQ, end, "AP", REPLY)

        # 1. A read, acknowledged by the secondary: its reply leaves before the secondary's.
        c_writer.write(encode_frames([client_segment(get, 40000)], 0))
        await status_until(status_path, lambda st: st["client_frames_in"] == 1)
        s_writer.write(encode_frames([tcp_frame(G_SEQ, end, "A")], 0))
        await status_until(status_path, lambda st: st["secondary_frames_in"] == 1)
        p_writer.write(encode_frames([reply], 0))
        assert await read_frames(out_reader, dec, 1) == [reply]
        s_writer.write(encode_frames([reply], 0))

        # 2. A second read on another connection, then a write and that read's reply,
        #    written together: the write must be seen first, so the reply waits.
        get2 = client_segment(get, 40001)
        c_writer.write(encode_frames([get2], 0))
        s_writer.write(encode_frames([tcp_frame(G_SEQ, end, "A", dport=40001)], 0))
        await status_until(status_path, lambda st: st["secondary_frames_in"] == 3)
        put = "PUT /kv/b HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\n\r\nx"
        reply2 = tcp_frame(G_SEQ, end, "AP", REPLY, dport=40001)
        # Both must wait in their sockets when the shell wakes up, the reply first (so
        # that the order sockets become ready in would put it first).
        proc.send_signal(signal.SIGSTOP)
        p_writer.write(encode_frames([reply2], 0))
        c_writer.write(encode_frames([client_segment(put, 40002)], 0))
        await p_writer.drain()
        await c_writer.drain()
        proc.send_signal(signal.SIGCONT)
        await status_until(status_path, lambda st: st["primary_frames_in"] == 2)
        s_writer.write(encode_frames([reply2], 0))
        assert await read_frames(out_reader, dec, 1) == [reply2]
        final = await status_until(status_path, lambda st: st["held_frames"] == 0)
        assert final["pre_released_frames"] == 1
        assert final["pre_release"]["write_requests"] == 1
        assert final["shell"]["client_connected"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), TIMEOUT)
        for side in (primary, outdev, client):
            await side.close()
        if s_writer is not None:
            s_writer.close()
            await s_writer.wait_closed()
    assert proc.returncode == 0


def test_shell_follows_client_requests_for_reads(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(read_scenario(tmp_path), 3 * TIMEOUT))


async def stop_scenario(tmp: Path) -> None:
    """Output the primary wrote before it stopped for a checkpoint is flushed with that
    checkpoint, even when the comparator had not read it yet when the checkpoint ended."""
    primary, outdev = FakeQemuSide(tmp / "p.sock"), FakeQemuSide(tmp / "o.sock")
    await primary.start()
    await outdev.start()
    options = ShellOptions(
        primary_in=parse_endpoint(f"unix:{primary.path}"),
        secondary_in=parse_endpoint(f"listen:unix:{tmp / 's.sock'}"),
        outdev=parse_endpoint(f"unix:{outdev.path}"),
    )
    shell = ComparatorShell(options)
    task = asyncio.create_task(shell.run())
    try:
        _, p_writer = await asyncio.wait_for(primary.conn, TIMEOUT)
        out_reader, _ = await asyncio.wait_for(outdev.conn, TIMEOUT)
        frame = tcp_frame(100, 7, "AP", b"before the checkpoint")
        p_writer.write(encode_frames([frame], 0))  # in the socket now (empty buffer)
        # No await in between: the shell's loop has not read the frame.
        assert shell.core.counters.primary_frames_in == 0
        shell.checkpoint_started()
        shell.signal_checkpoint_done()
        counters = shell.core.counters
        assert (counters.primary_frames_in, counters.flushed_frames) == (1, 1)
        assert counters.held_frames == 0
        assert await read_frames(out_reader, FrameDecoder(vnet_hdr=False), 1) == [frame]
    finally:
        shell.stop()
        await asyncio.wait_for(task, TIMEOUT)
        await primary.close()
        await outdev.close()


def test_checkpoint_takes_output_written_before_the_stop(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(stop_scenario(tmp_path), 3 * TIMEOUT))
