"""/api/v1/workers: the distributed workers serving this data dir (`dagu worker`), with their labels,
running runs, last heartbeat and health (ok, late, stopping, lost, stopped), newest heartbeat first.
Read from their records in the data dir (service/workers.py): no broker is needed to list them."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify

from dagu.service.workers import list_workers
from dagu.web.context import web_context

bp = Blueprint("workers", __name__)


@bp.get("")
def workers():
    now = time.time()
    return jsonify({"workers": [w.to_dict() for w in list_workers(web_context().home, now)], "now": now})
