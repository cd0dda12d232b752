"""/api/v1/dags: list, one DAG (graph, YAML, history), start, enqueue, stop its runs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from dagu.service import overview, runs
from dagu.service.control import stop_dag
from dagu.web.context import web_context
from dagu.web.errors import ApiError
from dagu.web.request_args import json_body, param_words

bp = Blueprint("dags", __name__)


@bp.get("")
def list_dags():
    return jsonify({"dags": overview.dag_summaries(web_context().folder)})


@bp.get("/<name>")
def get_dag(name: str):
    return jsonify(overview.dag_detail(web_context().folder, name))


def _plan(name: str) -> Any:
    entry = overview.find_entry(web_context().folder, name)
    if entry.plan is None:
        raise ApiError(422, "does_not_compile", f"{entry.file} does not compile",
                       [overview.diagnostic_dict(d) for d in entry.diagnostics])
    return entry.plan


@bp.post("/<name>/start")
def start(name: str):
    plan = _plan(name)
    words = param_words(json_body())
    ctx = web_context()
    detached = runs.start_detached(ctx.home, ctx.launcher(), plan, words)
    ctx.launched(detached.process)
    return jsonify({"dag": detached.dag, "run_id": detached.run_id, "queued": detached.queued}), 202


@bp.post("/<name>/enqueue")
def enqueue(name: str):
    plan = _plan(name)
    item = runs.enqueue(web_context().home, plan, param_words(json_body()))
    return jsonify({"dag": item.dag, "run_id": item.run_id, "queue": item.queue}), 202


@bp.post("/<name>/stop")
def stop(name: str):
    overview.find_entry(web_context().folder, name)
    ctx = web_context()
    wait = request.args.get("wait", "0") not in ("0", "", "false")
    stopped = stop_dag(ctx.home, ctx.launcher(), name, wait_sec=10.0 if wait else 0)
    return jsonify({"stopped": [{"run_id": s.run_id, "ended": s.ended} for s in stopped]})
