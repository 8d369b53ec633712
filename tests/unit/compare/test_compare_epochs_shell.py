"""Issue #13 bug 2 at the process level: the comparator marks the primary's STOP on its QMP
monitor, so the secondary's output before it (the old epoch) never meets the primary's
output after the checkpoint, and its output between STOP and RESUME is the new epoch's."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from compare_fakes import TIMEOUT, Rig, connect_when_ready, read_frames, status_until
from compare_frames import tcp_frame

from colopp.compare.framing import FrameDecoder, encode_frames

SEQ, ACK = 1000, 7
D, T, N = b"D" * 100, b"T" * 100, b"N" * 100


async def scenario(tmp: Path, new_epoch_equal: bool) -> dict[str, object]:
    rig = Rig(tmp)
    await rig.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *rig.argv(), "--checkpoint-delay", "2000"
    )
    s_writer: asyncio.StreamWriter | None = None
    try:
        _, p_writer = await asyncio.wait_for(rig.primary.conn, TIMEOUT)
        out_reader, _ = await asyncio.wait_for(rig.outdev.conn, TIMEOUT)
        s_writer = await connect_when_ready(rig.listen_path)
        st = rig.status_path
        await status_until(st, lambda s: s["shell"]["qmp"] is True)
        dec = FrameDecoder(vnet_hdr=False)
        # The old epoch: both sent D; the secondary ran ahead with T.
        p_d = tcp_frame(SEQ, ACK, "AP", D)
        p_writer.write(encode_frames([p_d], 0))
        s_writer.write(encode_frames([tcp_frame(SEQ, ACK, "AP", D)], 0))
        s_writer.write(encode_frames([tcp_frame(SEQ + 100, ACK, "AP", T)], 0))
        assert await read_frames(out_reader, dec, 1) == [p_d]
        await status_until(st, lambda s: s["secondary_frames_in"] == 2)
        rig.qmp.event("STOP")
        await status_until(st, lambda s: s["shell"]["checkpoints_started"] == 1)
        # The new epoch's secondary resumes first and says N before RESUME is read.
        s_writer.write(encode_frames([tcp_frame(SEQ + 100, ACK, "AP", N)], 0))
        await status_until(st, lambda s: s["secondary_frames_in"] == 3)
        rig.qmp.event("RESUME")
        await status_until(st, lambda s: s["checkpoints_done"] == 1)
        p_next = tcp_frame(SEQ + 100, ACK, "AP", N if new_epoch_equal else T)
        p_writer.write(encode_frames([p_next], 0))
        if new_epoch_equal:
            assert await read_frames(out_reader, dec, 1) == [p_next]
        return await status_until(
            st, lambda s: s["primary_frames_in"] == 2 and s["held_frames"] == 1 - new_epoch_equal
        )
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), TIMEOUT)
        if s_writer is not None:
            s_writer.close()
            await s_writer.wait_closed()
        await rig.close()


def test_old_epoch_secondary_bytes_never_release_new_primary_output(tmp_path: Path) -> None:
    status = asyncio.run(scenario(tmp_path, new_epoch_equal=False))
    assert status["divergences"] == {"tcp_payload_mismatch": 1}
    assert status["released_frames"] == 1
    assert status["checkpoints_requested"] == 1


def test_new_epoch_output_read_between_stop_and_resume_matches(tmp_path: Path) -> None:
    status = asyncio.run(scenario(tmp_path, new_epoch_equal=True))
    assert status["checkpoints_requested"] == 0
    assert status["released_frames"] == 2
