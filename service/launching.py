"""Which launcher the service uses: the local one (launch/local.py), or with a broker configured
(DAGU_BROKER) the routing one (distributed/launcher.py), which sends runs of DAGs with a
`worker_selector` to workers and launches every other request locally.

One place decides, so callers do not know where a run executes.
"""

from __future__ import annotations

import os
from typing import Mapping

from dagu.launch.base import Launcher

LAUNCH_LOG = "launch.log"  # where detached supervisors' own output goes (the runs' logs are per step)


def local_launcher(home: str, environ: Mapping[str, str], zygote: bool = False,
                   log_path: str | None = None) -> Launcher:
    """A launcher for this host.  `zygote`: fork supervisors from a warm zygote (worth it for a
    long-lived caller that starts many runs, the scheduler); one-off callers spawn."""
    from dagu.engine.run_context import self_argv
    from dagu.launch.local import LocalLauncher

    return LocalLauncher(self_argv(), environ, log_path or os.path.join(home, LAUNCH_LOG), zygote=zygote)


def run_launcher(home: str, environ: Mapping[str, str], zygote: bool = False,
                 log_path: str | None = None) -> Launcher:
    """The launcher for runs: local, or routing to workers when a broker is configured (celery
    itself is imported only when a run is actually sent)."""
    local = local_launcher(home, environ, zygote=zygote, log_path=log_path)
    broker = environ.get("DAGU_BROKER")
    if not broker:
        return local
    from dagu.distributed.launcher import RoutingLauncher

    return RoutingLauncher(local, home, broker, environ)
