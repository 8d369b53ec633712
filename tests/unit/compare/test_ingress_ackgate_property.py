"""The ACK gate against a model of one secondary guest (issue #15): whatever the order of
guest output, client frames, clock ticks and checkpoints,

- a frame the gate passes at once or releases on guest output never acknowledges more than
  the secondary guest had sent (so its Linux does not discard it with its data);
- nothing is lost or duplicated, and each connection's frames keep their order;
- nothing waits longer than ``max_wait`` once :meth:`AckGate.due` is asked.
"""

from __future__ import annotations

from compare_frames import CLIENT, GUEST, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.ingress.ackgate import AckGate

GSEQ = 70_000
PORTS = (40000, 40001)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("guest"), st.sampled_from(PORTS), st.integers(0, 300)),
        st.tuples(st.just("client"), st.sampled_from(PORTS), st.integers(0, 900)),
        st.tuples(st.just("tick"), st.just(0), st.integers(1, 150)),
        st.tuples(st.just("checkpoint"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_the_gate_keeps_order_loses_nothing_and_never_passes_an_ack_of_unsent_bytes(
    steps: list[tuple[str, int, int]],
) -> None:
    gate = AckGate(max_wait=0.2)
    sent = dict.fromkeys(PORTS, 0)  # bytes each connection's guest sent (relative)
    known = dict.fromkeys(PORTS, False)  # has the gate seen that guest's output since a reset
    now, serial = 0.0, 0
    made: dict[int, list[bytes]] = {p: [] for p in PORTS}
    out: dict[int, list[bytes]] = {p: [] for p in PORTS}
    arrival: dict[bytes, float] = {}

    def deliver(frames: list[tuple[bytes, int]], checked: bool) -> None:
        for frame, vnet in frames:
            assert vnet == 0
            port = int.from_bytes(frame[34:36], "big")
            ack = int.from_bytes(frame[42:46], "big") - GSEQ
            if checked and known[port]:
                assert ack <= sent[port], "passed an ACK of bytes the guest has not sent"
            out[port].append(frame)

    for op, port, value in steps:
        if op == "guest":
            frame = tcp_frame(GSEQ + sent[port], 1000, "AP", b"g" * value, dport=port)
            sent[port] += value
            known[port] = True
            deliver(gate.guest_frame(frame), checked=True)
        elif op == "client":
            serial += 1
            payload = serial.to_bytes(4, "big")
            frame = tcp_frame(
                1000, GSEQ + value, "AP", payload, src=CLIENT, dst=GUEST, sport=port, dport=80
            )
            made[port].append(frame)
            arrival[frame] = now
            deliver(gate.client_frame(frame, now), checked=True)
        elif op == "tick":
            now += value / 1000
            deliver(gate.due(now), checked=False)
            for frames in made.values():
                for frame in frames:
                    if frame not in out[int.from_bytes(frame[34:36], "big")]:
                        assert now - arrival[frame] < 0.2 + 1e-9, "held past max_wait"
        else:
            known = dict.fromkeys(PORTS, False)
            deliver(gate.checkpoint(), checked=False)
    deliver(gate.checkpoint(), checked=False)
    assert out == made
    assert gate.held_frames == 0
