"""Pre-release scoped by resource (HTTP paths, Redis keys) and the RESP read classifier."""

from __future__ import annotations

import itertools

import pytest
from compare_frames import CLIENT, GUEST, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import Action, Comparator, PreRelease, PreReleaseConfig, build_policy
from colopp.compare.http_reads import ReadClassifier
from colopp.compare.packet import Packet, parse_frame
from colopp.compare.resp_reads import MalformedResp, classify, parse_command
from colopp.compare.scope import MAX_WINDOW_KEYS
from colopp.errors import ConfigError

G_SEQ, C_SEQ = 5000, 9000
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HTTP_RULES = frozenset({"retransmission", "ack_only", "http_read"})
RESP_RULES = frozenset({"retransmission", "ack_only", "resp_read"})


def early(actions: list[Action]) -> list[bytes]:
    return [f for a in actions if isinstance(a, PreRelease) for f in a.frames]


def comparator(scope: str = "key", resp: bool = False) -> Comparator:
    if resp:
        config = PreReleaseConfig(RESP_RULES, scope=scope)
    else:
        config = PreReleaseConfig(HTTP_RULES, ("/kv/",), scope=scope)
    policy = build_policy(config)
    assert policy is not None
    return Comparator(policy=policy)


class Conn:
    """One client connection to the guest: sends requests, checks whether answers go early."""

    def __init__(self, c: Comparator, dport: int, port: int = 80) -> None:
        self.c, self.dport, self.port = c, dport, port
        self.seq = C_SEQ
        self.guest = G_SEQ  # what the client has received of the guest's output

    def send(self, data: bytes, received: int = 0) -> int:
        """Send ``data`` after having received ``received`` more guest bytes; return the end."""
        self.guest += received
        frame = tcp_frame(
            self.seq, self.guest, "AP", data, src=CLIENT, dst=GUEST, sport=self.dport,
            dport=self.port,
        )  # fmt: skip
        self.c.feed_client(frame, 0.0)
        self.seq += len(data)
        return self.seq

    def answer_leaves_early(self, ack: int | None = None, body: bytes = REPLY) -> bool:
        ack = self.seq if ack is None else ack
        c = self.c
        c.feed_secondary(tcp_frame(self.guest, ack, "A", sport=self.port, dport=self.dport), 0.0)
        reply = tcp_frame(self.guest, ack, "AP", body, sport=self.port, dport=self.dport)
        return early(c.feed_primary(reply, 0.1)) == [reply]


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: g\r\n\r\n".encode()


def put(path: str) -> bytes:
    return f"PUT {path} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx".encode()


def resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        out += f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n"
    return out


# ---- HTTP, key scope ---------------------------------------------------------------------


@pytest.mark.parametrize(("scope", "expected"), [("key", True), ("global", False)])
def test_a_write_to_another_key_disarms_only_in_global_scope(scope: str, expected: bool) -> None:
    c = comparator(scope)
    reader, writer = Conn(c, 40000), Conn(c, 40001)
    reader.send(get("/kv/a"))
    writer.send(put("/kv/b"))
    assert reader.answer_leaves_early() is expected


def test_a_write_to_the_same_key_disarms_it_until_a_checkpoint() -> None:
    c = comparator()
    reader, writer, other = Conn(c, 40000), Conn(c, 40001), Conn(c, 40002)
    reader.send(get("/kv/a"))
    writer.send(put("/kv/a"))
    assert not reader.answer_leaves_early()
    other.send(get("/kv/a"))  # a later read of the written key: disarmed too
    assert not other.answer_leaves_early()
    c.checkpoint_done(0.5)
    again = Conn(c, 40003)
    again.send(get("/kv/a"))
    assert again.answer_leaves_early()


def test_a_connection_that_wrote_keeps_its_write_pending() -> None:
    c = comparator()
    conn = Conn(c, 40000)
    conn.send(put("/kv/a"))
    conn.send(get("/kv/b"))  # sent without receiving the write's answer: pipelined
    assert not conn.answer_leaves_early()


