"""History retention with real runs: age, count and size limits, what is never deleted, the log,
crash-safe deletion, and config.yaml.

Runs are started through `dagu` as a user starts them; sizes are checked against `du`, not
against our own measuring code; old runs are made old by rewriting their files the way the
store writes them (event times in the journal and snapshot, and the files' mtimes).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dagu.settings import ConfigError, RetentionSettings, load_settings
from tests.runtime.conftest import Env

QUICK = "steps:\n  - id: a\n    command: echo hello\n"


def _history(env: Env, dag: str) -> list[str]:
    res = env.run("history", dag, "--format", "json")
    assert res.returncode == 0, res.stderr
    return [r["run_id"] for r in json.loads(res.stdout)]


def _log(env: Env) -> list[dict]:
    path = env.home / "retention.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _du(path: Path) -> int:
    """Bytes on disk, as `du` counts them."""
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def _start(env: Env, file: str, run_id: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    res = env.run("start", file, "--run-id", run_id, env=extra_env)
    assert res.returncode == 0, res.stderr
    return res


def _make_old(env: Env, dag: str, run_id: str, days: float) -> None:
    """Move a finished run `days` into the past: its events, its snapshot and its files' mtimes."""
    run = env.home / "runs" / dag / run_id
    shift = days * 86400
    events = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    for event in events:
        event["at"] -= shift
    (run / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    status = json.loads((run / "status.json").read_text())
    status["started_at"] -= shift
    status["finished_at"] -= shift
    (run / "status.json").write_text(json.dumps(status))
    past = time.time() - shift
    for path in (run / "journal.jsonl", run / "status.json", run):
        os.utime(path, (past, past))
    stamp = run.parent / ".retention-age"  # time passed for the DAG's last age check too
    if stamp.exists():
        os.utime(stamp, (past, past))


def test_count_limit_keeps_the_newest_runs_and_logs_the_rest(env: Env) -> None:
    env.write("counted.yaml", "hist_retention_runs: 2\n" + QUICK)
    first = _start(env, "counted.yaml", "r1")
    _start(env, "counted.yaml", "r2")
    assert "retention" not in first.stderr
    third = _start(env, "counted.yaml", "r3")
    assert "dagu: retention removed 1 run(s)" in third.stderr and "(1 by count)" in third.stderr
    _start(env, "counted.yaml", "r4")
    assert _history(env, "counted") == ["r4", "r3"]
    log = _log(env)
    assert [(r["dag"], r["run_id"], r["reason"], r["status"]) for r in log] == \
        [("counted", "r1", "count", "succeeded"), ("counted", "r2", "count", "succeeded")]
    assert all(r["bytes"] > 0 and r["at"] > 0 for r in log)
    assert not (env.home / "runs" / "counted" / "r1").exists()


def test_days_come_from_the_dag_else_from_config_yaml(env: Env) -> None:
    (env.home / "config.yaml").write_text("hist_retention_days: 2\n")
    env.write("plain.yaml", QUICK)
    env.write("own.yaml", "hist_retention_days: 10\n" + QUICK)
    for file in ("plain.yaml", "own.yaml"):
        _start(env, file, "old")
        _start(env, file, "older")
        _make_old(env, file[:-5], "old", 3)
        _make_old(env, file[:-5], "older", 12)
        _start(env, file, "new")
    assert _history(env, "plain") == ["new"]  # config's 2 days: both went
    assert _history(env, "own") == ["new", "old"]  # its own 10 days: only the 12-day-old run went
    assert sorted((r["dag"], r["run_id"], r["reason"]) for r in _log(env)) == \
        [("own", "older", "age"), ("plain", "old", "age"), ("plain", "older", "age")]
    # the environment wins over config.yaml
    res = env.run("start", "plain.yaml", "--run-id", "newest", env={"DAGU_HIST_RETENTION_DAYS": "0"})
    assert res.returncode == 0 and _history(env, "plain") == ["newest"]


def test_size_cap_removes_the_oldest_finished_runs_and_never_an_active_one(env: Env) -> None:
    env.write("gated.yaml", """
        steps:
          - id: gate
            command: "true"
            approval:
              prompt: go?
        """)
    env.write("slow.yaml", """
        steps:
          - id: wait
            command: touch slow.flag; sleep 30
        """)
    env.write("fill.yaml", """
        steps:
          - id: a
            command: head -c 20000 /dev/zero
        """)
    assert env.run("start", "gated.yaml", "--run-id", "waiting").returncode == 0
    assert env.run("enqueue", "fill.yaml", "--run-id", "queued").returncode == 0
    slow = env.popen("start", "slow.yaml", "--run-id", "running")
    try:
        env.wait_for("slow.flag")
        for n in (1, 2, 3):
            _start(env, "fill.yaml", f"f{n}")
            time.sleep(0.05)  # distinct finish times
        runs = env.home / "runs"
        f1, f2 = _du(runs / "fill" / "f1"), _du(runs / "fill" / "f2")
        # over the cap by all of f1 and half of f2: the two that finished first go, f3 stays
        cap = _du(runs) - f1 - f2 // 2
        res = env.run("cleanup", "--max-size", str(cap))
        assert res.returncode == 0, res.stderr
        assert "deleted 2 run(s)" in res.stderr
        assert [(r["run_id"], r["reason"], r["bytes"]) for r in _log(env)] == [("f1", "size", f1), ("f2", "size", f2)]
        assert _du(runs) <= cap
        assert _history(env, "fill") == ["f3", "queued"]
        # a finished run whose lock someone holds stays, as do the waiting, queued and running runs
        fd = os.open(runs / "fill" / "f3" / "lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            res = env.run("cleanup", "--max-size", "1")
            assert res.returncode == 0 and "deleted 0 run(s)" in res.stderr
        finally:
            os.close(fd)
        res = env.run("cleanup", "--max-size", "1")
        assert "deleted 1 run(s)" in res.stderr and _log(env)[-1]["run_id"] == "f3"
        assert _history(env, "fill") == ["queued"]
        assert _history(env, "gated") == ["waiting"] and _history(env, "slow") == ["running"]
        assert env.status("slow")["status"] == "running"
    finally:
        slow.send_signal(signal.SIGTERM)
        slow.wait(timeout=20)


def test_the_run_that_just_finished_is_kept_even_over_the_cap(env: Env) -> None:
    (env.home / "config.yaml").write_text("# edge box\nmax_history_size: 1K\nhistory_size_check_sec: 0\n")
    env.write("tiny.yaml", QUICK)
    first = _start(env, "tiny.yaml", "t1")
    assert "retention" not in first.stderr
    assert env.status("tiny")["run_id"] == "t1"
    second = _start(env, "tiny.yaml", "t2")
    assert "retention removed 1 run(s)" in second.stderr and "(1 by size)" in second.stderr
    assert _history(env, "tiny") == ["t2"]
    assert env.status("tiny")["status"] == "succeeded"


def test_sub_dag_runs_go_with_their_parent(env: Env) -> None:
    env.write("parent.yaml", """
        hist_retention_runs: 1
        steps:
          - id: outer
            call: child
        ---
        name: child
        steps:
          - id: inner
            command: echo child
        """)
    _start(env, "parent.yaml", "p1")
    assert _history(env, "child") == ["p1.outer"]
    res = _start(env, "parent.yaml", "p2")
    assert "retention removed 1 run(s)" in res.stderr  # the child is not a run of its own here
    assert _history(env, "parent") == ["p2"] and _history(env, "child") == ["p2.outer"]
    assert [(r["dag"], r["run_id"], r["parent"]) for r in _log(env)] == \
        [("child", "p1.outer", "parent/p1"), ("parent", "p1", None)]


def test_a_deletion_cut_short_by_a_crash_is_hidden_then_finished(env: Env) -> None:
    env.write("crashy.yaml", QUICK)
    _start(env, "crashy.yaml", "c1")
    _start(env, "crashy.yaml", "c2")
    runs = env.home / "runs" / "crashy"
    # what a crash between the rename and the end of rmtree leaves behind
    os.rename(runs / "c1", runs / ".deleting-c1")
    (runs / ".deleting-c1" / "status.json").unlink()
    assert _history(env, "crashy") == ["c2"]
    missing = env.run("status", "crashy", "--run-id", "c1")
    assert missing.returncode == 1 and "no run 'c1'" in missing.stderr
    os.utime(runs / ".retention-age", (0, 0))  # an hour later,
    _start(env, "crashy.yaml", "c3")  # the next retention pass finishes it
    assert sorted(os.listdir(runs)) == [".retention-age", ".slots", "c2", "c3"]
    # and a run with the same id as a leftover tombstone can be deleted too
    os.makedirs(runs / ".deleting-c2" / "logs")
    res = env.run("cleanup", "crashy", "--retention-runs", "1")
    assert res.returncode == 0 and "deleted 1 run(s)" in res.stderr
    assert sorted(os.listdir(runs)) == [".retention-age", ".slots", "c3"]


def test_a_bad_config_value_leaves_the_run_alone_and_is_reported(env: Env) -> None:
    (env.home / "config.yaml").write_text("hist_retention_days: 7\nmax_history_size: lots\n")
    env.write("ok.yaml", "hist_retention_runs: 1\n" + QUICK)
    _start(env, "ok.yaml", "o1")
    res = _start(env, "ok.yaml", "o2")
    assert "dagu: run o2 of 'ok' succeeded" in res.stderr
    config = env.home / "config.yaml"
    assert f"{config}:2:19: max_history_size: invalid size 'lots'" in res.stderr
    assert "history retention skipped" in res.stderr and "`none` for no cap" in res.stderr
    assert _history(env, "ok") == ["o2", "o1"]  # skipped, not half-applied
    assert env.status("ok", "o2")["status"] == "succeeded"
    assert f"{config}:2:19" in _log(env)[-1]["error"]
    config.unlink()
    res = env.run("start", "ok.yaml", "--run-id", "o3", env={"DAGU_HIST_RETENTION_RUNS": "many"})
    assert res.returncode == 0
    assert "environment variable DAGU_HIST_RETENTION_RUNS: hist_retention_runs must be a whole number, " \
           "got 'many'" in res.stderr


def test_cleanup_dry_run_deletes_nothing_and_usage_errors(env: Env) -> None:
    env.write("dry.yaml", QUICK)
    for n in (1, 2, 3):
        _start(env, "dry.yaml", f"d{n}")
    res = env.run("cleanup", "dry", "--retention-runs", "1", "--dry-run")
    assert res.returncode == 0 and "would delete 2 run(s)" in res.stderr
    assert [line.split()[2] for line in res.stdout.splitlines()] == ["dry/d2", "dry/d1"]
    assert _history(env, "dry") == ["d3", "d2", "d1"] and _log(env) == []
    assert env.run("cleanup").returncode == 2
    assert env.run("cleanup", "--retention-days", "3").returncode == 2
    bad = env.run("cleanup", "--max-size", "2 parsecs")
    assert bad.returncode == 2 and "invalid size '2 parsecs'" in bad.stderr


def test_settings_read_sizes_limits_and_overrides(tmp_path: Path) -> None:
    assert load_settings(str(tmp_path), {}) == RetentionSettings(30, None, 2 << 30)
    (tmp_path / "config.yaml").write_text("other_key: 1\nhist_retention_runs: 50\nmax_history_size: 500MB\n")
    assert load_settings(str(tmp_path), {}) == RetentionSettings(30, 50, 500 << 20)
    env = {"DAGU_MAX_HISTORY_SIZE": "none", "DAGU_HIST_RETENTION_DAYS": "0"}
    assert load_settings(str(tmp_path), env) == RetentionSettings(0, 50, None)
    assert load_settings(str(tmp_path), {"DAGU_MAX_HISTORY_SIZE": "1073741824"}).max_history_size == 1 << 30
    (tmp_path / "config.yaml").write_text("hist_retention_runs: 0\n")
    with pytest.raises(ConfigError, match=r"config.yaml:1:22: hist_retention_runs must be at least 1, got 0"):
        load_settings(str(tmp_path), {})
    (tmp_path / "config.yaml").write_text("max_history_size: [1\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2:1: not valid YAML"):
        load_settings(str(tmp_path), {})


def test_the_schedulers_hourly_pass_applies_the_cap_and_never_raises(env: Env) -> None:
    from dagu.store.retention import apply_size_cap
    from dagu.store.runs import Store

    env.write("hourly.yaml", QUICK)
    _start(env, "hourly.yaml", "h1")
    _start(env, "hourly.yaml", "h2")
    lines: list[str] = []
    store = Store(str(env.home))
    assert apply_size_cap(store, RetentionSettings(max_history_size=None), lines.append).removed == []
    report = apply_size_cap(store, RetentionSettings(max_history_size=1), lines.append)
    assert [r.run_id for r in report.removed] == ["h1", "h2"]  # nothing just finished here: all may go
    assert len(lines) == 1 and lines[0].startswith("dagu: retention removed 2 run(s), ")
    assert lines[0].endswith(f"(2 by size); see {env.home / 'retention.log'}")
    (env.home / "config.yaml").write_text("max_history_size: -5\n")
    lines.clear()
    assert apply_size_cap(store, None, lines.append).removed == []
    assert len(lines) == 1 and "config.yaml:1:19: max_history_size: invalid size -5" in lines[0]


def test_runs_measure_the_whole_history_at_most_once_per_interval(env: Env) -> None:
    """Measuring the cap stats every run's files: after each of 100 runs a minute that would
    never end, so a run does it only when none did in the last history_size_check_sec."""
    (env.home / "config.yaml").write_text("max_history_size: 1K\n")  # default interval: 300 s
    env.write("often.yaml", QUICK)
    _start(env, "often.yaml", "o1")  # measures (nothing to delete yet: o1 is kept) and stamps
    stamp = env.home / "retention.stamp"
    assert stamp.exists()
    second = _start(env, "often.yaml", "o2")
    assert "retention" not in second.stderr and _history(env, "often") == ["o2", "o1"]  # not measured
    old = stamp.stat().st_mtime - 301
    os.utime(stamp, (old, old))
    third = _start(env, "often.yaml", "o3")
    assert "(2 by size)" in third.stderr and _history(env, "often") == ["o3"]


def test_the_age_limit_is_applied_at_most_hourly_per_dag(env: Env) -> None:
    """The age pass stats every run the DAG keeps (10,000 runs: about 140 ms), so it runs at
    most once an hour per DAG (once per run when hist_retention_days is 0)."""
    env.write("aged.yaml", QUICK)
    _start(env, "aged.yaml", "a1")
    stamp = env.home / "runs" / "aged" / ".retention-age"
    earlier = stamp.stat().st_mtime - 60
    os.utime(stamp, (earlier, earlier))
    _start(env, "aged.yaml", "a2")
    assert stamp.stat().st_mtime == earlier  # checked a minute ago: not again
    res = env.run("start", "aged.yaml", "--run-id", "a3", env={"DAGU_HIST_RETENTION_DAYS": "0"})
    assert res.returncode == 0 and _history(env, "aged") == ["a3"]  # 0 days: every run
