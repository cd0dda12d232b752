"""The step environment allow-list, and strict mode with every sandbox mechanism this host has.

A mechanism the host lacks (bubblewrap not installed, user namespaces off) is skipped with the
probe's reason; each present one must block the network and writes outside its writable paths,
and each check has an unsandboxed control that succeeds, so the test cannot pass vacuously.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dagu.process.limits import Limits, describe_failure
from dagu.process.sandbox import (ALLOWED_ENV, SANDBOX_MECHANISMS, StrictSandbox, base_environment,
                                  probe_sandbox, probe_strict)

PY = sys.executable

ENVIRON = {
    "PATH": "/usr/bin:/bin", "HOME": "/home/op", "LANG": "C.UTF-8", "LC_ALL": "C", "LC_TIME": "C",
    "TERM": "xterm", "SECRET": "hunter2", "AWS_ACCESS_KEY_ID": "AKIA", "AWS_REGION": "eu-west-1",
    "MY_TOKEN": "t", "MY_TOKENS": "ts", "DAGU_HOME": "/stale", "DAG_RUN_ID": "stale", "DAGGER": "d",
}


def test_only_the_allow_list_is_inherited_by_default() -> None:
    env = base_environment(ENVIRON)
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/home/op", "LANG": "C.UTF-8", "LC_ALL": "C",
                   "LC_TIME": "C", "TERM": "xterm"}
    assert "LC_*" in ALLOWED_ENV


def test_passthrough_names_and_prefixes() -> None:
    env = base_environment(ENVIRON, ["AWS_*", "MY_TOKEN"])
    assert env["AWS_ACCESS_KEY_ID"] == "AKIA" and env["AWS_REGION"] == "eu-west-1"
    assert env["MY_TOKEN"] == "t" and "MY_TOKENS" not in env  # a name without * is exact
    assert "SECRET" not in env


def test_inherit_all_still_drops_dagus_own_variables() -> None:
    env = base_environment(ENVIRON, inherit_all=True)
    assert env["SECRET"] == "hunter2" and env["DAGGER"] == "d"
    assert "DAGU_HOME" not in env and "DAG_RUN_ID" not in env
    assert "DAGU_HOME" not in base_environment(ENVIRON, ["DAGU_*", "DAG_RUN_ID"])


@pytest.mark.parametrize("pattern", ["A*B", "*", ""])
def test_bad_passthrough_patterns(pattern: str) -> None:
    with pytest.raises(ValueError, match="env_passthrough"):
        base_environment(ENVIRON, [pattern])


# --------------------------------------------------------------------------
# Strict mode
# --------------------------------------------------------------------------


@pytest.fixture(params=SANDBOX_MECHANISMS)
def strict(request: pytest.FixtureRequest) -> StrictSandbox:
    found = probe_sandbox(request.param)
    if isinstance(found, str):
        pytest.skip(f"{request.param} sandbox is not available on this host: {found}")
    return found


def test_probe_strict_prefers_the_first_available_mechanism() -> None:
    found = probe_strict()
    available = [m for m in SANDBOX_MECHANISMS if isinstance(probe_sandbox(m), StrictSandbox)]
    if available:
        assert isinstance(found, StrictSandbox) and found.mechanism == available[0]
    else:
        assert isinstance(found, str) and found.startswith("no strict sandbox on this host: ")


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, start_new_session=True)


CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
except OSError as exc:
    print(type(exc).__name__, exc)
    sys.exit(7)
"""


def test_a_strict_step_cannot_reach_the_network(strict: StrictSandbox, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0)
        port = str(server.getsockname()[1])
        assert run([PY, "-c", CONNECT, port], tmp_path).returncode == 0  # the control connects
        server.accept()[0].close()
        boxed = run(strict.wrap([PY, "-c", CONNECT, port], str(tmp_path), []), tmp_path)
        assert boxed.returncode == 7, boxed.stderr
        with pytest.raises(BlockingIOError):
            server.accept()


WRITES = """
for target in "$WORK/ok" "$LOGS/log.txt" "$OUTSIDE/bad" "/tmp/$TAG"; do
  if echo data > "$target" 2>/dev/null; then echo "wrote $target"; else echo "denied $target"; fi
done
mount -o remount,rw / 2>/dev/null && echo "remounted /"
test -r /proc/self/stat && echo proc
echo x > /dev/null && echo dev
"""


def test_a_strict_step_writes_only_where_allowed(strict: StrictSandbox, tmp_path: Path) -> None:
    work, logs, outside = tmp_path / "work", tmp_path / "logs", tmp_path / "outside"
    for d in (work, logs, outside):
        d.mkdir()
    tag = f"dagu-sandbox-{uuid.uuid4().hex}"
    env = {**os.environ, "WORK": str(work), "LOGS": str(logs), "OUTSIDE": str(outside), "TAG": tag}
    control = subprocess.run(["sh", "-c", WRITES], env=env, capture_output=True, text=True, cwd=work)
    assert f"wrote {outside}/bad" in control.stdout  # unsandboxed, the same script can write there
    (outside / "bad").unlink()
    Path(f"/tmp/{tag}").unlink()

    boxed = subprocess.run(strict.wrap(["sh", "-c", WRITES], str(work), [str(logs)]), env=env,
                           capture_output=True, text=True, cwd=work, timeout=30)
    assert boxed.returncode == 0, boxed.stderr
    assert boxed.stdout.splitlines() == [f"wrote {work}/ok", f"wrote {logs}/log.txt",
                                         f"denied {outside}/bad", f"denied /tmp/{tag}", "proc", "dev"]
    assert (work / "ok").read_text() == "data\n" and (logs / "log.txt").exists()
    assert not (outside / "bad").exists()
    assert not Path(f"/tmp/{tag}").exists()  # /tmp is read-only inside: steps get their own TMPDIR


def test_a_strict_step_killed_by_a_signal_reports_128_plus_n(strict: StrictSandbox,
                                                             tmp_path: Path) -> None:
    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGXCPU)"
    boxed = run(strict.wrap([PY, "-c", kill_self], str(tmp_path), []), tmp_path)
    assert boxed.returncode == 128 + signal.SIGXCPU
    assert describe_failure(Limits(cpu_sec=1), boxed.returncode, False, False).startswith(
        "killed by SIGXCPU (exit status 152 from a shell)")


def test_the_exit_status_and_working_directory_pass_through(strict: StrictSandbox,
                                                            tmp_path: Path) -> None:
    boxed = run(strict.wrap(["sh", "-c", "pwd; exit 3"], str(tmp_path), []), tmp_path)
    assert boxed.returncode == 3 and boxed.stdout.strip() == str(tmp_path)


def test_unknown_mechanism() -> None:
    with pytest.raises(ValueError, match="unknown sandbox mechanism"):
        probe_sandbox("chroot")
    with pytest.raises(ValueError, match="unknown sandbox mechanism"):
        StrictSandbox("chroot").wrap(["true"], "/", [])
