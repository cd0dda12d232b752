"""/api/v1/dags: list, one DAG (graph, YAML, history), its spec (get, check, save), start, enqueue,
stop its runs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from dagu.service import editing, overview, runs
from dagu.service.control import stop_dag
from dagu.web.context import web_context
from dagu.web.errors import ApiError
from dagu.web.json_cache import fragments
from dagu.web.request_args import json_body, param_words, text_field

bp = Blueprint("dags", __name__)


@bp.get("")
def list_dags():
    return fragments().response("dags", overview.dag_summaries(web_context().folder))


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


@bp.get("/<name>/spec")
def get_spec(name: str):
    spec = editing.read_spec(web_context().folder, name)
    return jsonify({"dag": spec.dag, "file": spec.file, "text": spec.text, "sha256": spec.sha256})


def _check_body(check: editing.SpecCheck) -> dict[str, Any]:
    return {"dag": check.dag, "ok": check.ok, "diagnostics": check.diagnostics, "renamed_to": check.renamed_to}


@bp.post("/<name>/spec/check")
def check_spec(name: str):
    """The editor's live check while typing: the compiler's diagnostics for unsaved text."""
    text = text_field(json_body(), "text")
    if text is None:
        raise ApiError(400, "bad_request", 'give the text to check as "text"')
    return jsonify(_check_body(editing.check_spec(web_context().folder, name, text)))


@bp.put("/<name>/spec")
def put_spec(name: str):
    """Save only what compiles: otherwise 422 with the located diagnostics, and nothing written."""
    body = json_body()
    text = text_field(body, "text")
    if text is None:
        raise ApiError(400, "bad_request", 'give the new text as "text"')
    try:
        check = editing.save_spec(web_context().folder, name, text, text_field(body, "base_sha256"))
    except editing.SpecRejected as exc:
        raise ApiError(422, "spec_rejected", str(exc), exc.check.diagnostics) from None
    except editing.SpecConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return jsonify({**_check_body(check), "saved": True})
