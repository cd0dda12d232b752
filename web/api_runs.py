"""/api/v1/runs: list with filters and paging, one run, its step logs by byte range or tail, its
outputs; stop, retry (whole or from a step), and approve / reject / push back a waiting step.

Every DAG name and run id goes through the service, which checks it (spec/names.py) before any
path is built: `../x`, absolute paths and NUL bytes are refused with 400.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from dagu.service import control, overview, reading, runs
from dagu.web.context import web_context
from dagu.web.errors import ApiError
from dagu.web.request_args import MAX_LOG_BYTES, int_arg, json_body, string_map, text_field

bp = Blueprint("runs", __name__)

DECISIONS = {"approve": control.APPROVE, "reject": control.REJECT, "push-back": control.PUSH_BACK}


@bp.get("")
def list_runs():
    page = overview.list_runs(web_context().home, request.args.get("dag") or None,
                              request.args.get("status") or None, int_arg("limit", 50, 1, 1000),
                              int_arg("offset", 0))
    return jsonify(page)


@bp.get("/<dag>/<run_id>")
def get_run(dag: str, run_id: str):
    return jsonify(overview.run_detail(web_context().home, dag, run_id))


@bp.get("/<dag>/<run_id>/outputs")
def outputs(dag: str, run_id: str):
    detail = overview.run_detail(web_context().home, dag, run_id)
    steps = {sid: {"output_name": s["output_name"], "output": s["output"], "outputs": s["outputs"]}
             for sid, s in detail["steps"].items() if s["output"] is not None or s["outputs"]}
    return jsonify({"outputs": detail["outputs"], "steps": steps})


@bp.get("/<dag>/<run_id>/steps/<step>/log")
def step_log(dag: str, run_id: str, step: str):
    """A step's log (latest attempt): `offset`+`limit` for a byte range, `tail=N` for the last N
    bytes; `format=raw` returns the bytes with X-Offset / X-Next-Offset / X-Size headers."""
    home = web_context().home
    stream = request.args.get("stream", reading.STDOUT)
    limit = int_arg("limit", 64 * 1024, 1, MAX_LOG_BYTES)
    tail = int_arg("tail", None, 1, MAX_LOG_BYTES)
    overview.check_step(home, dag, run_id, step)
    if tail is not None:
        chunk = reading.tail(home, dag, run_id, step, stream, limit=tail)
    else:
        chunk = reading.read_log(home, dag, run_id, step, stream, int_arg("offset", 0), limit)
    if request.args.get("format") == "raw":
        return Response(chunk.data, mimetype="application/octet-stream",
                        headers={"X-Offset": str(chunk.offset), "X-Next-Offset": str(chunk.next_offset),
                                 "X-Size": str(chunk.size)})
    return jsonify(log_body(step, stream, chunk))


def log_body(step: str, stream: str, chunk: reading.LogChunk) -> dict[str, Any]:
    """A log chunk as the API sends it (and the run page embeds its first one)."""
    return {"step": step, "stream": stream, "offset": chunk.offset, "next_offset": chunk.next_offset,
            "size": chunk.size, "text": chunk.data.decode("utf-8", errors="replace")}


@bp.post("/<dag>/<run_id>/stop")
def stop(dag: str, run_id: str):
    ctx = web_context()
    stopped = control.stop_run(ctx.home, ctx.launcher(), dag, run_id, wait_sec=0)
    return jsonify({"dag": stopped.dag, "run_id": stopped.run_id, "ended": stopped.ended}), 202


@bp.post("/<dag>/<run_id>/retry")
def retry(dag: str, run_id: str):
    ctx = web_context()
    step = text_field(json_body(), "step")
    overview.run_detail(ctx.home, dag, run_id)  # 404 for a run that does not exist, before launching
    detached = runs.retry_detached(ctx.launcher(), dag, run_id, step)
    ctx.launched(detached.process)
    return jsonify({"dag": dag, "run_id": run_id, "step": step}), 202


@bp.post("/<dag>/<run_id>/steps/<step>/<action>")
def decide(dag: str, run_id: str, step: str, action: str):
    if action not in DECISIONS:
        raise ApiError(404, "not_found", f"no action {action!r} (approve, reject, push-back)")
    ctx = web_context()
    body = json_body()
    overview.check_step(ctx.home, dag, run_id, step)  # checks the names, the run and the step
    decision = control.decide(ctx.home, ctx.launcher(), run_id, step, DECISIONS[action],
                              string_map(body, "inputs"), text_field(body, "reason"), "web", dag=dag)
    ctx.launched(decision.process)
    return jsonify({"dag": decision.dag, "run_id": run_id, "step": step, "decision": decision.decision}), 202


@bp.delete("/<dag>/<run_id>/queue")
def dequeue(dag: str, run_id: str):
    runs.dequeue(web_context().home, dag, run_id)
    return jsonify({"dag": dag, "run_id": run_id, "dequeued": True})
