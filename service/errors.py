"""What the service tells a front end when it cannot do what was asked.

Two kinds, because a front end answers them differently: the CLI exits 2 for a
bad request and 1 for a refused one; the web will answer 400 and 409/404.
"""

from __future__ import annotations


class ServiceError(Exception):
    """The request is well formed but cannot be done (unknown run, busy DAG, damaged file)."""


class BadRequest(ServiceError):
    """The request itself is wrong (a file that does not exist, an unreadable plan file)."""
