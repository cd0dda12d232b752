"""A real PostgreSQL server for the postgres step's tests, started once per test module.

initdb and the server refuse to run as root, so as root they run as the `postgres` user
(runuser); the data directory is a fresh temp dir owned by that user.  Role `test` connects
without a password (trust); role `pwuser` must give a password (scram-sha-256), for the
authentication tests.  Stopped with `pg_ctl stop -m immediate` (by its data dir, so only this
server).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Iterator

import pytest

from tests.servers import free_port, wait_port

PASSWORD = "pw-Secret-4711"


@dataclass
class Postgres:
    port: int
    data: str

    def dsn(self, user: str = "test", db: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={db}"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else []


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        pytest.skip(f"{name} (PostgreSQL server) is not installed: apt-get install -y postgresql "
                    "(.ci/run installs it; see ../shared/components.md)")
    return found[-1]


def _as_owner(argv: list[str]) -> list[str]:
    if os.getuid() != 0:
        return argv
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` user to run the server as")
    return ["runuser", "-u", "postgres", "--", *argv]


def start_postgres() -> Iterator[Postgres]:
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    base = tempfile.mkdtemp(prefix="dagu-pg-")
    data = os.path.join(base, "data")
    if os.getuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(base, entry.pw_uid, entry.pw_gid)
    subprocess.run(_as_owner([initdb, "-D", data, "-U", "test", "--auth=trust", "-N", "-E", "UTF8"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(os.path.join(data, "pg_hba.conf"), "w") as fh:
        fh.write("local all all trust\n"
                 "host all pwuser 127.0.0.1/32 scram-sha-256\n"
                 "host all all 127.0.0.1/32 trust\n")
    port = free_port()
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off"
    subprocess.run(_as_owner([pg_ctl, "-w", "-t", "60", "-D", data, "-o", opts, "-l", os.path.join(base, "log"),
                              "start"]), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Postgres(port, data)
    try:
        wait_port(port)
        server.query(f"CREATE ROLE pwuser LOGIN PASSWORD '{PASSWORD}'")
        yield server
    finally:
        subprocess.run(_as_owner([pg_ctl, "-D", data, "stop", "-m", "immediate"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
