"""``bench.bulk_relay_cost`` drives the real relay: its streams carry what they claim."""

from __future__ import annotations

from bench.bulk_relay_cost import measure, streams
from colopp.compare.framing import FrameDecoder
from colopp.compare.http_reads import checksums_ok
from colopp.compare.packet import Packet, parse_frame
from colopp.ingress.fence import WriteFence


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
    assert set(figures) == {"upload", "upload_fenced", "download"}
    assert all(us > 0 for by_batch in figures.values() for us in by_batch.values())


def test_the_fenced_upload_has_valid_checksums_and_loses_its_stream() -> None:
    """Its segments pass the read rule's checks, so the fence's cheap path is what runs."""
    mirror, _ = streams("upload_fenced", 16, 16)
    frames = [f.data for chunk in mirror for f in FrameDecoder().feed(chunk)]
    fence = WriteFence(("GET", "HEAD"), ("/kv/",))
    for frame in frames:
        pkt = parse_frame(frame)
        assert isinstance(pkt, Packet) and checksums_ok(frame, 14, pkt)
        assert not fence.offer(frame, 0, frame, 0.0)
    assert fence.classifier.bad_checksum_frames == 0
    key = (pkt.key[0], pkt.key[2], pkt.key[1], pkt.key[4], pkt.key[3])
    assert fence.classifier.lost_write(key)
