"""Fast Redis protocol (RESP2) encoding and one fenced MULTI/EXEC on a raw connection.

redis-py builds every command argument by argument in Python; for a batch of thousands of profile
writes that costs more than everything else the feature engine does. Here a batch's commands are
encoded with plain byte joins (field names encoded once) and sent as a single MULTI ... EXEC
write, WATCHing keys first so the transaction is refused if another client changed them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain

import redis
from redis.connection import Connection

try:
    from redis._parsers.hiredis import NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - redis-py without the hiredis parser module
    NOT_ENOUGH_DATA = object()

Arg = bytes | str | int | float
#: Inspects the watched keys' current values; returns a problem to abort, or None to go on.
Guard = Callable[[list[bytes | None]], str | None]


@lru_cache(maxsize=4096)
def _bulk_str(text: str) -> bytes:
    raw = text.encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def _bulk(value: Arg) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        return _bulk_str(value) if len(value) <= 32 else _bulk_raw(value.encode())
    elif isinstance(value, int):
        raw = b"%d" % value
    else:
        raw = repr(value).encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def _bulk_raw(raw: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def command(*args: Arg) -> bytes:
    """One command in RESP: *<n> then each argument as a bulk string."""
    return b"*%d\r\n" % len(args) + b"".join(map(_bulk, args))


def command_of_strings(*head: str, args: Sequence[str]) -> bytes:
    """`command(*head, *args)` for many text arguments at once: one %-format over the whole list
    (ids, levels, scores as text); byte-exact for any text, fast when it is ASCII."""
    parts = [*head, *args]
    text = f"*{len(parts)}\r\n" + ("$%d\r\n%s\r\n" * len(parts)) % tuple(
        chain.from_iterable(zip(map(len, parts), parts, strict=True))
    )
    if text.isascii():
        return text.encode()
    return command(*parts)


class RowEncoder:
    """Encodes `HSET key f1 v1 f2 v2 ...` for many rows with the same fields, fast.

    The field names are baked into one %-template, so each row costs a few C-level calls
    (str of each value, their lengths, one formatting) instead of one Python call per argument.
    Rows whose text is all ASCII (numbers, ISO timestamps, codes) take the fast path; any other
    text is encoded byte-exactly by the general path.
    """

    def __init__(self, command_name: str, fields: Sequence[str]) -> None:
        self.fields = list(fields)
        head = f"*{2 + 2 * len(fields)}\r\n${len(command_name)}\r\n{command_name}\r\n"
        body = "".join(f"${len(f.encode())}\r\n{f.replace('%', '%%')}\r\n$%d\r\n%s\r\n" for f in fields)
        self._head = head
        self._body = body
        self._name = command_name

    def encode_many(self, keys: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
        """Many rows' commands as one byte string: a single %-format over the whole batch.

        Equal to joining `encode(key, row)` for each row; the per-row Python work shrinks to
        splicing the key into an argument list.
        """
        if not keys:
            return b""
        texts = list(map(str, chain.from_iterable(rows)))
        flat = list(chain.from_iterable(zip(map(len, texts), texts, strict=True)))
        width = 2 * len(self.fields)
        args: list[object] = []
        for i, key in enumerate(keys):
            args += (len(key.encode()), key)
            args += flat[i * width : (i + 1) * width]
        template = (self._head + "$%d\r\n%s\r\n" + self._body) * len(keys)
        text = template % tuple(args)
        if text.isascii():  # lengths above count characters: exact only when they are bytes
            return text.encode()
        return b"".join(self.encode(k, row) for k, row in zip(keys, rows, strict=True))

    def encode(self, key: str, values: Sequence[object]) -> bytes:
        """One row, byte-exact for any text (the general path)."""
        pairs = chain.from_iterable(zip(self.fields, (str(v) for v in values), strict=True))
        return command(self._name, key, *pairs)


def _read_replies(conn: Connection, count: int) -> list[object]:
    """Read `count` replies; with hiredis, straight from its reader (one C call per reply).

    redis-py's read_response costs a few microseconds of Python per reply, and a batch's
    transaction answers +QUEUED once per command. An error reply raises ResponseError.
    """
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if parser is None or reader is None or not hasattr(parser, "read_from_socket"):
        return [conn.read_response() for _ in range(count)]
    out: list[object] = []
    while len(out) < count:
        reply = reader.gets()
        if reply is NOT_ENOUGH_DATA or reply is False:
            parser.read_from_socket()
            continue
        if isinstance(reply, Exception):
            raise redis.ResponseError(str(reply))
        out.append(reply)
    return out


class TransactionAborted(redis.WatchError):
    """A WATCHed key changed (or a guard failed) before EXEC: nothing was written."""


def fenced_transaction(
    client: redis.Redis,
    watch: Sequence[str],
    guard: Guard,
    commands: Sequence[bytes],
    count: int | None = None,
) -> list[object]:
    """WATCH `watch`, let `guard` check their values (MGET), then MULTI + commands + EXEC.

    `count` is the number of commands when an element of `commands` packs several.

    Raises TransactionAborted when the guard refuses or EXEC is aborted; connection errors
    propagate (the connection is dropped, never reused half-read).
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        if watch:
            conn.send_command("WATCH", *watch)  # type: ignore[no-untyped-call]
            conn.read_response()
            conn.send_command("MGET", *watch)  # type: ignore[no-untyped-call]
            current = conn.read_response()
            problem = guard(list(current) if isinstance(current, list) else [])
            if problem:
                conn.send_command("UNWATCH")  # type: ignore[no-untyped-call]
                conn.read_response()
                raise TransactionAborted(problem)
        payload = b"*1\r\n$5\r\nMULTI\r\n" + b"".join(commands) + b"*1\r\n$4\r\nEXEC\r\n"
        conn.send_packed_command([payload])  # type: ignore[no-untyped-call]
        n = len(commands) if count is None else count
        replies = _read_replies(conn, n + 2)[-1]  # +OK, +QUEUED per command, then EXEC's
        if replies is None:
            raise TransactionAborted("a watched key changed before EXEC")
        return list(replies) if isinstance(replies, list) else []
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        pool.release(conn)
