"""A client's write waits on host B until the secondary guest answered the reads before it
(colopp/ingress/fence.py): pure, with real frames (RESP on 6379, HTTP on 80)."""

from __future__ import annotations

from compare_frames import CLIENT, GUEST, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare.packet import TCP, FlowKey, Packet, parse_frame
from colopp.ingress.fence import CHECKPOINT_GRACE_S, MAX_PENDING_S, Pending, WriteFence
from colopp.ingress.log import ClientLog
from colopp.ingress.replay import Replayer


def resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n"
    for arg in args:
        out += f"${len(arg)}\r\n{arg}\r\n"
    return out.encode()


def fence() -> WriteFence:
    return WriteFence(("GET", "HEAD"), ("/kv/",), (6379,), http=True)


class Client:
    """One client connection to the guest's Redis (client port ``port``)."""

    def __init__(self, port: int, guest_port: int = 6379) -> None:
        self.port, self.guest_port = port, guest_port
        self.seq = 1000
        self.ack = 5000  # the client's view of the guest's stream
        self.guest_sent = 5000  # what the secondary guest sent

    @property
    def key(self) -> FlowKey:
        g = int.from_bytes(bytes(map(int, GUEST.split("."))), "big")
        c = int.from_bytes(bytes(map(int, CLIENT.split("."))), "big")
        return (TCP, g, c, self.guest_port, self.port)

    def send(self, payload: bytes, flags: str = "PA") -> tuple[Packet, bytes]:
        frame = tcp_frame(
            self.seq, self.ack, flags, payload,
            src=CLIENT, dst=GUEST, sport=self.port, dport=self.guest_port,
        )  # fmt: skip
        self.seq += len(payload)
        pkt = parse_frame(frame)
        assert isinstance(pkt, Packet)
        return pkt, frame

    def answered_early(self, size: int) -> None:
        """The client got ``size`` bytes of answer (the primary's, early)."""
        self.ack += size

    def guest_answer(self, size: int) -> tuple[FlowKey, int, int, int]:
        """The secondary guest sends ``size`` bytes: the fence's ``guest`` arguments."""
        seq = self.guest_sent
        self.guest_sent += size
        return self.key, 0x18, seq, size


def offer(f: WriteFence, c: Client, payload: bytes, now: float = 0.0) -> tuple[bool, bytes]:
    pkt, frame = c.send(payload)
    return f.client(pkt, frame, 0, frame, now), frame


def test_a_write_waits_until_an_earlier_read_on_another_connection_is_answered() -> None:
    f = fence()
    reader, writer = Client(40001), Client(40002)
    held, _ = offer(f, reader, resp("GET", "k"))
    assert not held and reader.key in f.pending  # reads never wait
    reader.answered_early(12)  # the primary's answer reached the client early
    held, frame = offer(f, writer, resp("SET", "k", "v2"))
    assert held and f.writes_held == 1
    held, behind = offer(f, writer, resp("GET", "k"))
    assert held  # behind the write on its connection: in order
    assert f.release(0.01) == []  # the read is still unanswered
    assert not f.guest(*reader.guest_answer(0))  # a bare ACK answers nothing
    assert f.guest(*reader.guest_answer(12))
    assert f.release(0.02) == [frame, behind]
    assert f.held_frames == 0 and f.released == 2
    assert writer.key in f.pending  # the read behind the write, delivered now, is pending


def test_the_guest_still_sending_the_previous_answer_does_not_answer_the_read() -> None:
    f = fence()
    reader, writer = Client(40001), Client(40002)
    reader.answered_early(12)  # the client has an early answer the guest has not sent yet
    offer(f, reader, resp("GET", "k"))
    assert offer(f, writer, resp("SET", "k", "v2"))[0]
    # The guest sends its copy of the previous answer: the read is not answered yet.
    assert not f.guest(*reader.guest_answer(12))
    assert f.release(0.01) == []
    assert f.guest(*reader.guest_answer(1))  # a byte past it: the read's answer began
    assert len(f.release(0.02)) == 1


def test_reads_and_writes_of_one_connection_never_wait_for_themselves() -> None:
    f = fence()
    c = Client(40001)
    assert not offer(f, c, resp("GET", "k"))[0]
    assert not offer(f, c, resp("SET", "k", "v"))[0]
    assert f.holds == 0


