"""/api/v1/search?q=: the command palette's jump list, DAGs by a fuzzy match on their names and runs
by their ids (service/search.py ranks them)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from dagu.service import search as searching
from dagu.web.context import web_context
from dagu.web.request_args import int_arg

bp = Blueprint("search", __name__)


@bp.get("")
def search():
    return jsonify(searching.search(web_context().folder, request.args.get("q", ""),
                                    int_arg("limit", searching.LIMIT, 1, 50)))
