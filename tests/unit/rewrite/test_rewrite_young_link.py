"""Young offsets: learned from both guests' SYN-ACKs, carried to the secondary host."""

from __future__ import annotations

import asyncio
import json

import pytest
from rewrite_frames import GUEST_KEY, tcp

from colopp.compare.framing import DecodedFrame
from colopp.compare.young_send import YoungForwarder, YoungSender
from colopp.compare.young_tap import YoungTap, adopted_json
from colopp.errors import AgentError
from colopp.rewrite.young import YoungOffsets
from colopp.rewrite.young_link import handle_young_request, serve_young


def test_tap_learns_from_syn_acks_and_ignores_the_rest() -> None:
    tap = YoungTap()
    assert tap.primary(tcp(5, 6, "PA", b"data")) is None
    assert tap.primary(tcp(1000, 77, "SA")) is None
    message = tap.secondary(tcp(1500, 77, "SA"))
    assert message is not None
    assert message.learned.key == GUEST_KEY and message.learned.delta == 500
    assert message.epoch == 0
    assert message.to_json()["op"] == "young"


def test_tap_checkpoint_voids_half_learned_and_bumps_epoch() -> None:
    tap = YoungTap()
    tap.primary(tcp(1000, 77, "SA"))
    tap.checkpoint_completed()
    assert len(tap.learner) == 0
    assert tap.primary(tcp(2000, 77, "SA", port_client=40001)) is None
    message = tap.secondary(tcp(2600, 77, "SA", port_client=40001))
    assert message is not None and message.epoch == 1


def test_tap_same_isn_is_no_offset() -> None:
    tap = YoungTap()
    tap.primary(tcp(1000, 77, "SA"))
    assert tap.secondary(tcp(1000, 77, "SA")) is None


def test_tap_client_frames_and_garbage_pass() -> None:
    tap = YoungTap()
    assert tap.primary(b"") is None
    assert tap.primary(tcp(1, 0, "S", from_guest=False)[:30]) is None


@pytest.mark.parametrize(
    "line",
    [
        b"[]",
        b'{"op": "young", "epoch": -1}',
        b'{"op": "young", "epoch": 0, "guest": [1, 2], "peer": [3, 4], "delta": 0}',
        b'{"op": "what", "epoch": 0}',
        b"nope",
    ],
)
def test_bad_young_requests_change_nothing(line: bytes) -> None:
    young = YoungOffsets()
    reply = json.loads(handle_young_request(young, line, 1.0))
    assert reply["ok"] is False and len(young) == 0


def test_completed_prunes_and_counts_as_loaded() -> None:
    young = YoungOffsets()
    handle_young_request(
        young, b'{"op":"young","guest":[1,80],"peer":[2,9],"delta":4,"epoch":0}', 1.0
    )
    assert young.live() == {(1, 80, 2, 9): 4}
    handle_young_request(young, b'{"op":"completed","epoch":1}', 1.0)
    assert young.live() == {} and young.loaded == 1


