"""The builtin comparator's offset learner against a model of QEMU's ``filter-rewriter``
(``net/filter-rewriter.c``, QEMU 11; docs/rewrite.md, "Comparators")."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from rewrite_frames import GUEST, GUEST_PORT, tcp

from colopp.compare.young_learn import Learned
from colopp.rewrite.rewriter_learn import RewriterLearner
from colopp.rewrite.table import MASK
from colopp.rewrite.young import YoungOffsets

CLIENT = 0xC6120002


def key(port: int) -> tuple[int, int, int, int]:
    return (GUEST, GUEST_PORT, CLIENT, port)


@dataclass
class _Conn:
    state: str = "closed"
    offset: int = 0
    synack_since_load: bool = False  # not filter-rewriter's: what makes its offset garbage
    garbage: bool = False


@dataclass
class FilterRewriterModel:
    """The part of filter-rewriter that learns offsets, transliterated from the C code."""

    conns: dict[int, _Conn] = field(default_factory=dict)

    def client(self, port: int, flags: str, ack: int) -> None:  # handle_primary_tcp_pkt
        conn = self.conns.setdefault(port, _Conn())
        if flags == "S":
            conn.state = "syn_received"
        elif flags == "A" and conn.state == "syn_received":
            conn.garbage = not conn.synack_since_load
            conn.offset = (conn.offset - (ack - 1)) & MASK
            conn.state = "established"

    def guest(self, port: int, flags: str, seq: int) -> None:  # handle_secondary_tcp_pkt
        conn = self.conns.setdefault(port, _Conn())
        if conn.state == "syn_received" and flags == "SA":
            conn.offset = seq
            conn.synack_since_load = True

    def checkpoint(self) -> None:  # COLO_EVENT_CHECKPOINT
        for conn in self.conns.values():
            conn.offset = 0
            conn.synack_since_load = False

    def translating(self) -> dict[tuple[int, int, int, int], int]:
        return {
            key(p): c.offset for p, c in self.conns.items() if c.state == "established" and c.offset
        }

    def true_offsets(self) -> dict[tuple[int, int, int, int], int]:
        """What the guest needs: filter-rewriter's offsets minus its garbage ones (learned
        from offset 0, i.e. with no secondary SYN-ACK since the SYN or the last load: the
        guest then is the loaded primary's copy and holds the ISN the client took)."""
        return {
            key(p): c.offset
            for p, c in self.conns.items()
            if c.state == "established" and c.offset and not c.garbage
        }


PORTS = st.integers(40000, 40005)
SEQ = st.integers(0, MASK)
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("syn"), PORTS, SEQ),
        st.tuples(st.just("synack"), PORTS, SEQ),
        st.tuples(st.just("ack"), PORTS, SEQ),
        st.tuples(st.just("load"), PORTS, SEQ),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(ACTIONS)
def test_the_record_holds_filter_rewriters_offsets_without_its_garbage(
    actions: list[tuple[str, int, int]],
) -> None:
    """Any sequence of handshake segments and checkpoint loads: the offsets the learner
    hands to the record (minus those a later load voided) are filter-rewriter's, except its
    garbage offsets (a handshake straddling a load), for which the guest needs none."""
    model, learner, young = FilterRewriterModel(), RewriterLearner(), YoungOffsets()
    now = 0.0
    for action, port, value in actions:
        now += 1.0
        if action == "syn":
            if model.conns.get(port, _Conn()).state == "established":
                continue  # a reused 4-tuple: not modelled (see the module doc)
            model.client(port, "S", 0)
            learner.client_frame(tcp(7, 0, "S", from_guest=False, port_client=port), 0, now)
        elif action == "synack":
            model.guest(port, "SA", value)
            learner.guest_frame(tcp(value, 8, "SA", port_client=port), 0, now)
        elif action == "ack":
            model.client(port, "A", value)
            got = learner.client_frame(
                tcp(8, value, "A", from_guest=False, port_client=port), 0, now
            )
            if got is not None:
                young.learned(got.learned.key, got.learned.delta, 0, got.at)
        else:
            model.checkpoint()
            learner.checkpoint_loaded(now)
            young.loaded_at(now)
    assert young.live() == model.true_offsets()


