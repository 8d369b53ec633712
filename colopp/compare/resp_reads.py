"""Redis (RESP) requests as the pre-release read rule sees them (pure, no I/O).

A client sends commands as RESP arrays of bulk strings
(``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``).
:func:`parse_command` cuts one command off a buffer; :func:`classify` says whether it is a read
and which keys it touches. Conservative by construction: only the commands listed in
:data:`READ_COMMANDS` (reads of the keys they name, answered from those keys alone) are reads;
every other command -- writes, unknown commands, commands whose answer depends on the clock or
on randomness (``TTL``, ``RANDOMKEY``, ``SRANDMEMBER``), connection state (``SELECT``,
``MULTI``), scripts -- is a write, keyed when its keys are known (:data:`KEYED_WRITES`), else a
write to everything. Inline commands (``PING\\r\\n`` without an array) and anything that is not
well-formed RESP are malformed: the stream's framing is then lost (a write to everything).
"""

from __future__ import annotations

#: A command (array header plus bulk strings) longer than this is not parsed: framing lost.
MAX_COMMAND_BYTES = 1 << 20
#: Arguments per command, at most.
MAX_ARGS = 4096

#: Arguments longer than this are not copied (see :data:`LONG_ARGUMENT`).
MAX_KEY_BYTES = 512
#: What a longer argument is replaced by: every long key is then the same resource.
LONG_ARGUMENT = b"\0colopp:long-argument"

Keys = tuple[bytes, ...]


class MalformedResp(Exception):
    """Raised inside the parser for bytes that are not a RESP command array; never escapes
    :class:`~colopp.compare.http_reads.ReadClassifier` (the stream is marked lost)."""


# Reads whose answer depends only on the keys they name (and their arguments).
_READ_FIRST_KEY = frozenset(
    {
        b"GET",
        b"STRLEN",
        b"GETRANGE",
        b"SUBSTR",
        b"TYPE",
        b"HGET",
        b"HMGET",
        b"HEXISTS",
        b"HLEN",
        b"HGETALL",
        b"HKEYS",
        b"HVALS",
        b"HSTRLEN",
        b"LRANGE",
        b"LLEN",
        b"LINDEX",
        b"LPOS",
        b"SMEMBERS",
        b"SISMEMBER",
        b"SMISMEMBER",
        b"SCARD",
        b"ZRANGE",
        b"ZRANGEBYSCORE",
        b"ZRANGEBYLEX",
        b"ZREVRANGE",
        b"ZREVRANGEBYSCORE",
        b"ZSCORE",
        b"ZMSCORE",
        b"ZCARD",
        b"ZCOUNT",
        b"ZLEXCOUNT",
        b"ZRANK",
        b"ZREVRANK",
        b"GETBIT",
        b"BITCOUNT",
    }
)
_READ_ALL_KEYS = frozenset({b"MGET", b"EXISTS"})
_READ_NO_KEYS = frozenset({b"PING", b"ECHO"})
#: Every command the classifier takes for a read.
READ_COMMANDS = _READ_FIRST_KEY | _READ_ALL_KEYS | _READ_NO_KEYS

# Writes that touch only the key in their first argument.
_WRITE_FIRST_KEY = frozenset(
    {
        b"SETNX",
        b"GETSET",
        b"GETDEL",
        b"APPEND",
        b"SETRANGE",
        b"INCR",
        b"DECR",
        b"INCRBY",
        b"DECRBY",
        b"INCRBYFLOAT",
        b"HSET",
        b"HSETNX",
        b"HMSET",
        b"HDEL",
        b"HINCRBY",
        b"HINCRBYFLOAT",
        b"LPUSH",
        b"RPUSH",
        b"LPUSHX",
        b"RPUSHX",
        b"LPOP",
        b"RPOP",
        b"LSET",
        b"LTRIM",
        b"LREM",
        b"LINSERT",
        b"SADD",
        b"SREM",
        b"ZADD",
        b"ZREM",
        b"ZINCRBY",
        b"PERSIST",
        b"SETBIT",
    }
)
_WRITE_ALL_KEYS = frozenset({b"DEL", b"UNLINK"})
#: Writes whose keys the classifier knows (the rest are writes to everything).
KEYED_WRITES = _WRITE_FIRST_KEY | _WRITE_ALL_KEYS | {b"SET", b"MSET"}


def _line(buf: bytes | bytearray, pos: int, prefix: int) -> tuple[int, int] | None:
    """The integer after ``prefix`` at ``pos`` up to CRLF: (value, next position)."""
    if buf[pos] != prefix:
        raise MalformedResp("unexpected type byte")
    end = buf.find(b"\r\n", pos, pos + 24)
    if end < 0:
        rest = bytes(buf[pos + 1 :])
        digits = rest[:-1] if rest.endswith(b"\r") else rest
        if len(rest) >= 23 or (digits and not digits.isdigit()):
            raise MalformedResp("bad header line")
        return None
    text = bytes(buf[pos + 1 : end])
    if not text.isdigit():
        raise MalformedResp("bad length")
    return int(text), end + 2


def parse_command(buf: bytes | bytearray, pos: int = 0) -> tuple[int, list[bytes]] | None:
    """Cut one command off ``buf`` at ``pos``: (end position, arguments), or None when the
    command is not complete yet.

    Raises:
        MalformedResp: the bytes are not a RESP array of bulk strings (or exceed the limits).
    """
    if pos >= len(buf):
        return None
    head = _line(buf, pos, ord("*"))
    if head is None:
        return None
    count, i = head
    if not 0 < count <= MAX_ARGS:
        raise MalformedResp("bad argument count")
    args: list[bytes] = []
    for _ in range(count):
        if i >= len(buf):
            return None
        bulk = _line(buf, i, ord("$"))
        if bulk is None:
            return None
        size, i = bulk
        if i + size - pos > MAX_COMMAND_BYTES:
            raise MalformedResp("command too long")
        if len(buf) < i + size + 2:
            return None
        if buf[i + size : i + size + 2] != b"\r\n":
            raise MalformedResp("bulk string not terminated")
        # Long arguments (values, mostly) are not copied: they all stand for one key, a
        # coarser resource than the real one (so never a missed conflict).
        args.append(bytes(buf[i : i + size]) if size <= MAX_KEY_BYTES else LONG_ARGUMENT)
        i += size + 2
    return i, args


def classify(args: list[bytes]) -> tuple[bool, Keys | None]:
    """(is a read, its keys); keys None means "every key" (a write of unknown reach)."""
    name = args[0].upper()
    rest = args[1:]
    if name in _READ_FIRST_KEY and rest:
        return True, (rest[0],)
    if name in _READ_ALL_KEYS and rest:
        return True, tuple(rest)
    if name in _READ_NO_KEYS and len(rest) <= 1:
        return True, ()
    if name in _WRITE_FIRST_KEY and rest:
        return False, (rest[0],)
    if name in _WRITE_ALL_KEYS and rest:
        return False, tuple(rest)
    if name == b"SET" and len(rest) == 2:
        return False, (rest[0],)  # with options (EX, PX, KEEPTTL, GET...): unknown reach
    if name == b"MSET" and rest and len(rest) % 2 == 0:
        return False, tuple(rest[0::2])
    return False, None
