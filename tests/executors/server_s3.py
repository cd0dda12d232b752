"""The moto S3 server for the s3 step tests, on 127.0.0.1 on a free port, stopped by pid.

moto implements the S3 API (multipart uploads included) but does not check request signatures:
any access key works.  With INITIAL_NO_AUTH_ACTION_COUNT=0 it does check that the access key
exists (its IAM has none), which is how the authentication-failure test gets a real refusal."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import Server, free_port


def start_moto(tmp: Path, **env: str) -> Server:
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    return Server.start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port,
                        tmp / "moto.log", env={**os.environ, **env}, timeout=60)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_moto(tmp_path_factory.mktemp("moto-auth"), INITIAL_NO_AUTH_ACTION_COUNT="0")
    yield server
    server.stop()


def s3_client(server: Server):  # noqa: ANN201 (a boto3 client, imported lazily)
    import boto3

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{server.port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def s3_defaults(server: Server, bucket: str, secret_from: str | None = None) -> str:
    """The top of a workflow whose s3 steps talk to `server` (8-space indented, for dedent);
    with `secret_from`, the secret key comes from that environment variable as a secret."""
    secret = f"""secrets:
          - name: AWS_SECRET_ACCESS_KEY
            provider: env
            key: {secret_from}
        """ if secret_from else ""
    return f"""
        s3:
          endpoint: http://127.0.0.1:{server.port}
          region: us-east-1
          bucket: {bucket}
          force_path_style: true
        env:
          - DUMMY_KEY: s  # moto checks no signature: a dummy credential, not a secret
          - AWS_ACCESS_KEY_ID: AKIAEXAMPLE
        {secret}"""
