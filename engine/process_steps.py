"""Attempts of process executors: start the processes a job asks for, feed their exits back to it.

The job (executors/base.Job) says what to run; this module applies what the run
requires around it (the strict sandbox with a private TMPDIR, resource limits,
a memory limit key) and hands the processes to process.spawn.Children.  A
process that cannot start is reported to the job as exit status 127, with the
reason in the step's stderr log.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from dagu.engine.attempt import Attempt
from dagu.engine.graph import Node
from dagu.engine.run_context import RunContext
from dagu.process.spawn import Children, Reaped, StrictSandbox


class ProcessSteps:
    def __init__(self, ctx: RunContext, children: Children, busy_threads: Callable[[], bool] = lambda: False) -> None:
        self.ctx = ctx
        self.children = children
        self.strict = StrictSandbox()
        self.busy_threads = busy_threads  # whether code that is not ours runs on a thread (no fork then)

    def spawn(self, node: Node, att: Attempt) -> None:
        """Start every process the attempt's job asks for now."""
        assert att.job is not None
        run = self.ctx.run
        for launch in att.job.launches():
            argv, env = launch.argv, launch.env
            try:
                if launch.sandboxed and self._strict_wanted(node):
                    scratch = os.path.join(run.path, "tmp", f"{node.key.replace(':', '.')}.{node.attempt}")
                    os.makedirs(scratch, exist_ok=True)
                    env = {**env, "TMPDIR": scratch}  # the root, /tmp included, is read-only in the sandbox
                    argv = self.strict.wrap(argv, launch.cwd, [run.logs, os.path.dirname(launch.stdout), scratch])
                entry = None  # a sub-DAG run: supervised in a fork of this process when that is safe
                if launch.run is not None:
                    from dagu.engine import subrun  # sub-DAG calls only (imported before any fork)

                    if subrun.fork_allowed(self.ctx, self.busy_threads()):
                        entry = subrun.entry_for(launch.run, self.ctx)
                child = self.children.start((node, att), argv, env, launch.cwd, launch.stdout, launch.stderr,
                                            att.limits if launch.sandboxed else None,
                                            f"{self.ctx.run_id}.{node.key}.{node.attempt}", tag=launch, entry=entry)
            except OSError as exc:
                att.job.exited(launch, 127)
                att.spawn_error = f"cannot start {launch.argv[0]!r}: {exc.strerror or exc}"
                note(launch.stderr, att.spawn_error)
                continue
            att.pids.add(child.pid)
            if child.limit_error:
                att.spawn_error = child.limit_error
                note(launch.stderr, child.limit_error)

    def reaped(self, reaped: Reaped, more: bool) -> tuple[Node, Attempt, bool]:
        """Account an ended process to its attempt; with `more`, start what the job asks next.
        Returns the node, the attempt and whether the attempt is over."""
        node, att = reaped.child.owner
        att.pids.discard(reaped.child.pid)
        att.cgroup_oom = att.cgroup_oom or reaped.cgroup_oom
        att.leftovers += reaped.leftovers
        att.add_usage(reaped.usage)
        assert att.job is not None
        att.job.exited(reaped.child.tag, reaped.returncode)
        if more and att.killed_by is None:
            self.spawn(node, att)
        return node, att, not att.pids

    def _strict_wanted(self, node: Node) -> bool:
        box = {**self.ctx.dag.settings.get("sandbox", {}), **node.step.options.get("sandbox", {})}
        return bool(box.get("strict"))


def note(path: str, message: str) -> None:
    """Say in the step's stderr log why a process did not start."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"dagu: {message}\n")
    except OSError:
        pass
