"""One JSON error shape for the API, `{"error": {"code", "message", "diagnostics"?}}`, and never a
traceback: the service's refusals become 4xx, anything unexpected a 500 with one line."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from dagu.service import BadRequest, ServiceError
from dagu.service.overview import NotFound
from dagu.spec.names import BadName


class ApiError(Exception):
    """A request the API refuses, with its HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str, diagnostics: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.diagnostics = status, code, message, diagnostics


def error_response(status: int, code: str, message: str, diagnostics: list | None = None):
    """The API's JSON error; a page gets the same message as HTML."""
    if not _wants_json():
        return render_template("error.html", status=status, message=message, initial={}), status
    body: dict[str, Any] = {"code": code, "message": message}
    if diagnostics is not None:
        body["diagnostics"] = diagnostics
    response = jsonify({"error": body})
    response.status_code = status
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _refusal(status: int, code: str):
    def handle(exc: Exception):
        return error_response(status, code, str(exc))
    return handle


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.diagnostics)

    # The service's refusals, each as one status and code: the message is already for people.
    for kind, status, code in ((BadName, 400, "bad_name"), (NotFound, 404, "not_found"),
                               (BadRequest, 400, "bad_request"), (ServiceError, 409, "refused")):
        app.register_error_handler(kind, _refusal(status, code))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_response(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"),
                              exc.description or exc.name or "error")

    @app.errorhandler(Exception)
    def internal(exc: Exception):
        app.logger.error("internal error on %s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
        return error_response(500, "internal", f"internal error: {type(exc).__name__}: {exc}")
