"""Distributed execution against a real redis-server and real `dagu worker` processes (issue 21).

Every count is taken from the runs' own records in the shared data dir (journals, claims), not
from the workers' word: a run started twice would have two `run_started` events or a second
delivery dropped in a worker's log.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.distributed.harness import DAGU, Cluster, start_redis, wait_until
from tests.servers import Server

_DBS = itertools.count(1)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path: Path, redis_server: Server) -> Iterator[Cluster]:
    db = next(_DBS) % 16  # a database of its own per test: no message of another test is seen
    c = Cluster(tmp_path, f"redis://127.0.0.1:{redis_server.port}/{db}")
    yield c
    c.close()


def _dag(c: Cluster, name: str, selector: str, command: str = "echo ran", extra: str = "") -> Path:
    return c.write(f"{name}.yaml", f"worker_selector: {selector}\n{extra}steps:\n  - name: s\n    command: {command}\n")


def _worker_of(c: Cluster, dag: str, run_id: str) -> str | None:
    return c.status(dag, run_id).get("worker")


def test_runs_go_to_the_workers_whose_labels_include_the_selector(cluster: Cluster) -> None:
    c = cluster
    c.worker("gpu-eu", "gpu=true,region=eu")
    c.worker("us", "region=us")
    cases = {"gpu": ("{gpu: true}", {"gpu-eu"}), "gpueu": ("{gpu: true, region: eu}", {"gpu-eu"}),
             "us": ("{region: us}", {"us"}), "anyone": ("{}", {"gpu-eu", "us"})}
    procs = {}
    for name, (selector, _) in cases.items():
        _dag(c, name, selector)
        procs[name] = c.popen("start", f"{name}.yaml", "--run-id", f"{name}-1")
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert f"ran on worker" in err
    for name, (_, allowed) in cases.items():
        assert _worker_of(c, name, f"{name}-1") in allowed, name
        assert c.started_count(name, f"{name}-1") == 1
    # `local` runs here, without a worker, even with a broker configured
    _dag(c, "here", "local")
    res = c.run("start", "here.yaml", "--run-id", "h1")
    assert res.returncode == 0, res.stderr
    assert _worker_of(c, "here", "h1") is None
    listing = c.run("workers")
    assert listing.returncode == 0
    assert "gpu-eu" in listing.stdout and "gpu=true,region=eu" in listing.stdout and " ok " in listing.stdout


def test_a_run_waits_in_the_broker_until_a_matching_worker_starts(cluster: Cluster) -> None:
    c = cluster
    c.worker("other", "zone=a")
    _dag(c, "later", "{zone: b}")
    proc = c.popen("start", "later.yaml", "--run-id", "l1")
    time.sleep(2)
    assert proc.poll() is None  # waiting is not an error
    assert not (c.home / "runs" / "later" / "l1").exists()
    c.worker("b-worker", "zone=b,disk=ssd")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _worker_of(c, "later", "l1") == "b-worker"
    assert c.started_count("later", "l1") == 1


def test_a_worker_killed_mid_run_fails_its_run_with_the_reason_and_nothing_runs_twice(cluster: Cluster) -> None:
    c = cluster
    c.worker("doomed", "pool=x")
    c.worker("watcher", "pool=y")  # takes nothing of pool=x; it sweeps lost workers
    _dag(c, "long", "{pool: x}", "sleep 30")
    proc = c.popen("start", "long.yaml", "--run-id", "k1", "-q")
    c.running("long", "k1", "s")
    killed_at = time.monotonic()
    c.kill9("doomed")
    wait_until(lambda: any(e["ev"] == "interrupted" for e in c.journal("long", "k1")), 30, "the run recorded failed")
    detected = time.monotonic() - killed_at
    assert detected < 10, f"lost worker found after {detected:.1f}s"
    status = c.status("long", "k1")
    assert status["status"] == "failed" and status["interrupted"]
    assert "worker doomed" in status["error"] and "lost" in status["error"]
    assert status["worker"] == "doomed"
    assert c.started_count("long", "k1") == 1
    assert status["retries"] == []  # no retry_policy: not retried
    proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert c.record("doomed")["state"] == "lost"
    # the step's processes went with it: nothing of the run is left running
    assert "none of its step processes is still running" in c.run("status", "long", "--run-id", "k1").stderr
    listing = c.run("workers").stdout
    assert any(line.startswith("doomed") and " lost " in line for line in listing.splitlines()), listing


def test_a_run_waiting_behind_a_busy_worker_that_is_killed_runs_on_another(cluster: Cluster) -> None:
    c = cluster
    c.worker("busy", "pool=z")
    _dag(c, "first", "{pool: z}", "sleep 30")
    _dag(c, "second", "{pool: z}")
    first = c.popen("start", "first.yaml", "--run-id", "f1", "-q")
    c.running("first", "f1", "s")
    second = c.popen("start", "second.yaml", "--run-id", "s1", "-q")
    time.sleep(1.5)  # the busy worker has no free slot, so the second run stays in the broker
    assert not (c.home / "runs" / "second" / "s1").exists()
    c.kill9("busy")
    c.worker("spare", "pool=z")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert _worker_of(c, "second", "s1") == "spare"
    assert c.started_count("second", "s1") == 1
    first.communicate(timeout=30)
    assert c.status("first", "f1")["status"] == "failed"
    assert c.started_count("first", "f1") == 1  # the run of the killed worker is not started again
    assert "delivered again" not in c.worker_log("spare")


def test_dagu_stop_reaches_a_run_on_a_worker(cluster: Cluster) -> None:
    c = cluster
    c.worker("w", "role=stop")
    _dag(c, "stoppable", "{role: stop}", "sleep 30")
    proc = c.popen("start", "stoppable.yaml", "--run-id", "st1", "-q")
    c.running("stoppable", "st1", "s")
    began = time.monotonic()
    res = c.run("stop", "stoppable.yaml", "--run-id", "st1")
    assert res.returncode == 0, res.stderr
    proc.communicate(timeout=30)
    assert time.monotonic() - began < 10
    status = c.status("stoppable", "st1")
    assert status["status"] == "aborted" and status["worker"] == "w"
    assert c.record("w")["running"] == []  # the worker is free again
    assert c.workers["w"].poll() is None


def test_a_run_longer_than_the_visibility_timeout_runs_once(tmp_path: Path, redis_server: Server) -> None:
    c = Cluster(tmp_path, f"redis://127.0.0.1:{redis_server.port}/{next(_DBS) % 16}",
                extra_env={"DAGU_BROKER_VISIBILITY_SEC": "1"})
    try:
        c.worker("v1", "vis=1")
        c.worker("v2", "vis=1")
        _dag(c, "slow", "{vis: 1}", "sleep 4")
        res = c.run("start", "slow.yaml", "--run-id", "v-1", timeout=60)
        assert res.returncode == 0, res.stderr
        time.sleep(2.5)  # two more visibility timeouts: a re-delivery would have come by now
        assert c.started_count("slow", "v-1") == 1
        assert [p.name for p in c.run_dirs("slow")] == ["v-1"]
        for w in ("v1", "v2"):
            assert "delivered again" not in c.worker_log(w)
    finally:
        c.close()


def test_100_runs_over_3_workers_none_lost_none_doubled(cluster: Cluster) -> None:
    c = cluster
    for n in range(3):
        c.worker(f"m{n}", "fleet=yes", max_active_runs=2)
    _dag(c, "many", "{fleet: yes}", "sleep 0.1", extra="max_active_runs: 10\n")
    plan = c.dir / "many.json"
    assert c.run("compile", "many.yaml", "-o", str(plan)).returncode == 0
    # send from this process, as the scheduler would: one connection, 100 messages
    code = (
        "import json, sys, time\n"
        "from dagu.distributed.launcher import RemoteLauncher\n"
        "from dagu.distributed.routing import queue_for\n"
        "from dagu.launch.base import START, RunRequest\n"
        "home, broker, plan = sys.argv[1:4]\n"
        "text = open(plan).read()\n"
        "launcher = RemoteLauncher(home, broker, {})\n"
        "t = time.time()\n"
        "for i in range(100):\n"
        "    launcher.send(RunRequest(START, 'many', f'r{i:03d}'), queue_for({'fleet': 'yes'}), text)\n"
        "print(json.dumps({'sent_sec': time.time() - t, 't0': t}))\n"
        "launcher.close()\n")
    sent = subprocess.run([sys.executable, "-c", code, str(c.home), c.broker, str(plan)], env=c.env,
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    t0 = json.loads(sent.stdout)["t0"]
    ids = [f"r{i:03d}" for i in range(100)]

    def all_done() -> bool:
        for run_id in ids:
            status = c.home / "runs" / "many" / run_id / "status.json"
            if not status.exists() or json.loads(status.read_text())["status"] != "succeeded":
                return False
        return True

    wait_until(all_done, 100, "100 runs succeeded")
    took = time.time() - t0
    assert [p.name for p in c.run_dirs("many")] == ids  # none lost, none extra
    workers = {}
    first_start = []
    for run_id in ids:
        assert c.started_count("many", run_id) == 1, run_id
        claim = json.loads((c.home / "distributed" / "claims" / "many" / f"{run_id}.json").read_text())
        workers[claim["worker"]] = workers.get(claim["worker"], 0) + 1
        first_start.append(next(e["at"] for e in c.journal("many", run_id) if e["ev"] == "run_started") - claim["at"])
    assert set(workers) == {"m0", "m1", "m2"}, workers  # every worker took some
    for n in range(3):
        assert "delivered again" not in c.worker_log(f"m{n}")
    sys.stderr.write(f"\n100 runs over 3 workers (2 slots each): {took:.1f}s, {100 / took * 60:.0f} runs/min, "
                     f"per worker {workers}\n")


def test_a_run_its_worker_refuses_is_reported_not_awaited(cluster: Cluster) -> None:
    """The DAG is at max_active_runs: the worker's supervisor refuses the second run, as `dagu
    start` does locally, and the sender says so instead of waiting for a run that will never be."""
    c = cluster
    c.worker("r", "cap=1", max_active_runs=2)
    _dag(c, "capped", "{cap: 1}", "sleep 3")
    first = c.popen("start", "capped.yaml", "--run-id", "c1", "-q")
    c.running("capped", "c1", "s")
    res = c.run("start", "capped.yaml", "--run-id", "c2")
    assert res.returncode == 1
    assert "worker r did not start run c2" in res.stderr and "max_active_runs" in res.stderr
    first.communicate(timeout=30)
    assert first.returncode == 0


def test_a_worker_refuses_more_labels_than_the_bound(cluster: Cluster) -> None:
    res = cluster.run("worker", "--labels", "a=1,b=2,c=3,d=4,e=5,f=6,g=7", "--id", "big")
    assert res.returncode == 2
    assert "at most 6" in res.stderr and "Traceback" not in res.stderr


def test_a_sigterm_lets_the_running_run_finish(cluster: Cluster) -> None:
    c = cluster
    c.worker("graceful", "g=1")
    _dag(c, "finish", "{g: 1}", "sleep 1.5")
    proc = c.popen("start", "finish.yaml", "--run-id", "g1", "-q")
    c.running("finish", "g1", "s")
    c.stop("graceful")  # SIGTERM: warm shutdown
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert c.status("finish", "g1")["status"] == "succeeded"
    assert c.record("graceful")["state"] == "stopped"


@pytest.mark.parametrize("command", [["compile", "x.yaml", "-o", "-"], ["start", "x.yaml"]])
def test_without_a_selector_nothing_of_celery_is_imported(tmp_path: Path, command: list[str]) -> None:
    """`dagu compile` and `dagu start` of a DAG with no worker_selector load neither celery nor
    kombu, with or without a broker configured."""
    (tmp_path / "x.yaml").write_text("steps:\n  - name: a\n    command: 'true'\n")
    for broker in ({}, {"DAGU_BROKER": "redis://127.0.0.1:1/0"}):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
        env.update({"DAGU_HOME": str(tmp_path / "home"), **broker})
        res = subprocess.run([sys.executable, "-X", "importtime", *DAGU[1:], *command], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        loaded = {line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
        assert not {m for m in loaded if m.split(".")[0] in ("celery", "kombu")}, broker


def test_the_queue_admits_runs_to_workers_within_max_active_runs(cluster: Cluster) -> None:
    """Queued runs are admitted by the one dispatcher (`dagu queue run`, the scheduler's) and only
    then sent to the workers: with max_active_runs 1 and two free workers they never overlap."""
    c = cluster
    c.worker("q1", "lane=q")
    c.worker("q2", "lane=q")
    _dag(c, "lane", "{lane: q}", "sleep 0.5")
    for n in range(3):
        res = c.run("enqueue", "lane.yaml", "--run-id", f"q{n}")
        assert res.returncode == 0, res.stderr
    res = c.run("queue", "run", "--once", "--poll", "0.1", timeout=90)
    assert res.returncode == 0, res.stderr
    spans = []
    for n in range(3):
        status = c.status("lane", f"q{n}")
        assert status["status"] == "succeeded" and status["worker"] in ("q1", "q2")
        assert c.started_count("lane", f"q{n}") == 1
        spans.append((status["started_at"], status["finished_at"]))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans  # one at a time


def test_a_queued_run_survives_a_broker_crash_with_aof(tmp_path: Path) -> None:
    """Redis with appendonly (fsync always) killed -9 and restarted: the run sent before the crash
    is still in its queue and runs once a worker comes."""
    from tests.servers import free_port, need

    port = free_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    argv = [need("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(data)]
    server = Server.start(argv, port, tmp_path / "redis.log")
    c = Cluster(tmp_path, f"redis://127.0.0.1:{port}/0")
    try:
        _dag(c, "kept", "{keep: 1}")
        proc = c.popen("start", "kept.yaml", "--run-id", "a1", "-q")
        wait_until(lambda: b"kept" in b"".join(p.read_bytes() for p in data.rglob("*.aof*") if p.is_file()), 20,
                   "the message in the append-only file")
        os.kill(server.proc.pid, 9)
        server.proc.wait(10)
        server = Server.start(argv, port, tmp_path / "redis.log")
        c.worker("keeper", "keep=1")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert c.status("kept", "a1")["worker"] == "keeper"
        assert c.started_count("kept", "a1") == 1
    finally:
        c.close()
        server.stop()


def test_a_call_step_with_a_worker_selector_sends_its_sub_run_to_a_worker(cluster: Cluster) -> None:
    """The caller runs here; the called DAG runs on the worker its step's selector names (items of
    a parallel step each), and the caller gets their outputs as from local sub-runs."""
    c = cluster
    c.worker("sub-gpu", "gpu=true", max_active_runs=2)
    c.write("caller.yaml", """\
        steps:
          - name: one
            call: child
            params: "X=1"
            worker_selector: {gpu: true}
          - name: many
            call: child
            parallel:
              items: [a, b]
            worker_selector: {gpu: true}
            depends: one
          - name: here
            call: child
            params: "X=local"
            depends: many
        ---
        name: child
        params:
          - X: none
        steps:
          - name: c
            command: echo "x=${X}"
            output: OUT
        """)
    res = c.run("start", "caller.yaml", "--run-id", "call1", timeout=90)
    assert res.returncode == 0, res.stderr
    status = c.status("caller", "call1")
    assert status.get("worker") is None  # the caller ran here
    workers = {r["run_id"]: c.status("child", r["run_id"]).get("worker") for r in status["sub_runs"]}
    assert len(workers) == 4, workers
    assert sorted(workers.values(), key=str) == [None, "sub-gpu", "sub-gpu", "sub-gpu"], workers
    assert status["steps"]["one"]["outputs"] == {"OUT": "x=1"}  # the remote sub-run's outputs came back
    assert status["steps"]["many"]["outputs"]["summary"]["succeeded"] == 2
    for run_id in workers:
        assert c.status("child", run_id)["parent"] == "caller/call1"
        assert c.started_count("child", run_id) == 1


def test_a_worker_restarted_under_its_id_fails_the_runs_its_previous_process_held(cluster: Cluster) -> None:
    c = cluster
    c.worker("phoenix", "bird=1")
    _dag(c, "ashes", "{bird: 1}", "sleep 30")
    proc = c.popen("start", "ashes.yaml", "--run-id", "p1", "-q")
    c.running("ashes", "p1", "s")
    c.kill9("phoenix")
    c.worker("phoenix", "bird=1")  # at once: before anyone could find it silent
    proc.communicate(timeout=30)
    status = c.status("ashes", "p1")
    assert status["status"] == "failed" and "was restarted" in status["error"], status["error"]
    assert c.record("phoenix")["running"] == [] and c.record("phoenix")["state"] == "running"


def test_stopping_a_caller_stops_its_sub_run_on_a_worker(cluster: Cluster) -> None:
    c = cluster
    c.worker("subw", "sub=1")
    c.write("boss.yaml", """\
        steps:
          - name: delegate
            call: slowchild
            worker_selector: {sub: 1}
        ---
        name: slowchild
        steps:
          - name: c
            command: sleep 30
        """)
    proc = c.popen("start", "boss.yaml", "--run-id", "b1", "-q")
    c.running("slowchild", "b1.delegate", "c")
    res = c.run("stop", "boss.yaml", "--run-id", "b1")
    assert res.returncode == 0, res.stderr
    proc.communicate(timeout=30)
    child = c.final("slowchild", "b1.delegate", 20)
    assert child["status"] == "aborted" and child["worker"] == "subw"
    assert c.status("boss", "b1")["status"] == "aborted"


def test_a_lost_workers_run_is_retried_by_the_dags_retry_policy_on_another_worker(cluster: Cluster) -> None:
    c = cluster
    c.worker("fragile", "pool=r")
    c.write("again.yaml", """\
        worker_selector: {pool: r}
        retry_policy: {limit: 1, interval_sec: 1}
        steps:
          - name: first
            command: sh -c 'echo once >> first.txt'
          - name: slow
            command: sh -c 'if [ -f marker ]; then echo second; else touch marker; sleep 30; fi'
            depends: first
        """)
    proc = c.popen("start", "again.yaml", "--run-id", "a1", "-q")
    c.running("again", "a1", "slow")
    c.worker("sturdy", "pool=r")  # only now: the first attempt must be fragile's
    c.kill9("fragile")
    _, err = proc.communicate(timeout=60)  # `dagu start` waits through the retry to its end
    assert proc.returncode == 0, err
    status = c.status("again", "a1")
    assert status["status"] == "succeeded" and status["worker"] == "sturdy"
    assert c.started_count("again", "a1") == 2  # the first start and the one retry, from the journal
    [retry] = status["retries"]
    assert retry["attempt"] == 1 and "worker fragile" in retry["reason"] and "lost" in retry["reason"]
    assert retry["started_at"] >= retry["due_at"]
    assert (c.dir / "first.txt").read_text() == "once\n"  # the succeeded step did not run again
    assert "retried:" in c.run("status", "again", "--run-id", "a1").stdout
    assert len(status["steps"]["slow"]["attempts"]) == 2


def test_dagu_stop_reaches_a_run_on_another_host_through_a_stop_request(cluster: Cluster) -> None:
    c = cluster
    c.worker("far", "role=far", env={"DAGU_HOST_NAME": "elsewhere-host"})  # its runs record another host
    _dag(c, "remote", "{role: far}", "sleep 30", extra="max_clean_up_time_sec: 5\n")
    proc = c.popen("start", "remote.yaml", "--run-id", "r1", "-q")
    c.running("remote", "r1", "s")
    assert c.status("remote", "r1")["host"] == "elsewhere-host"
    began = time.monotonic()
    res = c.run("stop", "remote.yaml", "--run-id", "r1")
    took = time.monotonic() - began
    assert res.returncode == 0, res.stderr
    assert took < 5, f"stopped after {took:.1f}s"  # within the grace period
    proc.communicate(timeout=30)
    status = c.status("remote", "r1")
    assert status["status"] == "aborted" and status["worker"] == "far"
    # the worker stopped it on the request: the stopping process sent no signal to a pid
    log = c.worker_log("far")
    assert "run remote/r1: stop requested by dagu stop on" in log and "SIGTERM to its supervisor" in log, log
    assert not (c.home / "runs" / "remote" / "r1" / "stop-request.json").exists()  # no request outlives it
    assert c.record("far")["running"] == [] and c.workers["far"].poll() is None