async def _roundtrip() -> None:
    young = YoungOffsets()
    server = await serve_young(young, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = YoungSender("127.0.0.1", port)
    tap = YoungTap()
    tap.primary(tcp(1000, 77, "SA"))
    message = tap.secondary(tcp(1500, 77, "SA"))
    assert message is not None
    await sender.send(message)
    assert GUEST_KEY in young and young.live() == {}  # until the client took it
    await sender.send(adopted_json(GUEST_KEY, 0))
    assert young.live() == {GUEST_KEY: 500}
    with pytest.raises(AgentError):
        await sender.send({"op": "young", "epoch": 0})
    await sender.close()
    server.close()
    await server.wait_closed()
    with pytest.raises(AgentError):
        await YoungSender("127.0.0.1", port, timeout=0.5).send(message)


def test_sender_waits_for_the_secondary_hosts_ack() -> None:
    asyncio.run(_roundtrip())


async def _forwarded() -> None:
    young = YoungOffsets()
    server = await serve_young(young, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    forwarder = YoungForwarder("127.0.0.1", port)
    forwarder.frames("primary", [DecodedFrame(tcp(1000, 77, "SA"), 0)])
    forwarder.frames("secondary", [DecodedFrame(tcp(1500, 77, "SA"), 0)])
    forwarder.frames("primary", [DecodedFrame(tcp(1001, 78, "A"), 0)])  # the client took it
    assert forwarder._task is not None
    await forwarder._task
    assert young.live() == {GUEST_KEY: 500} and young.run == forwarder.run
    assert forwarder.status()["adopted"] == 1
    forwarder.checkpoint_completed()
    await forwarder._task
    assert young.live() == {} and young.loaded == 1
    # A restarted comparator (new run) starts over on the secondary host.
    again = YoungForwarder("127.0.0.1", port)
    again.frames("primary", [DecodedFrame(tcp(1, 77, "SA"), 0)])
    again.frames("secondary", [DecodedFrame(tcp(8, 77, "SA"), 0)])
    again.frames("secondary", [DecodedFrame(tcp(9, 78, "PA", b"x"), 0)])
    assert again._task is not None
    await again._task
    assert young.loaded == 0 and young.live() == {GUEST_KEY: 7}
    await forwarder.close()
    await again.close()
    server.close()
    await server.wait_closed()


def test_forwarder_ships_offsets_and_epochs_in_order() -> None:
    asyncio.run(_forwarded())


def test_syn_ack_straddling_a_checkpoint_is_never_young() -> None:
    # The secondary's SYN-ACK was sent before a checkpoint but read after it; the primary
    # then retransmits its SYN-ACK: the secondary is the primary's copy, no offset exists.
    tap = YoungTap()
    tap.primary(tcp(1000, 77, "SA"))
    tap.checkpoint_completed()
    assert tap.secondary(tcp(1500, 77, "SA")) is None
    assert tap.primary(tcp(1000, 77, "SA")) is None


def test_tap_reports_adoption_once_from_either_guest() -> None:
    tap = YoungTap()
    tap.primary(tcp(1000, 77, "SA"))
    assert tap.secondary(tcp(1500, 77, "SA")) is not None
    assert tap.adoption(tcp(1000, 77, "SA")) is None  # a SYN-ACK retransmission proves nothing
    assert tap.adoption(tcp(1001, 77, "R")) is None  # nor an RST
    assert tap.adoption(tcp(1001, 78, "A", port_client=40001)) is None  # another connection
    assert tap.adoption(tcp(1501, 78, "PA", b"hello")) == (GUEST_KEY, 0)  # the secondary answered
    assert tap.adoption(tcp(1001, 78, "A")) is None  # once
    assert not tap.awaiting


def test_tap_checkpoint_forgets_offsets_awaiting_adoption() -> None:
    tap = YoungTap()
    tap.primary(tcp(1000, 77, "SA"))
    tap.secondary(tcp(1500, 77, "SA"))
    tap.checkpoint_completed()
    assert tap.adoption(tcp(1001, 78, "A")) is None


def test_adopted_requests_mark_the_offset_and_bad_ones_change_nothing() -> None:
    young = YoungOffsets()
    young_line = b'{"op":"young","guest":[1,80],"peer":[2,9],"delta":4,"epoch":0,"adoption":true}'
    handle_young_request(young, young_line, 1.0)
    assert young.live() == {}
    for bad in (
        b'{"op":"adopted","guest":[1,80],"peer":[2],"epoch":0}',
        b'{"op":"young","guest":[1,80],"peer":[2,9],"delta":4,"epoch":0,"adoption":1}',
    ):
        assert json.loads(handle_young_request(young, bad, 1.0))["ok"] is False
    assert young.live() == {}
    reply = handle_young_request(
        young, b'{"op":"adopted","guest":[1,80],"peer":[2,9],"epoch":0}', 1.0
    )
    assert json.loads(reply)["ok"] is True
    assert young.live() == {(1, 80, 2, 9): 4}


def test_young_requests_carry_the_client_isn_for_pending_offsets() -> None:
    young = YoungOffsets()
    line = (
        b'{"op":"young","guest":[1,80],"peer":[2,9],"delta":4,"epoch":0,"adoption":true,"isn":77}'
    )
    assert json.loads(handle_young_request(young, line, 1.0))["ok"] is True
    assert young.pending() == {(1, 80, 2, 9): (4, 77)}
    bad = line.replace(b'"isn":77', b'"isn":-1')
    assert json.loads(handle_young_request(YoungOffsets(), bad, 1.0))["ok"] is False
    tap = YoungTap()
    tap.primary(tcp(1000, 77, "SA"))
    message = tap.secondary(tcp(1500, 77, "SA"))
    assert message is not None and message.to_json()["isn"] == 1000