def test_writes_pass_when_no_read_is_pending_and_http_reads_count() -> None:
    f = fence()
    web, writer = Client(40001, 80), Client(40002)
    assert not offer(f, writer, resp("SET", "k", "v"))[0]
    assert not offer(f, web, b"GET /kv/a HTTP/1.1\r\nHost: g\r\n\r\n")[0]
    assert web.key in f.pending
    assert offer(f, writer, resp("SET", "k", "v"))[0]
    # A request outside the read prefixes is a write: not pending, and it may wait itself.
    other = Client(40003, 80)
    assert offer(f, other, b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")[0]


def test_a_pending_read_stops_counting_at_its_deadline_and_a_reset_ends_it() -> None:
    f = fence()
    reader, writer, third = Client(40001), Client(40002), Client(40003)
    offer(f, reader, resp("GET", "k"))
    held, frame = offer(f, writer, resp("SET", "k", "v"))
    assert held
    assert f.next_deadline() == MAX_PENDING_S
    assert f.release(MAX_PENDING_S - 0.01) == []
    assert f.release(MAX_PENDING_S) == [frame] and f.expired == 1
    offer(f, third, resp("GET", "x"), 1.0)
    assert offer(f, writer, resp("SET", "k", "v3"), 1.0)[0]
    pkt, rst = third.send(b"", "R")
    assert not f.client(pkt, rst, 0, rst, 1.0)
    assert len(f.release(1.0)) == 1 and not f.pending


def test_a_checkpoint_gives_a_pending_read_a_short_grace_only() -> None:
    f = fence()
    reader, writer = Client(40001), Client(40002)
    offer(f, reader, resp("GET", "k"))
    held, frame = offer(f, writer, resp("SET", "k", "v"))
    assert held
    assert f.checkpoint(0.1) == []
    assert f.next_deadline() == 0.1 + CHECKPOINT_GRACE_S
    assert f.release(0.1 + CHECKPOINT_GRACE_S) == [frame]
    assert f.expired == 0  # the grace ended it: not an expiry


def test_the_replay_keeps_a_fenced_write_behind_an_unanswered_read() -> None:
    f = fence()
    reader, writer = Client(40001), Client(40002)
    log = ClientLog()
    _, read = reader.send(resp("GET", "k"))
    log.client_frame(read, 0, parse_frame(read))
    pkt, write = writer.send(resp("SET", "k", "v"))
    log.client_frame(write, 0, pkt)
    f.pending[reader.key] = Pending(reader.ack, 1.0, False, None)
    assert f.client(pkt, write, 0, write, 0.0)
    pending, fenced = f.handover()
    assert fenced == {writer.key} and pending == {reader.key: reader.ack}
    sent: list[bytes] = []
    replayer = Replayer(log, sent.append, 0.0)
    replayer.keep_order(pending, fenced, 0.5)
    replayer.tick(0.0)
    assert write not in sent and read in sent
    answer = tcp_frame(reader.ack, reader.seq, "PA", b"$1\r\nv\r\n", sport=6379, dport=40001)
    replayer.guest_frame(answer)
    replayer.push(0.01)
    assert write in sent


def test_with_key_scope_only_resources_in_common_wait() -> None:
    f = WriteFence(("GET", "HEAD"), ("/kv/",), (6379,), http=True, scope="key")
    reader, writer, other = Client(40001), Client(40002), Client(40003)
    assert not offer(f, reader, resp("GET", "k"))[0]
    assert not offer(f, writer, resp("SET", "j", "v"))[0]  # another key: no wait
    held, write = offer(f, writer, resp("SET", "k", "v"))
    assert held  # the read of k is pending
    assert not offer(f, other, resp("GET", "j"))[0]  # touches no waiting write
    held, behind = offer(f, other, resp("GET", "k"))
    assert held  # would be answered from before the write: it queues behind it
    assert offer(f, other, resp("SET", "j", "w"))[0]  # behind on its connection
    f.guest(*reader.guest_answer(5))
    assert f.release(0.01)[:2] == [write, behind]
    # A command of unknown reach touches everything.
    assert not offer(f, reader, resp("GET", "x"))[0]
    assert offer(f, writer, resp("FLUSHALL"))[0]


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple[str, int, float, str]]:
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["get", "set", "answer", "checkpoint", "tick"]),
                st.integers(0, 2),
                st.floats(0, 0.3),
                st.sampled_from(["k", "j"]),
            ),
            max_size=40,
        )
    )


