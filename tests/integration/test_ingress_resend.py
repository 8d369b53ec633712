"""Host B's relay sends the promoted guest's kept output out of its tap's bridge
(``colopp/ingress/resend.py``): real namespaces, a bridge with a tap (the guest's port) and
a veth to a client namespace, where an ``AF_PACKET`` socket reads what arrives. Plain frames
and frames with QEMU's virtio-net header (12 bytes, one asking the kernel to finish the
checksum) arrive in order, headers gone. (Seconds.)"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from colopp.lab.netlink import Rtnl, create_namespace, remove_namespace
from colopp.lab.plan import netns_argv

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "compare"))
from compare_frames import tcp_frame

HOST, CLIENT = f"clprs{os.getpid() % 10000}", f"clprc{os.getpid() % 10000}"

RECEIVER = """
import json, socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.bind(("cli1", 0))
sock.settimeout(20)
print("ready", flush=True)
want = int(sys.argv[1])
got = []
while len(got) < want:
    data, address = sock.recvfrom(65536)
    if b"resend-" in data:
        got.append(data.hex())
print(json.dumps(got), flush=True)
"""

SENDER = """
import json, sys
from colopp.ingress.resend import send_to_client
frames = [(bytes.fromhex(f), v) for f, v in json.loads(sys.argv[1])]
print(send_to_client("tap0", frames))
"""


@pytest.fixture
def bridged(needs_root: None) -> Iterator[None]:
    for name in (HOST, CLIENT):
        remove_namespace(name)
        create_namespace(name)
    try:
        with Rtnl(HOST) as host:
            host.add_bridge("br0")
            host.add_tap("tap0")
            host.set_master("tap0", "br0")
            host.add_veth("cli0", "cli1", CLIENT)
            host.set_master("cli0", "br0")
            for ifname in ("br0", "tap0", "cli0"):
                host.set_up(ifname)
        with Rtnl(CLIENT) as client:
            client.set_up("cli1")
        yield
    finally:
        for name in (HOST, CLIENT):
            remove_namespace(name)


def test_kept_frames_leave_by_the_bridge_in_order_without_their_vnet_header(
    bridged: None,
) -> None:
    plain = tcp_frame(1000, 1, "PA", b"resend-plain")
    vnet = tcp_frame(1012, 1, "PA", b"resend-vnet")
    # NEEDS_CSUM: csum_start 34 (Ethernet + IPv4), csum_offset 16 (TCP's checksum field).
    partial = struct.pack("<BBHHHHH", 1, 0, 0, 0, 34, 16, 1) + tcp_frame(
        1023, 1, "PA", b"resend-partial"
    )
    frames = [(plain, 0), (bytes(12) + vnet, 12), (partial, 12)]
    receiver = subprocess.Popen(
        netns_argv(CLIENT, [sys.executable, "-c", RECEIVER, str(len(frames))]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        sent = subprocess.run(
            netns_argv(
                HOST, [sys.executable, "-c", SENDER, json.dumps([(f.hex(), v) for f, v in frames])]
            ),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            cwd=Path(__file__).parents[2],
        )
        assert sent.stdout.strip() == "3", sent.stderr
        got = [bytes.fromhex(h) for h in json.loads(receiver.stdout.readline())]
    finally:
        receiver.kill()
        receiver.wait()
        if receiver.stdout is not None:
            receiver.stdout.close()
    assert got[0] == plain
    assert got[1] == vnet
    assert got[2][:50] == partial[12 : 12 + 50] and got[2].endswith(b"resend-partial")


def test_a_tap_on_no_bridge_sends_nothing_and_says_so(bridged: None) -> None:
    with Rtnl(HOST) as host:
        host.add_tap("lone0")
    sent = subprocess.run(
        netns_argv(
            HOST, [sys.executable, "-c", SENDER.replace("tap0", "lone0"), json.dumps([["00", 0]])]
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert sent.stdout.strip() == "0"
    assert "on no bridge" in sent.stderr
