"""The release rule as a property (issue #13): over random interleavings of one
connection's primary and secondary frames, segmented differently on each side, first seen
mid-stream or from its SYN, with checkpoints (STOP, maybe new-epoch secondary output, then
RESUME) at random points, a primary byte leaves only if

(a) the secondary's byte at the same stream offset, sent in the same epoch, was equal, or
(b) a checkpoint completed after the byte was first produced (read by the comparator, or
    below the primary's highest byte at that checkpoint: the guest's TCP had sent it, so
    it was part of the checkpointed state even if the comparator had not seen it yet)

(pre-release, the third way out, is off here); and equal streams never cause a checkpoint.

The model follows COLO: the secondary stops before the primary's STOP and everything it
sent before is read by then; after the checkpoint it continues from the primary's last
byte with the primary's state (an epoch); the primary is stopped between STOP and RESUME.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compare_frames import tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import Action, Checkpoint, Comparator, Release

SEQ = 0xFFFF_FE00  # crosses the 2**32 wrap
ACK = 777
HEADER = 54  # Ethernet + IPv4 + TCP without options, as compare_frames builds them


def cut(start: int, data: bytes, sizes: list[int]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        chunk = data[pos : pos + sizes[len(out) % len(sizes)]]
        out.append((start + pos, chunk))
        pos += len(chunk)
    return out


def flipped(data: bytes, flips: list[int]) -> bytes:
    out = bytearray(data)
    for at in flips:
        if out:
            out[at % len(out)] ^= 0x41
    return bytes(out)


@dataclass
class Oracle:
    """What was fed so far, and the property checked at every release."""

    data: bytes
    step: int = 0
    epoch: int = 0  # number of STOPs so far
    dones: list[tuple[int, int]] = field(default_factory=list)  # (step, primary's high)
    first_fed: dict[int, tuple[int, int]] = field(default_factory=dict)  # offset: (step, epoch)
    secondary: list[dict[int, int]] = field(default_factory=lambda: [{}])
    frames: dict[bytes, int] = field(default_factory=dict)  # primary frame: first offset
    checkpoints: list[str] = field(default_factory=list)

    def check(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Checkpoint):
                self.checkpoints.append(action.reason)
            if not isinstance(action, Release):
                continue
            for frame in action.frames:
                start = self.frames.get(frame)
                if start is None:
                    continue  # the SYN: no payload
                for off in range(start, start + len(frame) - HEADER):
                    born, epoch = self.first_fed[off]
                    if any(
                        (born < done or off < high) and done <= self.step
                        for done, high in self.dones
                    ):
                        continue  # (b)
                    theirs = self.secondary[epoch].get(off)
                    assert theirs == self.data[off], (off, epoch, theirs)  # (a)


@settings(max_examples=250, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=1200),
    p_sizes=st.lists(st.integers(1, 400), min_size=1, max_size=4),
    s_sizes=st.lists(st.integers(1, 400), min_size=1, max_size=4),
    syn=st.booleans(),
    fin=st.booleans(),
    differ=st.booleans(),
    fast=st.booleans(),
    draw=st.data(),
)
def test_release_rule_over_epochs(
    data: bytes,
    p_sizes: list[int],
    s_sizes: list[int],
    syn: bool,
    fin: bool,
    differ: bool,
    fast: bool,
    draw: st.DataObject,
) -> None:
    c = Comparator(fast_path=fast)
    oracle = Oracle(data)
    primary = cut(0, data, p_sizes)
    # Reordering on the primary side: neighbours swapped (with no SYN, the connection is
    # then first seen mid-stream at a later segment), and retransmissions.
    for i in draw.draw(st.lists(st.integers(0, max(0, len(primary) - 2)), max_size=3)):
        if i + 1 < len(primary):
            primary[i], primary[i + 1] = primary[i + 1], primary[i]
    if fin:
        primary.append((len(data), b""))
    flips = st.lists(st.integers(min_value=0), max_size=2) if differ else st.just([])

    def secondary_epoch(start: int) -> list[tuple[int, bytes]]:
        frames = cut(start, flipped(data[start:], draw.draw(flips)), s_sizes)
        if fin:
            frames.append((len(data), b""))
        for i in draw.draw(st.lists(st.integers(0, max(0, len(frames) - 2)), max_size=2)):
            if i + 1 < len(frames):
                frames[i], frames[i + 1] = frames[i + 1], frames[i]
        return frames

    s_queue = secondary_epoch(0)
    p_next = 0
    p_high = 0

    def feed_p(off: int, chunk: bytes) -> None:
        nonlocal p_high
        oracle.step += 1
        frame = tcp_frame(SEQ + off, ACK, "AP" if chunk else "AF", chunk)
        oracle.frames.setdefault(frame, off)
        for o in range(off, off + len(chunk)):
            oracle.first_fed.setdefault(o, (oracle.step, oracle.epoch))
        p_high = max(p_high, off + len(chunk))
        oracle.check(c.feed_primary(frame, oracle.step * 0.001))

    def feed_s(off: int, chunk: bytes) -> None:
        oracle.step += 1
        known = oracle.secondary[oracle.epoch]
        for i, byte in enumerate(chunk):
            known.setdefault(off + i, byte)
        flags = "AP" if chunk else "AF"
        oracle.check(c.feed_secondary(tcp_frame(SEQ + off, ACK, flags, chunk), oracle.step * 0.001))

    if syn:
        oracle.check(c.feed_primary(tcp_frame(SEQ - 1, ACK, "SA"), 0.0))
        oracle.check(c.feed_secondary(tcp_frame(SEQ - 1, ACK, "SA"), 0.0))
    for choice in draw.draw(st.lists(st.sampled_from("ppssrc"), max_size=40)):
        if choice == "p" and p_next < len(primary):
            feed_p(*primary[p_next])
            p_next += 1
        elif choice == "s" and s_queue:
            feed_s(*s_queue.pop(0))
        elif choice == "r" and p_next:
            feed_p(*primary[draw.draw(st.integers(0, p_next - 1))])  # a retransmission
        elif choice == "c":
            # The secondary stops: what it sent by then is read before the primary's STOP;
            # the rest of its old epoch is never sent.
            for _ in range(draw.draw(st.integers(0, len(s_queue)))):
                feed_s(*s_queue.pop(0))
            oracle.step += 1
            c.checkpoint_started(oracle.step * 0.001)
            oracle.epoch += 1
            oracle.secondary.append({})
            s_queue = secondary_epoch(p_high)
            # The secondary resumes first: some new-epoch output before RESUME is read.
            for _ in range(draw.draw(st.integers(0, min(2, len(s_queue))))):
                feed_s(*s_queue.pop(0))
            oracle.step += 1
            oracle.dones.append((oracle.step, p_high))
            oracle.check(c.checkpoint_done(oracle.step * 0.001))
    while p_next < len(primary) or s_queue:
        if p_next < len(primary) and (not s_queue or draw.draw(st.booleans())):
            feed_p(*primary[p_next])
            p_next += 1
        else:
            feed_s(*s_queue.pop(0))
    if not differ:
        assert oracle.checkpoints == []
        assert c.counters.held_frames == 0
