"""The run index answers as `Store.views` reads, with real runs: new runs, retried runs and deleted
runs show, and the rows kept match a fresh read."""

from __future__ import annotations

import shutil

from dagu.service import run_index
from dagu.service.run_index import RunIndex
from dagu.store.runs import Store
from tests.runtime.conftest import Env

FLAKY = """
    steps:
      - id: check
        command: test -f {ok}
    """


class Clock:
    def __init__(self) -> None:
        self.now = 1e10  # far after any mtime, so folders count as settled (CHANGE_WINDOW_SEC)

    def __call__(self) -> float:
        return self.now


def fresh(env: Env, dag: str) -> list[tuple[str, str]]:
    return [(v.status.run_id, v.status.status) for v in Store(str(env.home)).views(dag)]


def rows(index: RunIndex, dag: str, limit: int | None = None) -> list[tuple[str, str]]:
    found = index.runs(dag) if limit is None else index.recent(dag, limit)
    return [(r.run_id, r.status) for r in found]


def test_new_retried_and_deleted_runs_show(env: Env) -> None:
    ok = env.dir / "ok"
    env.write("flaky.yaml", FLAKY.format(ok=ok))
    for run_id in ("r1", "r2", "r3", "r4", "r5"):
        assert env.run("start", "flaky.yaml", "--run-id", run_id).returncode == 1
    clock = Clock()
    index = RunIndex(str(env.home), clock=clock)
    assert rows(index, "flaky", 2) == fresh(env, "flaky")[:2]
    assert rows(index, "flaky") == fresh(env, "flaky") and len(fresh(env, "flaky")) == 5

    assert env.run("start", "flaky.yaml", "--run-id", "r6").returncode == 1  # a new run: the folder changed
    assert rows(index, "flaky", 3)[0] == ("r6", "failed")

    ok.write_text("")
    assert env.run("retry", "flaky", "--run-id", "r1").returncode == 0  # the oldest run, retried
    clock.now += run_index.SWEEP_SEC  # beyond the always-checked newest: seen at the next sweep
    assert rows(index, "flaky", 20) == fresh(env, "flaky")
    assert ("r1", "succeeded") in rows(index, "flaky", 20)
    assert rows(index, "flaky") == fresh(env, "flaky")  # every journal checked

    shutil.rmtree(env.home / "runs" / "flaky" / "r6")
    assert rows(index, "flaky", 20) == fresh(env, "flaky") and ("r6", "failed") not in rows(index, "flaky")


def test_a_dag_without_runs_and_a_bad_name(env: Env) -> None:
    index = RunIndex(str(env.home))
    assert index.recent("nothing", 20) == []
    try:
        index.recent("../etc", 20)
    except ValueError as exc:  # BadName
        assert "etc" in str(exc)
    else:
        raise AssertionError("a name with a separator must be refused")
