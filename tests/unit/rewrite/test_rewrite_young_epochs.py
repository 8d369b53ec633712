"""The young tap's epoch boundary is the primary's STOP, not its RESUME (issue 18, session 6).

After a checkpoint the primary resumes and at once answers the SYN that waited during the
pause; the comparator reads that SYN-ACK before it processes QMP's RESUME event. Both guests
opened the connection after the load, so the secondary's ``filter-rewriter`` translates it:
the comparator must learn its offset and the secondary host must keep it.
"""

from __future__ import annotations

import asyncio

from rewrite_frames import GUEST_KEY, tcp

from colopp.compare.addresses import parse_endpoint
from colopp.compare.framing import DecodedFrame
from colopp.compare.shell import ComparatorShell, ShellOptions
from colopp.compare.young_send import YoungForwarder
from colopp.compare.young_tap import YoungTap
from colopp.rewrite.young import YoungOffsets
from colopp.rewrite.young_link import serve_young

SYN_ACK_P, SYN_ACK_S = tcp(1000, 77, "SA"), tcp(1500, 77, "SA")
CLIENT_ACK_ANSWERED = tcp(1001, 78, "PA", b"HTTP/1.1 200 OK\r\n")  # adoption proof


class Outdev:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)


async def _settled(forwarder: YoungForwarder) -> None:
    while forwarder._task is not None and not forwarder._task.done():
        await forwarder._task


async def _resume_read_late() -> None:
    young = YoungOffsets()
    server = await serve_young(young, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    ep = parse_endpoint("unix:/nonexistent")
    shell = ComparatorShell(ShellOptions(ep, ep, ep, young_to=("127.0.0.1", port)))
    shell._out = Outdev()  # type: ignore[assignment]
    assert shell.young is not None
    try:
        shell.checkpoint_started()  # STOP
        # The primary resumed and answered the SYN queued during the pause; the comparator
        # reads it before QMP's RESUME event.
        shell.frames_received("primary", [DecodedFrame(SYN_ACK_P, 0)])
        shell.signal_checkpoint_done()  # RESUME, processed late
        shell.frames_received("secondary", [DecodedFrame(SYN_ACK_S, 0)])
        shell.frames_received("primary", [DecodedFrame(CLIENT_ACK_ANSWERED, 0)])
        await _settled(shell.young)
        assert young.loaded == 1  # the "completed" message of that checkpoint
        assert young.live() == {GUEST_KEY: 500}
        assert shell.young.status()["straddled"] == 0
    finally:
        await shell.young.close()
        server.close()
        await server.wait_closed()


def test_an_opening_read_before_the_resume_event_is_still_learned_and_kept() -> None:
    asyncio.run(_resume_read_late())


def test_an_opening_the_primary_sent_before_the_stop_straddles_the_checkpoint() -> None:
    # The primary answered before its snapshot: after the load the secondary holds that
    # request socket with the primary's ISN; a secondary SYN-ACK read now pairs with nothing.
    tap = YoungTap()
    assert tap.primary(SYN_ACK_P) is None
    tap.checkpoint_started()
    assert tap.secondary(SYN_ACK_S) is None
    tap.checkpoint_completed()
    assert tap.primary(SYN_ACK_P) is None
    assert tap.learner.straddled == 2 and tap.epoch == 1


def test_the_secondarys_opening_voided_by_the_load_is_ignored() -> None:
    # The secondary answered before the checkpoint, the primary after it. The load voided
    # the secondary's ISN: a retransmission of it must not pair with the primary's.
    tap = YoungTap()
    assert tap.secondary(SYN_ACK_S) is None
    tap.checkpoint_started()
    assert tap.primary(SYN_ACK_P) is None
    tap.checkpoint_completed()
    assert tap.secondary(SYN_ACK_S) is None
    assert tap.learner.straddled == 1 and not tap.awaiting


def test_both_guests_answering_a_syn_left_in_the_snapshot_is_young() -> None:
    # Session 10 (port 56954 of bench/results-churn-s2-s9.json, 1 `straddled` opening at
    # that switchover): the secondary answered the SYN before it stopped, the primary's
    # guest had not processed it yet; after the load both guests answer it from the
    # snapshot, each with its own ISN. The secondary's filter-rewriter translates that
    # connection, so the record must carry it; before the fix it was ignored as straddling.
    fresh = tcp(9000, 77, "SA")
    for order in (("primary", "secondary"), ("secondary", "primary")):
        tap = YoungTap()
        assert tap.secondary(SYN_ACK_S) is None
        tap.checkpoint_started()
        frames = {"primary": SYN_ACK_P, "secondary": fresh}
        first = getattr(tap, order[0])(frames[order[0]])
        message = getattr(tap, order[1])(frames[order[1]])
        assert first is None and message is not None
        assert message.learned.delta == 8000 and message.learned.isn_client == 1000
        assert message.epoch == 1 and tap.awaiting == {GUEST_KEY: 1}
        assert tap.learner.straddled == 0 and tap.learner.reopened == 1


def test_offsets_learned_between_stop_and_resume_are_the_new_epochs() -> None:
    tap = YoungTap()
    tap.checkpoint_started()
    tap.primary(SYN_ACK_P)
    message = tap.secondary(SYN_ACK_S)
    assert message is not None and message.epoch == 1
    tap.checkpoint_completed()
    assert tap.epoch == 1  # the RESUME confirms the STOP's boundary, no second one
    assert tap.adoption(CLIENT_ACK_ANSWERED) == (GUEST_KEY, 1)


def test_a_resume_without_stop_is_the_boundary_itself() -> None:
    tap = YoungTap()  # no QMP monitor: SIGUSR1 only
    tap.primary(SYN_ACK_P)
    tap.secondary(SYN_ACK_S)
    tap.checkpoint_completed()
    assert tap.epoch == 1 and not tap.awaiting


async def _held_across_stop() -> None:
    # A secondary host that never answers: the old epoch's offset is unacknowledged.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    forwarder = YoungForwarder("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    try:
        forwarder.frames("primary", [DecodedFrame(SYN_ACK_P, 0)], now=0.0)
        forwarder.frames("secondary", [DecodedFrame(SYN_ACK_S, 0)], now=0.0)
        assert forwarder.holding(0.1)
        # The STOP closes the epoch, but until the secondary loaded the checkpoint the
        # offset is still needed if the primary dies now: its SYN-ACK stays held.
        forwarder.checkpoint_started()
        assert forwarder.holding(0.2)
        forwarder.checkpoint_completed()
        assert not forwarder.holding(0.3)
    finally:
        await forwarder.close()
        server.close()
        await server.wait_closed()


def test_an_old_epochs_offset_holds_output_until_the_checkpoint_completes() -> None:
    asyncio.run(_held_across_stop())
