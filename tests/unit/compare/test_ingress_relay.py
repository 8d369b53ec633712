"""The secondary host's relay over unix sockets, this test playing both QEMUs and the
comparator (issue #22): frames pass unchanged, receipts follow the guest frames."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from compare_fakes import TIMEOUT, FakeQemuSide, connect_when_ready, read_frames
from compare_frames import CLIENT, GUEST, tcp_frame
from relay_rig import relay_rig

from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.compare.receipts import decode_receipts, is_receipt_frame

SEQ, CSEQ, MSS = 5_000, 1_000_000, 500


def _client(index: int) -> bytes:
    payload = bytes([index]) * MSS
    return tcp_frame(
        CSEQ + index * MSS, SEQ, "AP", payload, src=CLIENT, dst=GUEST, sport=40000, dport=80
    )


async def scenario(tmp: Path) -> None:
    async with relay_rig(tmp) as rig:
        relay, m_writer, c_reader = rig.relay, rig.mirror, rig.comparator
        frames = [_client(i) for i in range(3)]
        m_writer.write(encode_frames(frames))
        assert await read_frames(rig.red0, FrameDecoder(), 3) == frames
        # What the host holds goes to the comparator at once, before any guest output.
        held = await read_frames(c_reader, FrameDecoder(), 1)
        assert [(r.start, r.end) for r in decode_receipts(held[0]) or []] == [
            (CSEQ, CSEQ + 3 * MSS)
        ]
        ack = tcp_frame(SEQ, CSEQ + MSS, "A")
        rig.red1.write(encode_frames([ack]))
        # The guest's ACK moved only the start of what the host holds: no new promise for
        # the comparator (the old receipt's start is below that ACK), so no receipt.
        assert await read_frames(c_reader, FrameDecoder(), 1) == [ack]
        more = _client(3)
        m_writer.write(encode_frames([more]))
        assert await read_frames(rig.red0, FrameDecoder(), 1) == [more]
        got = await read_frames(c_reader, FrameDecoder(), 1)
        assert is_receipt_frame(got[0])
        receipts = decode_receipts(got[0]) or []
        assert [(r.start, r.end) for r in receipts] == [(CSEQ + MSS, CSEQ + 4 * MSS)]
        assert relay.promote() == [*frames[1:], more]
        assert relay.stats["receipt_frames"] == 2


def test_the_relay_forwards_logs_and_follows_guest_frames_with_receipts(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(scenario(tmp_path), 3 * TIMEOUT))


def test_the_replayer_sends_again_until_the_promoted_guest_acknowledges() -> None:
    from colopp.ingress.log import ClientLog
    from colopp.ingress.replay import Replayer

    log = ClientLog()
    frames = [_client(i) for i in range(3)]
    for frame in frames:
        log.client_frame(frame)
    sent: list[bytes] = []
    replay = Replayer(log, sent.append, now=0.0, deadline_s=10.0)
    assert replay.tick(0.0) == 0.05 and sent == frames
    assert replay.tick(0.01) == 0.05 and len(sent) == 3  # not due yet
    replay.guest_frame(tcp_frame(SEQ, CSEQ + MSS, "A"))  # its window took one
    assert replay.tick(0.05) == pytest.approx(0.15) and sent[3:] == frames[1:]
    replay.guest_frame(tcp_frame(SEQ, CSEQ + 3 * MSS, "A"))
    assert replay.tick(0.2) is None and replay.rounds == 2


def test_the_replayer_gives_up_at_its_deadline() -> None:
    from colopp.ingress.log import ClientLog
    from colopp.ingress.replay import Replayer

    log = ClientLog()
    log.client_frame(_client(0))
    replay = Replayer(log, lambda f: None, now=0.0, deadline_s=1.0)
    at: float | None = 0.0
    while at is not None:
        at = replay.tick(at)
    assert replay.rounds == 5  # 0, 0.05, 0.15, 0.35, 0.75
    assert not log.settled()


def test_the_relay_command_line_is_checked() -> None:
    from colopp.errors import ConfigError
    from colopp.ingress.__main__ import parse_args

    ends = ["--mirror-from", "tcp:198.18.2.1:9003", "--output-to", "tcp:198.18.2.1:9004"]
    good = [*ends, "--mirror-to", "listen:unix:/r0", "--output-from", "listen:unix:/r1"]
    options, _ = parse_args(good)
    assert options.mirror_to.path == "/r0" and not options.mirror_from.listen
    with pytest.raises(ConfigError, match="listen"):
        parse_args([*ends, "--mirror-to", "unix:/r0", "--output-from", "listen:unix:/r1"])
    with pytest.raises(ConfigError, match="positive"):
        parse_args([*good, "--max-bytes", "0"])
    options, _ = parse_args([*good, "--read-prefix", "/kv/", "--resp-port", "6379"])
    assert options.read_prefixes == ("/kv/",) and options.resp_ports == (6379,)
    assert options.read_methods == ("GET", "HEAD")  # the comparator's default
    with pytest.raises(ConfigError, match="resp-port"):
        parse_args([*good, "--resp-port", "70000"])
    with pytest.raises(ConfigError, match="read-prefix"):
        parse_args([*good, "--read-prefix", "kv/"])


async def promote_scenario(tmp: Path) -> None:
    import json
    import signal
    import sys

    from compare_fakes import status_until

    mirror = FakeQemuSide(tmp / "mirror0.sock")
    comparator = FakeQemuSide(tmp / "secondary_in.sock")
    await mirror.start()
    await comparator.start()
    status = tmp / "ingress.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "colopp.ingress",
        "--mirror-from",
        f"unix:{mirror.path}",
        "--mirror-to",
        f"listen:unix:{tmp / 'red0.sock'}",
        "--output-from",
        f"listen:unix:{tmp / 'red1.sock'}",
        "--output-to",
        f"unix:{comparator.path}",
        "--status",
        str(status),
    )
    try:
        red0 = await connect_when_ready(tmp / "red0.sock")
        _, m_writer = await asyncio.wait_for(mirror.conn, TIMEOUT)
        m_writer.write(encode_frames([_client(0), _client(1)]))
        await status_until(status, lambda st: st["client_frames"] == 2)
        proc.send_signal(signal.SIGUSR1)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        final = json.loads(status.read_text())
        assert final["promoted"] and final["replay"] == {"frames": 2, "handed_over": False}
        red0.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await mirror.close()
        await comparator.close()


def test_sigusr1_promotes_and_reports_what_it_could_not_hand_over(tmp_path: Path) -> None:
    # Without --tap (no CAP_NET_RAW in the unit tier) nothing is handed over: said so.
    asyncio.run(asyncio.wait_for(promote_scenario(tmp_path), 3 * TIMEOUT))


async def gate_scenario(tmp: Path) -> None:
    # gate_lowering off: the gate holds (lowering: tests/unit/ingress).
    async with relay_rig(tmp, gate_lowering=False) as rig:
        relay = rig.relay
        assert relay._gate_timer is None  # nothing held: no timer wakes this host
        sent = tcp_frame(SEQ, CSEQ, "AP", b"x" * 10, sport=80, dport=40000)
        rig.red1.write(encode_frames([sent]))
        assert await read_frames(rig.comparator, FrameDecoder(), 1) == [sent]
        # The client acknowledges 100 bytes the secondary guest has not sent: held.
        ahead = tcp_frame(CSEQ, SEQ + 110, "A", src=CLIENT, dst=GUEST, sport=40000, dport=80)
        loop = asyncio.get_running_loop()
        start = loop.time()
        rig.mirror.write(encode_frames([ahead]))
        assert await read_frames(rig.red0, FrameDecoder(), 1) == [ahead]
        assert loop.time() - start >= 0.15  # released by the timer, max_wait later
        assert relay.gate.released_expired == 1 and relay._gate_timer is None


def test_the_gate_timer_runs_only_while_frames_are_held(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(gate_scenario(tmp_path), 3 * TIMEOUT))
