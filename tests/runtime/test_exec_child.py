"""process/exec_child.start gives the child Popen would, and raises what Popen would.

Each case runs twice: through fork_exec directly (this CPython) and through Popen, and the
observable child (environment, directory, descriptors, session, signal dispositions, stdin) must
be the same."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from dagu.process import exec_child

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")

PROBE = ('echo "env=$(env | sort | tr "\\n" ,)"; echo "cwd=$(pwd -P)"; echo "fds=$(ls /proc/$$/fd | sort -n | tr "\\n" ,)"; '
         'echo "sid=$(cut -d" " -f6 /proc/$$/stat) pid=$$"; echo "ign=$(grep SigIgn /proc/$$/status | cut -f2)"; '
         'cat; echo "stdin=eof"; echo to-stderr >&2')


def _run(tmp_path: Path, use_popen: bool, argv: list[str], program: str, env: dict[str, str],
         cwd: str, preexec=None) -> tuple[int, str, str]:
    out_path, err_path = tmp_path / f"out{use_popen}", tmp_path / f"err{use_popen}"
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        handle = exec_child.start(argv, program, env, cwd, out, err, preexec, use_popen=use_popen)
    finally:
        os.close(out)
        os.close(err)
    _, status = os.waitpid(handle.pid, 0)
    handle.returncode = os.waitstatus_to_exitcode(status)
    return handle.returncode, out_path.read_text(), err_path.read_text()


def _fields(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if line.split("=", 1)[0] in
                ("env", "cwd", "fds", "sid", "ign", "stdin"))


def test_the_child_is_the_one_popen_starts(tmp_path: Path) -> None:
    stray = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stray, 90, inheritable=True)  # an inheritable descriptor: close_fds must still close it
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ODD": "a b", "LANG": "C"}
    try:
        direct = _run(tmp_path, False, ["sh", "-c", PROBE], "/bin/sh", env, str(work))
        popen = _run(tmp_path, True, ["sh", "-c", PROBE], "/bin/sh", env, str(work))
    finally:
        os.close(stray)
        os.close(90)
    seen = []
    for code, out, err in (direct, popen):
        assert code == 0 and err == "to-stderr\n"
        fields = _fields(out)
        assert fields["cwd"] == str(work.resolve())
        assert fields["env"].split(",")[:3] == ["LANG=C", "ODD=a b", f"PATH={env['PATH']}"]
        assert "90" not in fields["fds"].split(",")
        sid, pid = fields.pop("sid").split(" pid=")
        assert sid == pid  # a session leader
        assert int(fields["ign"], 16) & (1 << (signal.SIGPIPE - 1)) == 0  # SIGPIPE back to its default
        assert fields["stdin"] == "eof"  # /dev/null: nothing to read
        seen.append(fields)
    assert seen[0] == seen[1]


def test_a_missing_program_and_a_missing_directory_raise_as_with_popen(tmp_path: Path) -> None:
    for use_popen in (False, True):
        with pytest.raises(FileNotFoundError) as missing:
            _run(tmp_path, use_popen, ["nothing-here"], str(tmp_path / "nothing-here"), {}, str(tmp_path))
        assert missing.value.filename == str(tmp_path / "nothing-here")
        with pytest.raises(FileNotFoundError) as no_dir:
            _run(tmp_path, use_popen, ["sh"], "/bin/sh", {}, str(tmp_path / "gone"))
        assert no_dir.value.filename == str(tmp_path / "gone")
        plain = tmp_path / "plain.txt"
        plain.write_text("not a program\n")
        with pytest.raises(PermissionError) as denied:
            _run(tmp_path, use_popen, ["plain"], str(plain), {}, str(tmp_path))
        assert denied.value.filename == str(plain)


def test_a_preexec_runs_in_the_child_before_the_exec(tmp_path: Path) -> None:
    """What limits a step (its rlimits) is set between fork and exec: the program sees it, the caller does not."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_NOFILE)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, before[1]))

    for use_popen in (False, True):
        code, out, _ = _run(tmp_path, use_popen, ["sh", "-c", "ulimit -n"], "/bin/sh", {}, str(tmp_path), limit)
        assert (code, out) == (0, "64\n")
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


def test_an_equals_sign_in_a_variable_name_is_refused_before_the_fork(tmp_path: Path) -> None:
    for use_popen in (False, True):
        with pytest.raises(ValueError, match="illegal environment variable name"):
            _run(tmp_path, use_popen, ["true"], "/bin/true", {"A=B": "1"}, str(tmp_path))


def test_popen_stands_in_where_the_private_function_differs() -> None:
    expected = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
    assert (exec_child._fork_exec is not None) == expected
