"""The service layer: the one API the front ends call (the CLI now, the web UI and remote workers next).

Plain dataclasses in and out; no printing, no argparse, no exit codes.  Each
module is one concern:

- `dags`: find DAG files, compile or load a plan, resolve a DAG by name or file;
- `runs`: start (here or detached), enqueue, dequeue, retry, restart, exec;
- `control`: stop one run or a DAG's runs, approve/reject/push back, wait for a run;
- `reading`: status with the sub-run tree, history, step logs by offset or tail;
- `scheduling`: what the scheduler and the queue dispatcher act through.

Errors a user should see are `ServiceError` (the request cannot be done) and
`BadRequest` (the request itself is wrong); front ends choose how to show them.
"""

from __future__ import annotations


class ServiceError(Exception):
    """The request is well formed but cannot be done (unknown run, busy DAG, damaged file)."""


class BadRequest(ServiceError):
    """The request itself is wrong (a file that does not exist, an unreadable plan file)."""
