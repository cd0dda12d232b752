"""GET /api/v1/openapi.json: the API's OpenAPI 3.1 document (spec/openapi.json, package data).

Read once per app and served as is; any logged-in role may read it (a GET: web/auth.py's
default).  tests/web/test_openapi.py checks it against the routes, both ways.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Flask, Response, current_app

bp = Blueprint("openapi", __name__)


def document_text() -> str:
    return (resources.files("dagu.spec") / "openapi.json").read_text(encoding="utf-8")


def _cached(app: Flask) -> str:
    text = app.extensions.get("dagu.openapi")
    if text is None:
        text = app.extensions["dagu.openapi"] = document_text()
    return text


@bp.get("/openapi.json")
def document() -> Response:
    return Response(_cached(current_app), mimetype="application/json")
