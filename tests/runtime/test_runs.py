"""End-to-end runs through the `dagu` command, with real processes and real files.

Each test gets its own DAGU_HOME and work directory; the engine is started the
way a user starts it (`python -m dagu ...`), so signals, process groups, locks
and exit codes are the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import Env

def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie stays until init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_run_records_status_outputs_and_accounting(env: Env) -> None:
    env.write("job.yaml", """
        steps:
          - id: make
            command: |
              sleep 0.3
              echo '{"n": 42}'
            output: DATA
          - id: use
            command: echo "got ${DATA.n}" > got.txt
        """)
    res = env.run("start", "job.yaml", "--run-id", "r1")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "got.txt").read_text() == "got 42\n"
    st = env.status("job", "r1")
    assert st["status"] == "succeeded" and st["run_id"] == "r1"
    assert [s["status"] for s in st["steps"].values()] == ["succeeded", "succeeded"]
    make = st["steps"]["make"]
    assert make["output"] == '{"n": 42}'
    usage = make["attempts"][0]["usage"]
    assert usage["wall_sec"] > 0 and usage["peak_rss_bytes"] > 0
    assert Path(make["attempts"][0]["stdout"]).read_text() == '{"n": 42}\n'
    text = env.run("status", "job.yaml").stdout
    assert "succeeded" in text and "PEAK RSS" in text
    hist = json.loads(env.run("history", "job", "--format", "json").stdout)
    assert [h["run_id"] for h in hist] == ["r1"]
    # the journal is JSON lines a human can read, and the snapshot agrees with it
    run_dir = env.home / "runs" / "job" / "r1"
    events = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert events[0]["ev"] == "run_started" and events[-1]["ev"] == "run_finished"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_failure_exit_code_and_error_message(env: Env) -> None:
    env.write("bad.yaml", """
        steps:
          - id: boom
            command: echo oops >&2; exit 3
          - id: never
            command: touch never.txt
        """)
    res = env.run("start", "bad.yaml")
    assert res.returncode == 1
    assert "failed" in res.stderr and "boom" in res.stderr
    assert not (env.dir / "never.txt").exists()
    st = env.status("bad")
    assert st["steps"]["boom"]["attempts"][0]["exit_code"] == 3
    assert st["steps"]["never"]["status"] == "not_started"


def test_timeout_kills_a_child_that_ignores_sigterm(env: Env) -> None:
    env.write("slow.yaml", """
        max_clean_up_time_sec: 1
        steps:
          - id: stubborn
            timeout_sec: 1
            command: trap '' TERM; sh -c "trap '' TERM; sleep 60" ; sleep 60
        """)
    started = time.monotonic()
    res = env.run("start", "slow.yaml", timeout=30)
    took = time.monotonic() - started
    assert res.returncode == 1
    assert took < 10, f"took {took:.1f}s"
    st = env.status("slow")
    attempt = st["steps"]["stubborn"]["attempts"][0]
    assert "timed out" in attempt["error"]
    assert attempt["signal"] == "SIGKILL"
    # nothing of the step's process group survives
    out = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True).stdout.split()
    assert str(attempt["pid"]) not in out


def test_grandchild_holding_output_open_does_not_delay_the_run(env: Env) -> None:
    env.write("bg.yaml", """
        steps:
          - id: spawner
            command: (sleep 20; echo late) & echo spawned
        """)
    started = time.monotonic()
    res = env.run("start", "bg.yaml", timeout=30)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < 8
    subprocess.run(["pkill", "-f", "sleep 20"], check=False)


def test_step_killed_by_signal_names_it(env: Env) -> None:
    env.write("sig.yaml", """
        steps:
          - id: selfkill
            command: kill -KILL $$
        """)
    res = env.run("start", "sig.yaml")
    assert res.returncode == 1
    st = env.status("sig")
    attempt = st["steps"]["selfkill"]["attempts"][0]
    assert attempt["signal"] == "SIGKILL" and "SIGKILL" in attempt["error"]


def test_sigkill_of_supervisor_then_status_and_retry(env: Env) -> None:
    env.write("crash.yaml", """
        steps:
          - id: first
            command: echo first >> trace.txt
          - id: long
            command: |
              if [ -f resume.flag ]; then echo resumed >> trace.txt; else touch started.flag; sleep 30; fi
          - id: last
            command: echo last >> trace.txt
        """)
    proc = env.popen("start", "crash.yaml", "--run-id", "c1")
    env.wait_for("started.flag")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    st = env.status("crash", "c1")
    orphan = st["steps"]["long"]["attempts"][0]["pid"]
    deadline = time.monotonic() + 10
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(orphan)  # the run's watchdog killed the step's tree when its supervisor died
    assert st["status"] == "failed" and st["interrupted"] is True
    assert st["steps"]["first"]["status"] == "succeeded"
    assert st["steps"]["long"]["status"] == "failed"
    assert "interrupted" in st["steps"]["long"]["reason"]
    (env.dir / "resume.flag").touch()
    res = env.run("retry", "crash.yaml", "--run-id", "c1")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "trace.txt").read_text().split() == ["first", "resumed", "last"]
    st = env.status("crash", "c1")
    assert st["status"] == "succeeded"
    assert len(st["steps"]["first"]["attempts"]) == 1
    assert len(st["steps"]["long"]["attempts"]) == 2


def test_corrupt_state_files_are_reported_and_other_runs_stay_readable(env: Env) -> None:
    env.write("two.yaml", """
        steps:
          - id: a
            command: echo a
        """)
    assert env.run("start", "two.yaml", "--run-id", "good").returncode == 0
    assert env.run("start", "two.yaml", "--run-id", "bad").returncode == 0
    bad = env.home / "runs" / "two" / "bad"
    (bad / "status.json").write_text('{"format": 1, "dag": "two", "run_')
    with open(bad / "journal.jsonl", "a") as fh:
        fh.write('{"ev": "step_fin')
    res = env.run("status", "two", "--run-id", "bad")
    assert res.returncode == 0
    assert str(bad / "status.json") in res.stderr and "damaged" in res.stderr
    assert str(bad / "journal.jsonl") in res.stderr and "incomplete" in res.stderr
    assert "succeeded" in res.stdout
    hist = json.loads(env.run("history", "two", "--format", "json").stdout)
    assert {h["run_id"]: h["status"] for h in hist} == {"good": "succeeded", "bad": "succeeded"}
    # a journal damaged in the middle: the run is still listed, with the line named
    lines = (bad / "journal.jsonl").read_text().splitlines()
    lines[1] = "{not json"
    (bad / "journal.jsonl").write_text("\n".join(lines) + "\n")
    res = env.run("status", "two", "--run-id", "bad")
    assert f"{bad / 'journal.jsonl'}:2" in res.stderr
    assert env.status("two", "good")["status"] == "succeeded"


def test_environment_does_not_leak_into_steps(env: Env) -> None:
    env.write("leak.yaml", """
        sandbox:
          env_passthrough: [ALLOWED_ONE, PFX_*]
        steps:
          - id: show
            command: |
              echo "secret=${OPERATOR_SECRET:-unset}" >> env.txt
              echo "allowed=${ALLOWED_ONE:-unset}" >> env.txt
              echo "pfx=${PFX_A:-unset}" >> env.txt
              echo "path=${PATH:+set}" >> env.txt
              echo "step_only=${STEP_ONLY:-unset}" >> env.txt
          - id: opened
            sandbox:
              env_passthrough: [STEP_ONLY]
            command: echo "step_only=${STEP_ONLY:-unset}" >> env.txt
        """)
    res = env.run("start", "leak.yaml", env={"OPERATOR_SECRET": "hunter2", "ALLOWED_ONE": "yes", "PFX_A": "p",
                                              "STEP_ONLY": "s"})
    assert res.returncode == 0, res.stderr
    assert (env.dir / "env.txt").read_text().split() == ["secret=unset", "allowed=yes", "pfx=p", "path=set",
                                                         "step_only=unset", "step_only=s"]


def test_output_over_max_output_size_fails_clearly(env: Env) -> None:
    env.write("big.yaml", """
        max_output_size: 1000
        steps:
          - id: chatty
            command: head -c 5000 /dev/zero | tr '\\0' x
            output: OUT
        """)
    res = env.run("start", "big.yaml")
    assert res.returncode == 1
    st = env.status("big")
    assert "max_output_size" in st["steps"]["chatty"]["attempts"][0]["error"]


def test_second_start_is_refused_while_max_active_runs_is_reached(env: Env) -> None:
    env.write("busy.yaml", """
        steps:
          - id: hold
            command: touch started.flag; sleep 30
        """)
    first = env.popen("start", "busy.yaml", "--run-id", "one")
    try:
        env.wait_for("started.flag")
        second = env.run("start", "busy.yaml", "--run-id", "two")
        assert second.returncode == 1
        assert "max_active_runs" in second.stderr and "one" in second.stderr
        stop = env.run("stop", "busy.yaml")
        assert stop.returncode == 0 and "one" in stop.stderr
        first.wait(timeout=20)
        assert env.status("busy", "one")["status"] == "aborted"
    finally:
        first.kill()
    # the slot of a killed supervisor is free again
    assert env.run("start", "busy.yaml", "--run-id", "three", "-q", env={}).returncode in (0, 1)


def test_stop_by_sigterm_runs_abort_handler(env: Env) -> None:
    env.write("abort.yaml", """
        handler_on:
          abort:
            command: echo "abort ${DAG_RUN_STATUS}" >> trace.txt
        steps:
          - id: long
            command: touch started.flag; sleep 30
        """)
    proc = env.popen("start", "abort.yaml")
    env.wait_for("started.flag")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 1
    assert (env.dir / "trace.txt").read_text() == "abort aborted\n"
    st = env.status("abort")
    assert st["steps"]["long"]["status"] == "aborted"


def test_exec_logs_and_cleanup(env: Env) -> None:
    res = env.run("exec", "--name", "oneoff", "--", "sh", "-c", "echo hello; echo warn >&2")
    assert res.returncode == 0, res.stderr
    logs = env.run("logs", "oneoff", "--step", "exec")
    assert logs.stdout == "hello\n"
    assert env.run("logs", "oneoff", "--step", "exec", "--stderr").stdout == "warn\n"
    assert len(json.loads(env.run("history", "oneoff", "--format", "json").stdout)) == 1
    kept = env.run("cleanup", "oneoff", "--retention-days", "1")
    assert "deleted 0" in kept.stderr
    gone = env.run("cleanup", "oneoff", "--retention-days", "0")
    assert "deleted 1" in gone.stderr
    assert json.loads(env.run("history", "oneoff", "--format", "json").stdout) == []


def test_params_are_checked_before_anything_runs(env: Env) -> None:
    env.write("p.yaml", """
        params:
          - NAME: world
        steps:
          - id: hi
            command: echo "hi ${NAME}" > hi.txt
        """)
    res = env.run("start", "p.yaml", "--", "NAMEE=x")
    assert res.returncode == 1 and "NAMEE" in res.stderr and "NAME" in res.stderr
    assert not (env.home / "runs" / "p").exists() or env.run("history", "p", "--format", "json").stdout.strip() == "[]"
    assert env.run("start", "p.yaml", "-p", "NAME=you").returncode == 0
    assert (env.dir / "hi.txt").read_text() == "hi you\n"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_full_disk_fails_the_run_and_keeps_earlier_runs(env: Env, tmp_path: Path) -> None:
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unprivileged user+mount namespaces are not available here")
    env.write("fill.yaml", """
        steps:
          - id: first
            command: echo ok
          - id: filler
            command: head -c 3000000 /dev/zero > "$DAGU_HOME/filler"; echo wrote
          - id: after
            command: echo after
        """)
    mount_home = tmp_path / "small"
    mount_home.mkdir()
    script = (f"mount -t tmpfs -o size=2m tmpfs {mount_home} && "
              f"DAGU_HOME={mount_home} {sys.executable} -m dagu start fill.yaml --run-id early -q; "
              f"rm -f {mount_home}/filler; "
              f"DAGU_HOME={mount_home} {sys.executable} -m dagu start fill.yaml --run-id full; echo rc=$?; "
              f"rm -f {mount_home}/filler; "
              f"DAGU_HOME={mount_home} {sys.executable} -m dagu status fill --run-id early --format json")
    res = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=env.dir,
                         env={**env.env, "DAGU_HOME": str(mount_home)}, capture_output=True, text=True, timeout=60)
    assert "rc=1" in res.stdout, res.stdout + res.stderr
    assert "no space left" in res.stderr
    early = json.loads(res.stdout[res.stdout.index("{"):])
    assert early["status"] == "failed" or early["status"] == "succeeded"
    assert early["run_id"] == "early"


def test_strict_sandbox_step_has_no_network_and_a_read_only_root(env: Env) -> None:
    from dagu.process.sandbox import probe_strict

    found = probe_strict()
    if isinstance(found, str):
        pytest.skip(found)
    env.write("strict.yaml", """
        sandbox:
          strict: true
        steps:
          - id: boxed
            command: |
              echo inside > here.txt
              if echo x > "$HOME/.dagu-strict-probe" 2>/dev/null; then echo home-writable > home.txt; fi
              echo tmp > "$TMPDIR/scratch" && echo tmpdir-ok >> here.txt
        """)
    res = env.run("start", "strict.yaml")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "here.txt").read_text() == "inside\ntmpdir-ok\n"
    assert not (env.dir / "home.txt").exists()


def test_limits_fail_the_step_with_the_limit_named(env: Env) -> None:
    env.write("limited.yaml", f"""
        type: graph
        steps:
          - id: hog
            limits:
              memory: 64M
            command: {sys.executable} -c "b = bytearray(400 * 1024 * 1024); import time; time.sleep(2)"
          - id: spin
            limits:
              cpu_sec: 1
            command: |
              while :; do :; done
          - id: files
            limits:
              open_files: 16
            command: |
              {sys.executable} -c "fs = [open('/dev/null') for _ in range(64)]"
        """)
    res = env.run("start", "limited.yaml", timeout=60)
    assert res.returncode == 1
    steps = env.status("limited")["steps"]
    assert "limits.memory" in steps["hog"]["attempts"][0]["error"]
    assert "memory_limit_by" in steps["hog"]["attempts"][0]["usage"]
    assert "limits.cpu_sec" in steps["spin"]["attempts"][0]["error"]
    assert steps["files"]["status"] == "failed"
    assert "Too many open files" in Path(steps["files"]["attempts"][0]["stderr"]).read_text()


def test_restart_and_follow_logs(env: Env) -> None:
    env.write("svc.yaml", """
        params:
          - MODE: one
        steps:
          - id: serve
            command: |
              echo "mode ${MODE}"
              touch started.flag
              sleep 30
        """)
    first = env.popen("start", "svc.yaml", "--", "MODE=two")
    try:
        env.wait_for("started.flag")
        follower = env.popen("logs", "svc", "--step", "serve", "-f")
        (env.dir / "started.flag").unlink()
        restarted = env.popen("restart", "svc.yaml")
        env.wait_for("started.flag")
        assert first.wait(timeout=20) == 1  # the first run was stopped
        out, _ = follower.communicate(timeout=20)  # -f ends when the followed run ends
        assert out == "mode two\n"
        runs = json.loads(env.run("history", "svc", "--format", "json").stdout)
        assert [r["status"] for r in runs] == ["running", "aborted"]
        assert runs[0]["params"] == ["MODE=two"]  # restart keeps the params
        env.run("stop", "svc")
        restarted.wait(timeout=20)
    finally:
        first.kill()


def test_sub_dag_runs_are_real_runs_linked_to_their_parent(env: Env) -> None:
    env.write("nest.yaml", """
        steps:
          - id: outer
            call: middle
        ---
        name: middle
        steps:
          - id: inner
            call: leaf
            params: "WHO=middle"
        ---
        name: leaf
        params:
          - WHO: nobody
        steps:
          - id: say
            command: echo "leaf from ${WHO}" >> trace.txt
        """)
    res = env.run("start", "nest.yaml", "--run-id", "n1")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "trace.txt").read_text() == "leaf from middle\n"
    tree = env.status("nest", "n1")["sub_runs"]
    assert [(r["step"], r["dag"], r["run_id"], r["status"]) for r in tree] == \
        [("outer", "middle", "n1.outer", "succeeded")]
    assert [(r["dag"], r["status"]) for r in tree[0]["runs"]] == [("leaf", "succeeded")]
    child = env.status("middle", "n1.outer")
    assert child["parent"] == "nest/n1" and child["params"] == []
    assert "sub-DAG runs:" in env.run("status", "nest", "--run-id", "n1").stdout


def test_hist_retention_days_expires_old_runs_after_each_run(env: Env) -> None:
    env.write("keep.yaml", """
        hist_retention_days: 1
        steps:
          - id: a
            command: "true"
        """)
    assert env.run("start", "keep.yaml", "--run-id", "old").returncode == 0
    old = env.home / "runs" / "keep" / "old"
    status = json.loads((old / "status.json").read_text())
    status["started_at"] -= 3 * 86400
    status["finished_at"] -= 3 * 86400
    (old / "status.json").write_text(json.dumps(status))
    past = time.time() - 3 * 86400
    for path in (old, old / "journal.jsonl"):
        os.utime(path, (past, past))
    # the journal still says the run finished now: expiry goes by the folded status, so rewrite it too
    lines = [json.loads(line) for line in (old / "journal.jsonl").read_text().splitlines()]
    for event in lines:
        event["at"] -= 3 * 86400
    (old / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    os.utime(old / "journal.jsonl", (past, past))
    os.utime(old, (past, past))
    os.utime(old.parent / ".retention-age", (past, past))  # the last age check is as old
    assert env.run("start", "keep.yaml", "--run-id", "new").returncode == 0
    assert [r["run_id"] for r in json.loads(env.run("history", "keep", "--format", "json").stdout)] == ["new"]


def test_a_step_that_cannot_start_is_reported_where_it_is_written(env: Env) -> None:
    path = env.write("wd.yaml", """
        params:
          - WHO: x
        steps:
          - id: a
            working_dir: nowhere
            command: echo hi
        """)
    (env.dir / "nowhere").write_text("a file: the missing directory cannot be created\n")
    res = env.run("start", "wd.yaml")
    assert res.returncode == 1
    assert f"{path}:5:5: working directory" in res.stderr and "fix working_dir" in res.stderr
    refused = env.run("start", "wd.yaml", "--", "UNDECLARED=1")
    assert refused.returncode == 1 and f"{path}: unknown param 'UNDECLARED'" in refused.stderr


def test_a_slot_names_its_run_until_the_run_ends_under_its_supervisor(env: Env) -> None:
    """The next start of a DAG looks for leftovers of the run its slot last held only when that
    run did not end under its supervisor: a clean end empties the slot file, a kill -9 leaves it."""
    from dagu.store.runs import Store

    env.write("slot.yaml", """
        steps:
          - id: wait
            command: |
              if [ -f go.flag ]; then exit 0; fi
              touch started.flag; sleep 30
        """)
    slot = env.home / "runs" / "slot" / ".slots" / "0.lock"
    proc = env.popen("start", "slot.yaml", "--run-id", "s1")
    env.wait_for("started.flag")
    assert slot.read_text().strip().endswith("/s1"), "a live run holds its slot"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert [run.run_id for run in Store(str(env.home)).slot_holders("slot")] == ["s1"], "a killed run stays named"
    (env.dir / "go.flag").touch()
    res = env.run("start", "slot.yaml", "--run-id", "s2")
    assert res.returncode == 0, res.stderr
    assert slot.read_text() == "" and list(Store(str(env.home)).slot_holders("slot")) == []
