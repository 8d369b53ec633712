"""``bench.bulk_relay_cost`` drives the real relay: its streams carry what they claim."""

from __future__ import annotations

from bench.bulk_relay_cost import measure, streams
from colopp.compare.framing import FrameDecoder
from colopp.compare.packet import Packet, parse_frame


def test_an_upload_is_client_segments_and_guest_acks() -> None:
    mirror, guest = streams("upload", 8, 4)
    client = [f.data for chunk in mirror for f in FrameDecoder().feed(chunk)]
    acks = [f.data for chunk in guest for f in FrameDecoder().feed(chunk)]
    assert len(mirror) == 2 and len(client) == 8 and len(acks) == 4
    last = parse_frame(acks[-1])
    first = parse_frame(client[0])
    assert isinstance(last, Packet) and isinstance(first, Packet)
    assert last.ack == first.seq + 8 * 1448  # the guest acknowledged every byte


def test_measure_gives_every_kind_and_batch() -> None:
    figures = measure(40, passes=1)
    assert set(figures) == {"upload", "download"}
    assert all(us > 0 for by_batch in figures.values() for us in by_batch.values())