@settings(max_examples=300, deadline=None)
@given(_steps(), st.sampled_from(["global", "key"]))
def test_frames_leave_once_in_order_no_write_overtakes_a_read_and_none_overtakes_a_write(
    steps: list[tuple[str, int, float, str]], scope: str
) -> None:
    f = WriteFence(("GET", "HEAD"), ("/kv/",), (6379,), http=True, scope=scope)
    clients = [Client(40001 + i) for i in range(3)]
    now = 0.0
    offered: dict[FlowKey, list[bytes]] = {c.key: [] for c in clients}
    left: dict[FlowKey, list[bytes]] = {c.key: [] for c in clients}
    kinds: dict[bytes, tuple[str, str]] = {}
    model: dict[FlowKey, tuple[float, str]] = {}  # reads delivered, unanswered
    arrivals: list[bytes] = []  # every frame, in the order it came
    gone: set[bytes] = set()

    def meet(a: str, b: str) -> bool:
        return scope == "global" or a == b

    def went(frames: list[bytes]) -> None:
        for frame in frames:
            pkt = parse_frame(frame)
            assert isinstance(pkt, Packet)
            key = (TCP, pkt.key[2], pkt.key[1], pkt.key[4], pkt.key[3])
            kind, res = kinds[frame]
            if kind == "set":
                late = [k for k, (d, r) in model.items() if k != key and d > now and meet(r, res)]
                assert late == []
            else:
                model[key] = (now + MAX_PENDING_S, res)
            # Nothing touching its resource overtakes a write that came before it.
            before = arrivals[: arrivals.index(frame)]
            overtaken = [b for b in before if kinds[b][0] == "set" and meet(kinds[b][1], res)]
            assert all(b in gone for b in overtaken)
            gone.add(frame)
            left[key].append(frame)

    for action, who, dt, res in steps:
        now += dt
        c = clients[who]
        if action in ("get", "set"):
            payload = resp("GET", res) if action == "get" else resp("SET", res, "v")
            pkt, frame = c.send(payload)
            offered[c.key].append(frame)
            arrivals.append(frame)
            kinds[frame] = (action, res)
            if not f.client(pkt, frame, 0, frame, now):
                went([frame])
        elif action == "answer":
            f.guest(*c.guest_answer(5))
            model.pop(c.key, None)
            went(f.release(now))
        elif action == "checkpoint":
            model = {k: (min(d, now + CHECKPOINT_GRACE_S), r) for k, (d, r) in model.items()}
            went(f.checkpoint(now))
        else:
            went(f.release(now))
    for _ in range(len(arrivals) + 1):  # a read let go may hold the write behind it anew
        now += MAX_PENDING_S + 1
        went(f.release(now))
    assert left == offered  # every frame once, per connection in the order it came
    assert f.held_frames == 0


def test_a_write_flood_behind_an_unanswered_read_is_bounded_in_bytes_and_goes_in_order() -> None:
    f = WriteFence(("GET", "HEAD"), ("/kv/",), (6379,), http=True, max_bytes=4000)
    reader, writer = Client(40001), Client(40002)
    assert not offer(f, reader, resp("GET", "k"))[0]
    sent: list[bytes] = []
    for i in range(100):
        held, frame = offer(f, writer, resp("SET", "k", "x" * 900), now=0.001 * i)
        assert held  # behind the pending read, then behind the held write
        sent.append(frame)
        if f.overflowed:
            break
    assert f.overflowed and f.held_bytes > 4000 and len(sent) < 100
    assert not f.pending  # no read holds anything any more
    assert f.release(0.5) == sent  # everything, in arrival order
    counters = f.counters()
    assert counters["fence_overflow"] == 1 and counters["fence_held_bytes"] == 0
    assert not f.overflowed and f.held_frames == 0
    # The bound holds again afterwards: a new read, a new write waits as before.
    assert not offer(f, reader, resp("GET", "k"), now=1.0)[0]
    assert offer(f, writer, resp("SET", "k", "v"), now=1.0)[0]
