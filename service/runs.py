"""Starting runs: in this process (`dagu start`) or detached through the launcher, queued,
retried (whole or one step), restarted, and the supervisor side of a detached request.

The foreground calls return the engine's `Outcome` (status, problems, housekeeping
notes); the detached ones return as soon as the supervisor process exists.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence

from dagu.spec.records import dataclass
from dagu.service import ServiceError
from dagu.store.runs import Store, StoreError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:  # launch/ is imported by the detached calls only: `dagu start` does not need it
    from dagu.launch.base import LaunchedRun, Launcher
    from dagu.engine.runner import Outcome
    from dagu.spec.plan import Plan


@dataclass
class Detached:
    """A run handed to a supervisor process: which, and the handle on that process."""

    dag: str
    run_id: str
    process: "LaunchedRun | None"  # None: the run waits in its queue (the DAG is at max_active_runs)
    queued: bool = False


def split_params(flag: str | None, rest: Sequence[str]) -> list[str]:
    """The words of `-p "A=1 B=2"` and of the arguments after `--`, as the engine reads them."""
    from dagu.engine.params import ParamError, split_words

    rest = list(rest)
    if rest and rest[0] == "--":
        rest = rest[1:]
    try:
        return split_words(flag, rest)
    except ParamError as exc:
        raise ServiceError(str(exc)) from None


def _engine(call):
    """Run an engine call; its refusals and store errors become ServiceError."""
    from dagu.engine.runner import RunRefused

    try:
        return call()
    except (RunRefused, StoreError) as exc:
        raise ServiceError(str(exc)) from None


def start(home: str, environ: Mapping[str, str], plan: "Plan", words: Sequence[str], run_id: str | None = None,
          dag: str | None = None, parent: str | None = None, plan_text: str | None = None,
          missed: str | None = None) -> "Outcome":
    """Run a DAG of the plan in this process until it ends (`dagu start`, and every detached
    START request once its supervisor process runs)."""
    from dagu.engine import runner

    return _engine(lambda: runner.start(plan, dag, list(words), run_id, home, environ, parent=parent,
                                        plan_text=plan_text, missed=missed))


def start_detached(home: str, launcher: "Launcher", plan: "Plan", words: Sequence[str],
                   run_id: str | None = None, plan_path: str | None = None) -> Detached:
    """Start a run in its own supervisor process and return at once (the web's "start", the
    scheduler's ticks).  With the plan's file, the supervisor reads it; without, the run is
    recorded first (as a queued run, so it exists the moment this returns) and started from
    its own copy, or left in its queue when the DAG is at max_active_runs."""
    from dagu.engine.runner import new_run_id
    from dagu.launch.base import START, START_QUEUED, RunRequest
    from dagu.queues.queue import Queues

    run_id = run_id or new_run_id()
    if plan_path is not None:
        request = RunRequest(START, plan.root, run_id, plan_path=plan_path, params=tuple(words))
        return Detached(plan.root, run_id, launcher.launch(request))
    store = Store(home)
    queues = Queues(store)
    item = _engine(lambda: queues.enqueue(plan, None, words, run_id))
    dag = plan.dags[plan.root]
    if sum(1 for _ in store.active_runs(dag.name)) >= max(1, dag.max_active_runs) or not queues.take(item):
        return Detached(dag.name, run_id, None, queued=True)
    return Detached(dag.name, run_id, launcher.launch(RunRequest(START_QUEUED, dag.name, run_id)))


def start_queued(home: str, environ: Mapping[str, str], dag: str, run_id: str) -> "Outcome":
    """The supervisor side of a queued run (`dagu start-queued`, hidden)."""
    from dagu.engine import runner

    return _engine(lambda: runner.start_queued(dag, run_id, home, environ))


def enqueue(home: str, plan: "Plan", words: Sequence[str], run_id: str | None = None):
    """Record a run in its DAG's queue; the QueueItem (queue, dag, run_id)."""
    from dagu.engine.runner import new_run_id
    from dagu.queues.queue import Queues

    return _engine(lambda: Queues(Store(home)).enqueue(plan, None, words, run_id or new_run_id()))


def dequeue(home: str, dag: str, run_id: str) -> None:
    """Take a waiting run out of its queue (it is recorded as aborted)."""
    from dagu.queues.queue import Queues

    store = Store(home)
    store.run(dag, run_id)  # the names are checked (BadName) before any queue is looked at
    if not Queues(store).dequeue(dag, run_id):
        raise ServiceError(f"run {run_id!r} of {dag!r} is not waiting in a queue")


def queue_items(home: str) -> list:
    """Every waiting run of every queue, in the order they will start."""
    from dagu.queues.queue import Queues

    return Queues(Store(home)).items()


def retry(home: str, environ: Mapping[str, str], dag: str, run_id: str, step: str | None = None) -> "Outcome":
    """Continue a finished or interrupted run in this process: its failed, aborted and unrun
    steps run again; with `step`, only that step does and every other keeps its result."""
    from dagu.engine import runner

    return _engine(lambda: runner.retry(dag, run_id, home, environ, step=step))


def retry_detached(launcher: "Launcher", dag: str, run_id: str, step: str | None = None) -> Detached:
    """`retry` in its own supervisor process (the web's "retry")."""
    from dagu.launch.base import RETRY, RunRequest

    return Detached(dag, run_id, launcher.launch(RunRequest(RETRY, dag, run_id, step=step)))


def latest_params(home: str, dag: str) -> list[str]:
    """The params the DAG's latest run started with, as words a new start takes."""
    latest = Store(home).latest(dag)
    words = list(latest.status.params) if latest is not None else []
    # positional params were recorded as "1=value": pass them back positionally
    return [w.split("=", 1)[1] if w.split("=", 1)[0].isdigit() else w for w in words]


def restart(home: str, environ: Mapping[str, str], launcher: "Launcher", plan: "Plan",
            run_id: str | None = None) -> "Outcome":
    """The one meaning of restart: stop the DAG's active runs (and wait for them), then start it
    again in this process with the params of its latest run."""
    from dagu.service.control import stop_dag

    words = latest_params(home, plan.root)
    stop_dag(home, launcher, plan.root)
    return start(home, environ, plan, words, run_id)


def restart_detached(launcher: "Launcher", plan: "Plan", plan_path: str, run_id: str) -> Detached:
    """`restart` in its own process (the scheduler must not wait for runs to stop)."""
    from dagu.launch.base import RESTART, RunRequest

    return Detached(plan.root, run_id, launcher.launch(RunRequest(RESTART, plan.root, run_id, plan_path=plan_path)))


def exec_plan(argv: Sequence[str], name: str | None, working_dir: str) -> "Plan":
    """A one-step plan that runs one command, recorded like any run (`dagu exec`)."""
    import shlex

    from dagu import __version__
    from dagu.spec.plan import PLAN_VERSION, Dag, Plan, Step

    if not argv:
        raise ServiceError("give the command after --, e.g. dagu exec -- rsync -a src/ dst/")
    from dagu.spec.names import DAG_NAME_MAX, check_dag_name

    # the default name keeps the command's allowed characters; a given name is checked, never mended
    name = check_dag_name(name) if name is not None else \
        "exec-" + re.sub(r"[^A-Za-z0-9_-]", "_", os.path.basename(argv[0]))[:DAG_NAME_MAX - 5]
    step = Step(id="exec", name="exec", command=([shlex.join(argv)],))
    dag = Dag(name=name, type="chain", base_dir=os.path.abspath(working_dir), file="<dagu exec>", steps=(step,),
              order=("exec",))
    return Plan(plan_version=PLAN_VERSION, compiler=f"dagu {__version__}", source="<dagu exec>", source_sha256="",
                root=name, dags={name: dag})


def wait_detached(detached: Detached, poll_sec: float = 0.1) -> None:
    """Block until a detached supervisor process has ended."""
    while detached.process is not None and detached.process.poll() is None:
        time.sleep(poll_sec)
