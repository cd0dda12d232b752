"""ssh steps against a real OpenSSH server on 127.0.0.1 (server_sshd.py), run through `dagu` as a
user would.  Server and client are one machine, so the tests check the server's side directly:
`ps` for processes left behind, files the remote user wrote, sshd's log for connections."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.executors.server_sshd import ACCEPTED_VAR, PASSWORD, USER, Sshd, sshd  # noqa: F401
from tests.runtime.conftest import Env

ROOT = Path(__file__).resolve().parents[2]


def conn(sshd: Sshd, known: Path, **extra: object) -> str:  # noqa: F811
    """A with: block (flow style) connecting to the test server with the client key."""
    fields = {"host": "127.0.0.1", "port": sshd.port, "user": USER, "key": str(sshd.client_key),
              "known_host_file": str(known), **extra}
    return json.dumps(fields)


def logs(env: Env, dag: str, step: str) -> tuple[str, str]:
    attempt = env.status(dag)["steps"][step]["attempts"][-1]
    return Path(attempt["stdout"]).read_text(), Path(attempt["stderr"]).read_text()


def procs(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line]


def wait_until(pred, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def marker() -> str:
    """A sleep duration no other process on the machine has in its argv."""
    return f"1234.{random.randrange(10**6, 10**7)}"


def no_traceback(res: subprocess.CompletedProcess, env: Env) -> None:
    assert "Traceback" not in res.stdout + res.stderr
    for path in env.home.rglob("*"):
        if path.is_file():
            assert "Traceback" not in path.read_text(errors="replace"), path


@pytest.fixture
def known(sshd: Sshd, tmp_path: Path) -> Path:  # noqa: F811
    return sshd.known_hosts(tmp_path / "known_hosts")


def test_script_runs_remotely_with_its_exit_status_logs_and_env(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    env.write("remote.yaml", f"""
        env:
          - {ACCEPTED_VAR}: via-acceptenv
          - SSHTEST_EXPORTED: via 'script' "q"
        steps:
          - id: work
            type: ssh
            with: {conn(sshd, known)}
            script: |
              echo "user=$(id -un) home=$HOME"
              echo "accepted=${ACCEPTED_VAR} exported=$SSHTEST_EXPORTED"
              echo "at-exec: $(tr '\\0' '\\n' < /proc/$$/environ | grep '^SSHTEST_' | sort | tr '\\n' ' ')"
              echo to-stderr >&2
              exit 7
        """)
    res = env.run("start", "remote.yaml")
    assert res.returncode != 0
    step = env.status("remote")["steps"]["work"]
    assert step["status"] == "failed"
    assert step["attempts"][-1]["exit_code"] == 7
    out, err = logs(env, "remote", "work")
    assert f"user={USER} home=/home/{USER}" in out  # the operator's HOME stayed here
    assert "accepted=via-acceptenv exported=via 'script' \"q\"" in out
    # the AcceptEnv variable was in the environment the remote shell started with; the other was exported
    assert f"at-exec: {ACCEPTED_VAR}=via-acceptenv \n" in out
    assert "to-stderr" in err
    no_traceback(res, env)


def test_output_json_fields_and_the_action_spelling_with_dag_defaults(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    env.write("act.yaml", f"""
        ssh: {conn(sshd, known)}
        steps:
          - id: info
            action: ssh.run
            with:
              command: |
                printf '{{"who": "%s", "n": 3}}\\n' "$(id -un)"
            output: INFO
          - id: multi
            type: ssh
            command:
              - echo first
              - echo second
          - id: use
            command: echo "${{INFO.who}} ${{INFO.n}}" > got.txt
        """)
    res = env.run("start", "act.yaml")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "got.txt").read_text().strip() == f"{USER} 3"
    assert logs(env, "act", "multi")[0] == "first\nsecond\n"


def test_connections_are_reused_across_steps(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    env.write("reuse.yaml", f"""
        ssh: {conn(sshd, known)}
        steps:
""" + "".join(f"""
          - id: s{i}
            type: ssh
            command: echo {i}
