"""sftp steps against a real OpenSSH server (internal-sftp, server_sshd.py), run through `dagu`.
Remote and local are one machine: the tests read the remote side's files directly."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.executors.server_sshd import PASSWORD, USER, Sshd, sshd  # noqa: F401
from tests.executors.test_ssh import ROOT, conn, no_traceback, wait_until
from tests.runtime.conftest import Env

OLD = 1_600_000_000  # an mtime in 2020, to tell a kept mtime from "now"


@pytest.fixture
def known(sshd: Sshd, tmp_path: Path) -> Path:  # noqa: F811
    return sshd.known_hosts(tmp_path / "known_hosts")


@pytest.fixture
def remote(sshd: Sshd, request: pytest.FixtureRequest) -> Path:  # noqa: F811
    """A fresh folder on the server side, owned by the ssh user."""
    path = sshd.remote / request.node.name
    path.mkdir()
    entry = __import__("pwd").getpwnam(USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def tree(base: Path) -> dict[str, tuple[str, int, int]]:
    """relative path -> (content digest or 'dir', permission bits, mtime) for everything under base."""
    out = {}
    for path in sorted(base.rglob("*")):
        st = path.stat()
        digest = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(base))] = (digest, stat.S_IMODE(st.st_mode), int(st.st_mtime))
    return out


def make_tree(base: Path) -> None:
    (base / "sub" / "deeper").mkdir(parents=True)
    (base / "a.txt").write_text("alpha\n")
    (base / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (base / "sub" / "deeper" / "data.bin").write_bytes(os.urandom(300_000))
    (base / "a.txt").chmod(0o640)
    (base / "sub" / "run.sh").chmod(0o755)
    (base / "sub" / "deeper").chmod(0o750)
    for i, path in enumerate(sorted(base.rglob("*"), key=lambda p: -len(p.parts))):  # deepest first
        os.utime(path, (OLD + i, OLD + i))


def test_upload_and_download_a_tree_keeping_modes_and_mtimes(env: Env, sshd: Sshd, known: Path,  # noqa: F811
                                                             remote: Path) -> None:
    local = env.dir / "site"
    make_tree(local)
    env.write("tree.yaml", f"""
        ssh: {conn(sshd, known)}
        steps:
          - id: up
            type: sftp
            with: {{direction: upload, source: site, destination: {remote}/site}}
            output: UP
          - id: down
            action: sftp.download
            with: {{source: {remote}/site, destination: back}}
          - id: count
            command: echo "${{UP.files}} ${{UP.bytes}}" > up.txt
        """)
    res = env.run("start", "tree.yaml")
    assert res.returncode == 0, res.stderr
    assert tree(remote / "site") == tree(local)
    assert tree(env.dir / "back") == tree(local)
    assert (env.dir / "up.txt").read_text().split() == ["3", str(6 + 18 + 300_000)]
    # the remote files belong to the ssh user: written by the server, not by this process
    assert (remote / "site" / "a.txt").stat().st_uid != os.geteuid()
    assert not [p for p in remote.rglob("*dagu-tmp*")] and not [p for p in env.dir.rglob("*dagu-tmp*")]


def test_overwrite_false_refuses_an_existing_target(env: Env, sshd: Sshd, known: Path,  # noqa: F811
                                                    remote: Path) -> None:
    (env.dir / "new.txt").write_text("new\n")
    (env.dir / "dir").mkdir()
    (env.dir / "dir" / "one.txt").write_text("one\n")
    (env.dir / "dir" / "two.txt").write_text("two\n")
    subprocess.run(["su", USER, "-s", "/bin/sh", "-c",
                    f"echo old > {remote}/target.txt; mkdir {remote}/dir; echo old > {remote}/dir/two.txt"], check=True)
    env.write("noover.yaml", f"""
        type: graph
        ssh: {conn(sshd, known)}
        steps:
          - id: file
            type: sftp
            with: {{source: new.txt, destination: {remote}/target.txt, overwrite: false}}
          - id: tree
            type: sftp
            with: {{source: dir, destination: {remote}/dir, overwrite: false}}
          - id: replace
            type: sftp
            depends: [file, tree]
            continue_on: {{failure: true}}
            with: {{source: new.txt, destination: {remote}/target2.txt, overwrite: false}}
        """)
    res = env.run("start", "noover.yaml")
    steps = env.status("noover")["steps"]
    assert steps["file"]["status"] == "failed"
    assert f"target {remote}/target.txt exists and overwrite is false" in steps["file"]["reason"]
    assert f"127.0.0.1:{sshd.port}" in steps["file"]["reason"]
    assert (remote / "target.txt").read_text() == "old\n"
    assert f"{remote}/dir/two.txt exists" in steps["tree"]["reason"]
    assert not (remote / "dir" / "one.txt").exists()  # checked before a byte moved
    no_traceback(res, env)


def test_an_interrupted_transfer_leaves_no_target_file(env: Env, sshd: Sshd, known: Path,  # noqa: F811
                                                       remote: Path) -> None:
    big = env.dir / "big.bin"
    with open(big, "wb") as fh:  # sparse: cheap to make, slow enough to send over SFTP
        fh.truncate(2 << 30)
    with open(remote / "big-remote.bin", "wb") as fh:
        fh.truncate(2 << 30)
    (remote / "big-remote.bin").chmod(0o644)
    env.write("big.yaml", f"""
        type: graph
        ssh: {conn(sshd, known)}
        steps:
          - id: up
            type: sftp
            with: {{source: big.bin, destination: {remote}/big.bin}}
        """)
    proc = env.popen("start", "big.yaml")
    try:
        wait_until(lambda: any(p.name.startswith(".big.bin.dagu-tmp") and p.stat().st_size > 0
                               for p in remote.iterdir()))
        assert env.run("stop", "big.yaml").returncode == 0
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert env.status("big")["status"] == "aborted"
    time.sleep(0.3)
    assert sorted(p.name for p in remote.iterdir()) == ["big-remote.bin"]  # no target, no temp file
    env.write("bigdown.yaml", f"""
        ssh: {conn(sshd, known)}
        steps:
          - id: down
            type: sftp
            timeout_sec: 1
            with: {{direction: download, source: {remote}/big-remote.bin, destination: got/big.bin}}
        """)
    res = env.run("start", "bigdown.yaml")
    assert res.returncode != 0
    assert env.status("bigdown")["steps"]["down"]["status"] == "failed"
    assert list((env.dir / "got").iterdir()) == []  # the temp file was removed, no target appeared


def test_a_missing_source_fails_with_its_path(env: Env, sshd: Sshd, known: Path, remote: Path) -> None:  # noqa: F811
    env.write("missing.yaml", f"""
        steps:
          - id: down
            type: sftp
            with: {conn(sshd, known, direction="download", source=f"{remote}/nope.txt", destination="x.txt")}
        """)
    res = env.run("start", "missing.yaml")
    assert res.returncode != 0
    assert f"source {remote}/nope.txt does not exist" in env.status("missing")["steps"]["down"]["reason"]
    no_traceback(res, env)


def test_password_upload_masks_the_secret(env: Env, sshd: Sshd, known: Path, remote: Path) -> None:  # noqa: F811
    (env.dir / "f.txt").write_text("payload\n")
    env.write("pwup.yaml", f"""
        secrets:
          - {{name: SFTP_PW, provider: env, key: TEST_SFTP_PW}}
        steps:
          - id: up
            type: sftp
            with: {conn(sshd, known, key="", password="${SFTP_PW}", source="f.txt", destination=f"{remote}/f.txt")}
        """)
    res = env.run("start", "pwup.yaml", env={"TEST_SFTP_PW": PASSWORD})
    assert res.returncode == 0, res.stderr
    assert (remote / "f.txt").read_text() == "payload\n"
    for path in env.home.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_schema_errors_are_compile_errors_at_their_line(env: Env) -> None:
    env.write("bad.yaml", """
        steps:
          - id: s
            type: sftp
            with:
              host: example.com
              direction: sideways
              source: a
              destination: b
              overwrite: "no"
        """)
    res = env.run("compile", "bad.yaml")
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "bad.yaml:7:" in text and "sideways" in text
    assert "bad.yaml:10:" in text


def test_the_example_compiles(env: Env) -> None:
    res = env.run("compile", str(ROOT / "examples" / "sftp.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr
