"""What a dead supervisor's run left running, killed before anything takes its place.

A supervisor killed with SIGKILL cannot clean up.  Its watchdog (process/watchdog.py) kills
every step tree then, but the watchdog can die too (the OOM killer, a kill of both), and then
what the steps started lives on in their cgroups or sessions.  Whoever next takes a slot of the DAG (`dagu start`, a queued run, `dagu
retry`) calls `reap_dead_runs` first, so a new run never overlaps an orphan of an old one,
which `max_active_runs: 1` promises.
"""

from __future__ import annotations

from dagu.process.tree import attempt_leaders, reap_run
from dagu.store.runs import Store


def reap_dead_runs(store: Store, dag: str) -> int:
    """Kill the leftovers of every run of `dag` that held a slot and whose supervisor is dead;
    how many processes were killed.  Runs whose supervisors live are not touched."""
    killed = 0
    for run in store.slot_holders(dag):
        view = run.read()
        if view.dead or view.status.interrupted:
            killed += reap_run(run.path, attempt_leaders(view.status))
    return killed
