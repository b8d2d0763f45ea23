"""The worker's Redis connections pack commands with hiredis: byte for byte what redis-py's asyncio
connection sends, and the same errors for what it refuses."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import DataError

from stream.settings import RedisSettings
from stream.store import _with_hiredis_packing, connect

COMMANDS = [
    ("SET", "k", b"\x00value"),
    ("EVALSHA", "a" * 40, 3, "p{s1}:st", "p{s1}:ob", "p{s1}:cl", b"\x00" * 8, b"blob", 86_400_000, "w#1", 1.5,
     0.1, -7, 10**20, "é", b"S{\"score\":0.5}"),
    ("SCRIPT LOAD", "return 1"),  # a two-word command name is sent as two arguments
    (b"CONFIG GET", "maxmemory"),
    ("SET", "big", b"x" * 20_000),  # above redis-py's buffer cutoff: chunked there, one piece here
    ("SET", "view", memoryview(b"abc")),  # not for hiredis: redis-py packs it
    ("MGET", "p{a}:st", "p{a}:thr"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_packing_matches_redis_py(args: tuple) -> None:
    fast, plain = _with_hiredis_packing(Connection)(), Connection()
    assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))
    assert b"".join(fast.pack_commands([args, args])) == b"".join(plain.pack_commands([args, args]))


@pytest.mark.parametrize("bad", [True, None, object()])
def test_what_redis_py_refuses_is_still_refused(bad: object) -> None:
    with pytest.raises(DataError):
        _with_hiredis_packing(Connection)().pack_command("SET", "k", bad)


def test_connect_uses_it_for_plain_and_tls_urls() -> None:
    pool = connect(RedisSettings(url="redis://127.0.0.1:6379/0")).connection_pool
    assert issubclass(pool.connection_class, Connection) and pool.connection_class.__name__.startswith("Hiredis")
    tls = connect(RedisSettings(url="rediss://127.0.0.1:6380/0")).connection_pool
    assert issubclass(tls.connection_class, SSLConnection)  # TLS is kept
