"""redis-server for the redis step tests: started on 127.0.0.1 on a free port, no persistence,
stopped by pid.  One plain server and one that requires a password, per test module."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import Server, free_port, need

PASSWORD = "rEdis-pw-5521"


def start_redis(tmp: Path, *extra: str) -> Server:
    program = need("redis-server")
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    return Server.start([program, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                         "--dir", str(tmp), *extra], port, tmp / "redis.log")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_redis(tmp_path_factory.mktemp("redis-auth"), "--requirepass", PASSWORD)
    yield server
    server.stop()


def client(server: Server, password: str | None = None):  # noqa: ANN201 (redis.Redis, imported lazily)
    import redis

    return redis.Redis(host="127.0.0.1", port=server.port, password=password, decode_responses=True)