def test_pipelined_reads_check_every_pending_key() -> None:
    c = comparator()
    conn, writer = Conn(c, 40000), Conn(c, 40001)
    conn.send(get("/kv/a"))
    conn.send(get("/kv/b"))  # nothing received in between: /kv/a may still be pending
    writer.send(put("/kv/a"))
    assert not conn.answer_leaves_early()


def test_a_client_that_waited_for_its_answer_restarts_its_window() -> None:
    c = comparator()
    conn, writer = Conn(c, 40000), Conn(c, 40001)
    conn.send(get("/kv/a"))
    assert conn.answer_leaves_early()
    conn.send(get("/kv/b"), received=len(REPLY))  # it got the answer before asking again
    writer.send(put("/kv/a"))
    assert conn.answer_leaves_early()


def test_paths_with_escapes_are_writes_to_everything_in_key_scope() -> None:
    c = comparator()
    reader, writer = Conn(c, 40000), Conn(c, 40001)
    reader.send(get("/kv/a"))
    writer.send(put("/kv/%61"))  # may be /kv/a to the server
    assert not reader.answer_leaves_early()


def test_a_window_past_its_limit_depends_on_every_key() -> None:
    c = comparator()
    conn, writer = Conn(c, 40000), Conn(c, 40001)
    for i in range(MAX_WINDOW_KEYS + 1):
        conn.send(get(f"/kv/k{i}"))
    writer.send(put("/kv/other"))
    assert not conn.answer_leaves_early()


def test_query_strings_name_the_same_resource() -> None:
    c = comparator()
    reader, writer = Conn(c, 40000), Conn(c, 40001)
    reader.send(get("/kv/a?x=1"))
    writer.send(put("/kv/a?y=2"))
    assert not reader.answer_leaves_early()


def test_unknown_requests_disarm_every_key() -> None:
    c = comparator()
    reader, writer = Conn(c, 40000), Conn(c, 40001)
    reader.send(get("/kv/a"))
    writer.send(put("/admin/reset"))
    assert not reader.answer_leaves_early()


# ---- RESP --------------------------------------------------------------------------------


def test_resp_read_leaves_early_and_other_keys_do_not_disarm_it() -> None:
    c = comparator(resp=True)
    reader, writer = Conn(c, 40000, 6379), Conn(c, 40001, 6379)
    reader.send(resp("GET", "k1"))
    writer.send(resp("SET", "k2", "v"))
    assert reader.answer_leaves_early(body=b"$1\r\nv\r\n")
    snap = c.snapshot()["pre_release"]
    assert (snap["read_requests"], snap["write_requests"]) == (1, 1)
    assert snap["granted"]["resp_read"] == 1


def test_resp_write_to_the_key_disarms_it() -> None:
    c = comparator(resp=True)
    reader, writer = Conn(c, 40000, 6379), Conn(c, 40001, 6379)
    reader.send(resp("HGET", "h", "f"))
    writer.send(resp("HSET", "h", "f", "v"))
    assert not reader.answer_leaves_early()


@pytest.mark.parametrize(
    "write",
    [
        resp("FLUSHALL"),
        resp("SET", "k9", "v", "EX", "10"),
        resp("SELECT", "1"),
        resp("EVAL", "return 1", "0"),
        b"PING\r\n",  # inline: malformed for us
        b"*1\r\n$x\r\n",
    ],
)
def test_resp_unknown_malformed_and_global_writes_disarm_every_key(write: bytes) -> None:
    c = comparator(resp=True)
    reader, writer = Conn(c, 40000, 6379), Conn(c, 40001, 6379)
    reader.send(resp("GET", "k1"))
    writer.send(write)
    assert not reader.answer_leaves_early()


def test_resp_pipelined_with_a_write_is_a_write() -> None:
    c = comparator(resp=True)
    conn = Conn(c, 40000, 6379)
    conn.send(resp("GET", "k1") + resp("INCR", "k2"))
    assert not conn.answer_leaves_early()


