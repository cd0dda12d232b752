"""Reading a request's JSON body and query numbers, refusing what is malformed with a 400."""

from __future__ import annotations

from typing import Any

from flask import request

from dagu.web.errors import ApiError

MAX_LOG_BYTES = 1024 * 1024  # one log read at most: large logs are paged, never loaded whole


def json_body() -> dict[str, Any]:
    """The body as a JSON object ({} when empty)."""
    if not request.get_data(cache=True):
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return body


def param_words(body: dict[str, Any]) -> list[str]:
    """Params as the engine reads them: {"params": {"K": "v"}} or {"params": ["K=v", "positional"]}."""
    params = body.get("params", {})
    if isinstance(params, dict):
        words = []
        for key, value in params.items():
            if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
                raise ApiError(400, "bad_request", f"param {key!r}: give a string value")
            words.append(f"{key}={value}")
        return words
    if isinstance(params, list) and all(isinstance(w, str) for w in params):
        return list(params)
    raise ApiError(400, "bad_request", '"params" must be an object or a list of words')


def text_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "bad_request", f'"{key}" must be a string')
    return value


def string_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ApiError(400, "bad_request", f'"{key}" must be an object of strings')
    return value


def int_arg(name: str, default: int | None, low: int = 0, high: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name}={raw!r}: not a whole number") from None
    if value < low or (high is not None and value > high):
        raise ApiError(400, "bad_request", f"{name}={value}: must be between {low} and {high}")
    return value