""" for i in range(6)))
    before = sshd.accepted()
    res = env.run("start", "reuse.yaml")
    assert res.returncode == 0, res.stderr
    time.sleep(0.2)
    assert sshd.accepted() - before == 1  # six sequential steps, one SSH connection


def test_unknown_host_is_refused_with_fingerprint_and_line_unless_opted_out(env: Env, sshd: Sshd,
                                                                            tmp_path: Path) -> None:  # noqa: F811
    empty = tmp_path / "empty_known_hosts"
    env.write("unknown.yaml", f"""
        steps:
          - id: refused
            type: ssh
            with: {conn(sshd, empty)}
            command: touch {sshd.remote}/should-not-exist
            continue_on: {{failure: true}}
          - id: insecure
            type: ssh
            with: {conn(sshd, empty, strict_host_key=False)}
            command: echo ran anyway
        """)
    res = env.run("start", "unknown.yaml")
    steps = env.status("unknown")["steps"]
    reason = steps["refused"]["reason"]
    assert f"127.0.0.1:{sshd.port}" in reason and "host key verification failed" in reason
    fpr = subprocess.run(["ssh-keygen", "-l", "-f", str(sshd.dir / "host_key.pub")], capture_output=True,
                         text=True).stdout.split()[1]
    assert fpr in reason
    assert f"[127.0.0.1]:{sshd.port} {sshd.host_pub}" in reason  # the exact line to add
    assert not (sshd.remote / "should-not-exist").exists()
    assert steps["insecure"]["status"] == "succeeded"
    assert logs(env, "unknown", "insecure")[0] == "ran anyway\n"
    no_traceback(res, env)


def test_a_changed_host_key_is_refused(env: Env, sshd: Sshd, tmp_path: Path) -> None:  # noqa: F811
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    env.write("mitm.yaml", f"""
        steps:
          - id: s
            type: ssh
            with: {conn(sshd, wrong)}
            command: echo no
        """)
    res = env.run("start", "mitm.yaml")
    assert res.returncode != 0
    reason = env.status("mitm")["steps"]["s"]["reason"]
    assert "is NOT the one" in reason and f"127.0.0.1:{sshd.port}" in reason


def test_password_from_secrets_is_used_and_never_shown(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    env.write("pw.yaml", f"""
        secrets:
          - name: SSH_PASSWORD
            provider: env
            key: TEST_SSH_PW
        steps:
          - id: login
            type: ssh
            with: {conn(sshd, known, key="", password="${SSH_PASSWORD}")}
            script: |
              touch {sshd.remote}/pw-up
              echo "logged in as $(id -un)"
              env | grep -c "^SSH_PASSWORD=" || true
              sleep 1.5
        """)
    proc = subprocess.Popen([sys.executable, "-m", "dagu", "start", "pw.yaml"], cwd=env.dir,
                            env={**env.env, "TEST_SSH_PW": PASSWORD}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (sshd.remote / "pw-up").exists())
        # while the step runs, no process on the machine shows the password in its arguments
        assert not procs(PASSWORD)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert logs(env, "pw", "login")[0] == f"logged in as {USER}\n0\n"  # not handed to the remote env
    assert PASSWORD not in out + err
    for path in env.home.rglob("*"):  # run folder, status, logs, journal and the plan cache
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_authentication_failure_names_the_host_and_a_hint(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    env.write("badpw.yaml", f"""
        env:
          - WRONG_PW: wrong-password
        steps:
          - id: s
            type: ssh
            with: {conn(sshd, known, key="", password="${WRONG_PW}")}
            command: echo no
        """)
    res = env.run("start", "badpw.yaml")
    assert res.returncode != 0
    reason = env.status("badpw")["steps"]["s"]["reason"]
    assert f"{USER}@127.0.0.1:{sshd.port}" in reason and "authentication failed" in reason
    assert "wrong-password" not in reason
    no_traceback(res, env)


def test_refused_and_unresolvable_hosts_fail_the_step_with_where_and_why(env: Env, known: Path) -> None:
    from tests.servers import free_port

    port = free_port()
    env.write("down.yaml", f"""
        type: graph
        steps:
          - id: refused
            type: ssh
            with: {{host: 127.0.0.1, port: {port}, user: x, known_host_file: {known}}}
            command: echo no
          - id: dns
            type: ssh
            with: {{host: no-such-host.invalid, user: x, known_host_file: {known}, timeout: 5s}}
            command: echo no
        """)
    res = env.run("start", "down.yaml")
    assert res.returncode != 0
    steps = env.status("down")["steps"]
    assert f"127.0.0.1:{port}: connection refused" in steps["refused"]["reason"]
    assert "no-such-host.invalid:22: cannot resolve host" in steps["dns"]["reason"]
    no_traceback(res, env)


def test_stop_kills_the_remote_process_group(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    a, b, c = marker(), marker(), marker()
    env.write("stopme.yaml", f"""
        steps:
          - id: long
            type: ssh
            with: {conn(sshd, known)}
            script: |
              trap '' TERM
              sleep {a} &
              sh -c 'sleep {b}; echo never' &
              touch {sshd.remote}/stop-up
              sleep {c}
        """)
    proc = env.popen("start", "stopme.yaml")
    try:
        wait_until(lambda: (sshd.remote / "stop-up").exists() and all(procs(f"sleep {m}") for m in (a, b, c)))
        started = time.monotonic()
        assert env.run("stop", "stopme.yaml").returncode == 0
        proc.communicate(timeout=30)
        assert time.monotonic() - started < 5 + 3  # the grace period, plus starting `dagu stop` itself
        # TERM was ignored (trap), so the KILL that follows it ended them: nothing is left
        assert not any(procs(f"sleep {m}") for m in (a, b, c))
        assert env.status("stopme")["status"] == "aborted"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_timeout_kills_the_remote_command(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    m = marker()
    env.write("slow.yaml", f"""
        steps:
          - id: slow
            type: ssh
            timeout_sec: 1
            with: {conn(sshd, known)}
            command: sleep {m}
        """)
    started = time.monotonic()
    res = env.run("start", "slow.yaml")
    assert res.returncode != 0
    assert time.monotonic() - started < 8
    assert not procs(f"sleep {m}")
    assert env.status("slow")["steps"]["slow"]["status"] == "failed"


def test_retry_policy_retries_a_failing_ssh_step(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    counter = sshd.remote / "retry-count"
    env.write("retry.yaml", f"""
        steps:
          - id: flaky
            type: ssh
            with: {conn(sshd, known)}
            retry_policy: {{limit: 2, interval_sec: 0}}
            script: |
              echo x >> {counter}
              [ "$(wc -l < {counter})" -ge 2 ]
        """)
    res = env.run("start", "retry.yaml")
    assert res.returncode == 0, res.stderr
    assert len(env.status("retry")["steps"]["flaky"]["attempts"]) == 2


def test_schema_errors_are_compile_errors_at_their_line(env: Env) -> None:
    env.write("bad.yaml", """
        steps:
          - id: s
            type: ssh
            with:
              host: example.com
              strict_hostkey: false
              port: [22]
            command: echo hi
          - id: t
            type: ssh
            with: {user: me}
            command: echo hi
        """)
    res = env.run("compile", "bad.yaml")
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "bad.yaml:7:" in text and "did you mean 'strict_host_key'" in text
    assert "bad.yaml:8:" in text
    assert "host" in text and "bad.yaml:12:" in text  # missing required host


def test_compiling_imports_no_ssh_client(env: Env) -> None:
    flow = env.write("lazy.yaml", """
        ssh: {host: example.com, user: me}
        steps:
          - {id: s, type: ssh, command: echo hi}
          - {id: f, type: sftp, with: {source: a, destination: b}}
        """)
    code = ("import sys\nfrom dagu.compiler.pipeline import compile_file\n"
            f"r = compile_file({str(flow)!r})\nassert r.ok, r\n"
            "bad = [m for m in sys.modules if m.split('.')[0] == 'paramiko' or m.startswith('dagu.executors.ssh')"
            " or m == 'dagu.executors.sftp']\nassert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_example_compiles(env: Env) -> None:
    res = env.run("compile", str(ROOT / "examples" / "ssh.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_through_a_bastion(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    # the same sshd serves as its own jump host: the target connection runs inside a direct-tcpip
    # channel of the bastion's, and both are authenticated and host-key checked
    bastion = {"host": "127.0.0.1", "port": sshd.port, "user": USER, "key": str(sshd.client_key)}
    env.write("jump.yaml", f"""
        steps:
          - id: s
            type: ssh
            with: {conn(sshd, known, bastion=bastion)}
            command: echo via-bastion
        """)
    before = sshd.accepted()
    res = env.run("start", "jump.yaml")
    assert res.returncode == 0, res.stderr
    assert logs(env, "jump", "s")[0] == "via-bastion\n"
    time.sleep(0.2)
    assert sshd.accepted() - before == 2


def test_a_large_output_streams_to_the_log_and_is_capped_for_output(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    env.write("big.yaml", f"""
        max_output_size: 10000
        steps:
          - id: big
            type: ssh
            with: {conn(sshd, known)}
            command: head -c 3000000 /dev/zero | tr '\\0' a
            output: BIG
        """)
    res = env.run("start", "big.yaml")
    step = env.status("big")["steps"]["big"]
    assert res.returncode != 0 and step["status"] == "failed"
    assert "max_output_size (10000 bytes)" in step["reason"]
    assert Path(step["attempts"][-1]["stdout"]).stat().st_size == 3_000_000  # all of it, in the log


def test_a_forked_sub_run_opens_its_own_connection(env: Env, sshd: Sshd, known: Path) -> None:  # noqa: F811
    # the parent's pooled connection must not be used by a forked child supervisor
    env.write("parent.yaml", f"""
        ssh: {conn(sshd, known)}
        steps:
          - id: first
            type: ssh
            command: echo parent
          - id: child
            call: child
        ---
        name: child
        ssh: {conn(sshd, known)}
        steps:
          - id: inner
            type: ssh
            command: echo child > {sshd.remote}/child-ran
        """)
    res = env.run("start", "parent.yaml", timeout=60)
    assert res.returncode == 0, res.stderr
    assert (sshd.remote / "child-ran").read_text() == "child\n"


def test_agent_keys_are_used_without_key_or_password(env: Env, sshd: Sshd, known: Path, tmp_path: Path) -> None:  # noqa: F811
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(sock.exists, timeout=10)
        subprocess.run(["ssh-add", str(sshd.client_key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
                       check=True, capture_output=True)
        env.write("agent.yaml", f"""
            steps:
              - id: s
                type: ssh
                with: {conn(sshd, known, key="")}
                command: echo agent-ok
            """)
        res = env.run("start", "agent.yaml", env={"SSH_AUTH_SOCK": str(sock), "HOME": str(tmp_path)})
        assert res.returncode == 0, res.stderr
        assert logs(env, "agent", "s")[0] == "agent-ok\n"
    finally:
        agent.terminate()
        agent.wait(10)
