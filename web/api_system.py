"""/api/v1/queues and /api/v1/system: what waits in which queue; the scheduler's heartbeat
(alive or stalled), next ticks and missed ticks; the data dir's disk use and history size."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify

from dagu.service import overview, reading, runs
from dagu.web.context import web_context

queues_bp = Blueprint("queues", __name__)
system_bp = Blueprint("system", __name__)


@queues_bp.get("")
def list_queues():
    queues: dict[str, list] = {}
    for item in runs.queue_items(web_context().home):
        queues.setdefault(item.queue, []).append({"dag": item.dag, "run_id": item.run_id,
                                                  "enqueued_at": item.enqueued_at})
    return jsonify({"queues": [{"name": name, "items": items} for name, items in sorted(queues.items())]})


@system_bp.get("")
def system():
    home = web_context().home
    return jsonify({"scheduler": reading.scheduler_report(home).to_dict(), "data_dir": overview.data_dir_usage(home),
                    "now": time.time()})


@system_bp.get("/health")
def health():
    return jsonify({"status": "ok"})
