"""bench.fleet_dual's verdict over the cable watchers' frames, and its ARP probe frame."""

from __future__ import annotations

import struct

import pytest

from bench.fleet_dual import BIN_S, arp_request, mac_bytes, verdict

CUT = 100.0


def test_a_fenced_side_that_went_quiet_before_the_other_began_is_no_dual_primary() -> None:
    frames = {"hosta": [98.0, 99.5, 101.9], "hostb": [103.1, 103.2], "hostc": []}
    seen = verdict(frames, CUT, "hosta", "hostb")
    assert seen["dual_primary_observed"] is False
    assert seen["late_frames"] == 0 and seen["intervals_both"] == 0
    assert seen["frames_isolated_before_cut"] == 2
    assert seen["frames_isolated_after_cut"] == 1
    assert seen["cut_to_last_isolated_frame_s"] == pytest.approx(1.9)
    assert seen["cut_to_first_other_frame_s"] == pytest.approx(3.1)
    assert seen["frames_per_host"] == {"hosta": 3, "hostb": 2, "hostc": 0}


def test_one_frame_from_the_isolated_host_after_the_others_first_is_a_dual_primary() -> None:
    seen = verdict({"hosta": [99.0, 103.1], "hostb": [103.1]}, CUT, "hosta", "hostb")
    assert seen["dual_primary_observed"] is True
    assert seen["late_frames"] == 1 and seen["intervals_both"] == 1


def test_the_others_frames_before_the_cut_do_not_count() -> None:
    seen = verdict({"hosta": [100.5, 101.0], "hostb": [50.0]}, CUT, "hosta", "hostb")
    assert seen["dual_primary_observed"] is False
    assert seen["cut_to_first_other_frame_s"] is None


def test_intervals_both_counts_bins_with_frames_from_both_hosts() -> None:
    a = [CUT + 5 + (i + 0.2) * BIN_S for i in range(10)]
    b = [t + BIN_S / 2 for t in a[:4]]
    seen = verdict({"a": a, "b": b}, CUT, "a", "b")
    assert seen["late_frames"] == 9 and seen["intervals_both"] == 4  # a[0] came first


def test_the_probe_is_a_broadcast_arp_who_has_for_the_guest() -> None:
    mac = mac_bytes("52:54:00:c0:11:00")
    frame = arp_request(mac, "198.18.0.20", "198.18.0.100")
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac
    assert struct.unpack("!H", frame[12:14])[0] == 0x0806
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert frame[28:32] == bytes([198, 18, 0, 20]) and frame[38:42] == bytes([198, 18, 0, 100])
    with pytest.raises(ValueError):
        mac_bytes("52:54:00")
