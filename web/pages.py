"""The HTML pages: DAGs, one DAG, one run, queues, workers, system.

Each page is a small Jinja template with the data of its first paint embedded as JSON; the page's
script renders it and re-renders from the JSON API whenever the event stream says its topics
changed (web/static/live.js).  Pages read through the same service calls as the API, so
what a page shows and what /api/v1 returns cannot disagree.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, url_for

from dagu.service import overview, reading
from dagu.service import ServiceError
from dagu.web.api_runs import log_body
from dagu.web.context import web_context

LOG_PAGE_BYTES = 64 * 1024  # as web/static/run.js's LOG_PAGE

bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


@bp.get("/")
def index():
    return redirect(url_for("pages.dags"))


@bp.get("/dags")
def dags():
    return render_template("dags.html", initial={"dags": overview.dag_summaries(web_context().folder)})


@bp.get("/dags/<name>")
def dag(name: str):
    return render_template("dag.html", name=name, initial=overview.dag_detail(web_context().folder, name))


@bp.get("/runs/<dag>/<run_id>")
def run(dag: str, run_id: str):
    home = web_context().home
    detail = overview.run_detail(home, dag, run_id)
    return render_template("run.html", dag=dag, run_id=run_id,
                           initial={**detail, "log": _first_log(home, dag, run_id, detail)})


def _first_log(home: str, dag: str, run_id: str, detail: dict[str, Any]) -> dict[str, Any] | None:
    """The tail of the log the page shows first (the first step with an attempt, stdout), so its
    first paint has it rather than a fetch after the paint; the JSON API serves the rest."""
    step = next((sid for sid, state in detail["steps"].items() if state["attempts"]), None)
    if step is None:
        return None
    try:
        chunk = reading.tail(home, dag, run_id, step, reading.STDOUT, limit=LOG_PAGE_BYTES)
    except (OSError, ServiceError):
        return None  # the page fetches it, and shows why it cannot
    return log_body(step, reading.STDOUT, chunk)


@bp.get("/queues")
def queues():
    return render_template("queues.html")


@bp.get("/system")
def system():
    return render_template("system.html")


@bp.get("/workers")
def workers():
    return render_template("workers.html")
