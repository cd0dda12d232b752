"""`dagu stop` of a run supervised on another host: a stop request file in the run's folder.

A pid means nothing on another host, and Celery's revoke only reaches messages not yet taken
(ours are acknowledged when the run starts).  So the stopping process writes
`runs/<dag>/<run_id>/stop-request.json` in the shared data dir; the worker that supervises the run
polls for it (STOP_POLL_SEC) and does what a local stop does: SIGTERM to the supervisor, which
stops its steps (signal_on_stop, the grace period `max_clean_up_time_sec`, SIGKILL) and records
the run aborted.  A supervisor still alive KILL_MARGIN_SEC after that grace gets SIGKILL.

A file rather than a broker broadcast: it needs no broker (a stop works while Redis is down),
and it names the run, not a worker, so it holds even while the run's worker is being replaced.
The worker removes a stale request before it starts a supervisor for the run (a retry) and after
the supervisor ends, so no request outlives the supervisor it was meant for; no clocks compared.

Plain Python, no celery: the service's stop imports it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from dagu.store.runs import RunDir, hostname, write_atomic

REQUEST = "stop-request.json"
STOP_POLL_SEC = 0.2
KILL_MARGIN_SEC = 10.0


def request_path(run: RunDir) -> str:
    return os.path.join(run.path, REQUEST)


def is_remote(host: str | None) -> bool:
    """Whether a run whose supervisor recorded `host` runs on another host than this process."""
    return host is not None and host != hostname()


def request_stop(run: RunDir, by: str = "dagu stop") -> None:
    """Ask the run's worker to stop it (atomic: the worker never reads half a request)."""
    write_atomic(request_path(run), json.dumps({"by": by, "host": hostname(), "pid": os.getpid(),
                                                "at": time.time()}) + "\n")


def read_request(run: RunDir) -> dict[str, Any] | None:
    try:
        with open(request_path(run), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being replaced, or damaged: still a request
    return data if isinstance(data, dict) else {}


def clear(run: RunDir) -> None:
    try:
        os.unlink(request_path(run))
    except FileNotFoundError:
        pass


def grace_of(run: RunDir, dag: str) -> float:
    """The DAG's grace period between a step's stop signal and SIGKILL (max_clean_up_time_sec)."""
    from dagu.engine.supervisor import DEFAULT_GRACE_SEC
    from dagu.spec.plan import PlanError, load_plan

    try:
        settings = load_plan(run.plan).dags[dag].settings
        return float(settings.get("max_clean_up_time_sec", DEFAULT_GRACE_SEC) or DEFAULT_GRACE_SEC)
    except (OSError, PlanError, KeyError, TypeError, ValueError):
        return DEFAULT_GRACE_SEC