def test_resp_pipelined_reads_leave_early() -> None:
    c = comparator(resp=True)
    conn = Conn(c, 40000, 6379)
    conn.send(resp("GET", "k1") + resp("MGET", "k2", "k3") + resp("EXISTS", "k4"))
    assert conn.answer_leaves_early()
    assert c.snapshot()["pre_release"]["read_requests"] == 3


def test_resp_rule_without_ports_and_bad_scope_are_refused() -> None:
    with pytest.raises(ConfigError):
        PreReleaseConfig(RESP_RULES, resp_ports=())
    with pytest.raises(ConfigError):
        PreReleaseConfig(HTTP_RULES, ("/kv/",), scope="path")


def test_resp_classification() -> None:
    assert classify([b"get", b"k"]) == (True, (b"k",))
    assert classify([b"MGET", b"a", b"b"]) == (True, (b"a", b"b"))
    assert classify([b"PING"]) == (True, ())
    assert classify([b"MSET", b"a", b"1", b"b", b"2"]) == (False, (b"a", b"b"))
    assert classify([b"DEL", b"a", b"b"]) == (False, (b"a", b"b"))
    assert classify([b"GET"]) == (False, None)
    assert classify([b"TTL", b"k"]) == (False, None)
    assert classify([b"SRANDMEMBER", b"s"]) == (False, None)


# ---- RESP parser properties ---------------------------------------------------------------

_arg = st.binary(min_size=0, max_size=40)
_command = st.one_of(
    st.tuples(st.sampled_from(["GET", "STRLEN", "HGETALL", "SMEMBERS"]), _arg).map(list),
    st.tuples(st.sampled_from(["SET", "HGET", "APPEND"]), _arg, _arg).map(list),
    st.lists(_arg, min_size=1, max_size=5).map(lambda a: ["MGET", *a]),
    st.lists(_arg, min_size=0, max_size=3).map(lambda a: ["FLUSHDB", *a]),
)


def encode(args: list[str | bytes]) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        out += f"${len(raw)}\r\n".encode() + raw + b"\r\n"
    return out


def classify_stream(chunks: list[bytes], port: int = 6379) -> tuple[int, int, bool]:
    classifier = ReadClassifier(("GET",), ("/kv/",), scope="key", resp_ports=(port,))
    seq = C_SEQ
    for chunk in chunks:
        frame = tcp_frame(seq, G_SEQ, "AP", chunk, src=CLIENT, dst=GUEST, sport=40000, dport=port)
        pkt = parse_frame(frame)
        assert isinstance(pkt, Packet)
        classifier.observe(pkt, frame)
        seq += len(chunk)
    return classifier.read_requests, classifier.write_requests, classifier.scope.global_write


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=150, deadline=None)
@given(st.lists(_command, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_resp_split_anywhere_classifies_like_whole(
    commands: list[list[str | bytes]], cuts: list[int]
) -> None:
    data = b"".join(encode(c) for c in commands)
    whole = classify_stream([data])
    assert classify_stream(split(data, cuts)) == whole
    reads = sum(
        1 for c in commands if classify([a if isinstance(a, bytes) else a.encode() for a in c])[0]
    )
    assert whole[0] == reads and whole[0] + whole[1] == len(commands)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.lists(st.integers(0, 10_000), max_size=6))
def test_resp_garbage_never_raises_and_is_never_a_read_unless_resp(
    garbage: bytes, cuts: list[int]
) -> None:
    try:
        parsed = parse_command(garbage)
    except MalformedResp:
        parsed = None
    reads, _writes, _everything = classify_stream(split(garbage, cuts))
    if parsed is None and reads == 0:
        return
    assert garbage.startswith(b"*")  # only real RESP arrays can be reads


@settings(max_examples=150, deadline=None)
@given(st.lists(_command, min_size=1, max_size=4), st.binary(min_size=1, max_size=30))
def test_resp_garbage_after_commands_loses_the_stream(
    commands: list[list[str | bytes]], garbage: bytes
) -> None:
    data = b"".join(encode(c) for c in commands)
    _reads, _writes, everything = classify_stream([data + b"\xff" + garbage])
    assert everything  # framing lost: a write to everything
