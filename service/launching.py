"""Which launcher the service uses: today always the local one (launch/local.py).

One place decides, so a remote launcher (distributed workers) is a change here
rather than in every caller.
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