def test_an_offset_is_the_secondary_isn_minus_the_isn_the_client_saw() -> None:
    learner = RewriterLearner()
    assert learner.client_frame(tcp(7, 0, "S", from_guest=False), 0, 1.0) is None
    learner.guest_frame(tcp(5000, 8, "SA"), 0, 2.0)
    got = learner.client_frame(tcp(8, 1001, "A", from_guest=False), 0, 3.0)
    assert got is not None
    assert got.learned == Learned(key(40000), 4000)
    assert got.learned.isn_client == 1000
    assert got.at == 3.0
    assert len(learner) == 0 and learner.learned == 1


def test_a_syn_ack_read_after_the_load_is_the_loaded_guests_and_stays() -> None:
    """QMP's RESUME event is processed after frames the loaded guest already sent: only
    SYN-ACKs read at or before the RESUME stamp were zeroed by the load."""
    learner = RewriterLearner()
    learner.client_frame(tcp(7, 0, "S", from_guest=False), 0, 1.0)
    learner.guest_frame(tcp(5000, 8, "SA"), 0, 2.5)
    learner.checkpoint_loaded(2.0)  # RESUME at 2.0, read after the SYN-ACK
    got = learner.client_frame(tcp(8, 1001, "A", from_guest=False), 0, 3.0)
    assert got is not None and got.learned.delta == 4000
    assert learner.zeroed == 0


def test_a_handshake_straddling_a_load_records_no_garbage_offset() -> None:
    """filter-rewriter learns -(ack - 1) here (docs/rewrite.md, cause 4); the loaded guest
    holds the primary's ISN, which the client acknowledges: the record must carry nothing
    (promotion switches filter-rewriter off and applies the record)."""
    learner = RewriterLearner()
    learner.client_frame(tcp(7, 0, "S", from_guest=False), 0, 1.0)
    learner.guest_frame(tcp(5000, 8, "SA"), 0, 1.5)
    learner.checkpoint_loaded(2.0)
    assert learner.client_frame(tcp(8, 1001, "A", from_guest=False), 0, 3.0) is None
    assert learner.zeroed == 1 and learner.garbage == 1 and learner.learned == 0


def test_a_syn_ack_retransmitted_by_the_loaded_guest_heals_the_handshake() -> None:
    """The loaded guest's own SYN-ACK (the primary's ISN) sets filter-rewriter's offset
    again: the client's ACK then completes it to 0, nothing is recorded, no garbage."""
    learner = RewriterLearner()
    learner.client_frame(tcp(7, 0, "S", from_guest=False), 0, 1.0)
    learner.guest_frame(tcp(5000, 8, "SA"), 0, 1.5)
    learner.checkpoint_loaded(2.0)
    learner.guest_frame(tcp(1000, 8, "SA"), 0, 2.5)
    assert learner.client_frame(tcp(8, 1001, "A", from_guest=False), 0, 3.0) is None
    assert learner.garbage == 0


def test_equal_isns_need_no_offset_and_unrelated_frames_pass() -> None:
    learner = RewriterLearner()
    assert learner.client_frame(tcp(8, 1001, "A", from_guest=False), 0, 0.5) is None
    learner.client_frame(tcp(7, 0, "S", from_guest=False), 0, 1.0)
    learner.guest_frame(tcp(1000, 8, "SA"), 0, 2.0)
    assert learner.client_frame(tcp(8, 1001, "PA", b"x", from_guest=False), 0, 3.0) is None
    assert learner.client_frame(b"\x00" * 20, 0, 3.0) is None
    learner.guest_frame(b"\x00" * 60, 0, 3.0)
    assert learner.learned == 0 and len(learner) == 0


def test_open_handshakes_are_bounded() -> None:
    learner = RewriterLearner(max_pending=3)
    for port in range(40000, 40010):
        learner.client_frame(tcp(7, 0, "S", from_guest=False, port_client=port), 0, 1.0)
    assert len(learner) == 3
