"""A real OpenSSH server on 127.0.0.1 for the ssh and sftp tests, started once per test module.

The server logs in a real unprivileged account, `dagussh` (created with useradd if missing, and
left in place afterwards: several worktrees may run these tests at once).  It accepts the test
client key and the password PASSWORD, forwards one environment variable (AcceptEnv ACCEPTED_VAR)
and serves SFTP (internal-sftp).  Remote and local are the same machine, which lets the tests look
at the server's side with `ps` and the filesystem.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import Server, free_port, need

USER = "dagussh"
PASSWORD = "pw-Sesame-7f3a9c"  # the password test user's password (it reaches the step via secrets:)
ACCEPTED_VAR = "SSHTEST_ACCEPTED"


@dataclass
class Sshd:
    server: Server
    port: int
    dir: Path  # readable by the test user: keys, known_hosts, a remote work folder
    client_key: Path
    host_pub: str  # "ssh-ed25519 AAAA..."
    remote: Path  # a folder owned by USER, where remote commands and sftp write
    log: Path

    def known_hosts(self, path: Path) -> Path:
        """A known_hosts file (per test) that knows this server."""
        path.write_text(f"[127.0.0.1]:{self.port} {self.host_pub}\n")
        return path

    def accepted(self) -> int:
        """Connections sshd accepted so far (an 'Accepted ...' log line each)."""
        return sum(1 for line in self.log.read_text(errors="replace").splitlines() if "Accepted " in line)


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        res = subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], capture_output=True, text=True)
        if res.returncode not in (0, 9):  # 9: created meanwhile by another run
            pytest.skip(f"cannot create the test user {USER}: {res.stderr.strip()}")
    subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}\n", text=True, check=True)


def start_sshd() -> Iterator[Sshd]:
    sshd = need("sshd")
    keygen = need("ssh-keygen")
    if os.geteuid() != 0:
        pytest.skip("the sshd fixture logs in a test account and needs root to create it")
    _ensure_user()
    entry = pwd.getpwnam(USER)
    base = Path(tempfile.mkdtemp(prefix="dagu-sshd-"))
    base.chmod(0o755)
    try:
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True)
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(base / "client_key")], check=True)
        auth = base / "authorized_keys"
        shutil.copy(base / "client_key.pub", auth)
        auth.chmod(0o644)
        remote = base / "remote"
        remote.mkdir()
        os.chown(remote, entry.pw_uid, entry.pw_gid)
        port = free_port()
        cfg = base / "sshd_config"
        cfg.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {base / 'host_key'}
PidFile {base / 'sshd.pid'}
AuthorizedKeysFile {auth}
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
AllowUsers {USER}
AcceptEnv {ACCEPTED_VAR}
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp
""")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        log = base / "sshd.log"
        server = Server.start([sshd, "-D", "-e", "-f", str(cfg)], port, log)
        host_pub = " ".join((base / "host_key.pub").read_text().split()[:2])
        try:
            yield Sshd(server, port, base, base / "client_key", host_pub, remote, log)
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    yield from start_sshd()
