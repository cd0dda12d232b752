"""Cross-site request refusal for the state-changing API calls (start, stop, retry, decide).

A page on another site can make a browser POST to 127.0.0.1, but only as a "simple" request:
it cannot add a custom header or send `application/json` without a CORS preflight, which this
server never grants.  So every POST/PUT/DELETE under /api must carry `X-Requested-With` or a JSON
body, and an `Origin` header, when the browser sends one, must be this server's own.  (With
users, sessions also need a CSRF token: web/auth.py.)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request

from dagu.web.errors import error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def init_app(app: Flask) -> None:
    @app.before_request
    def refuse_cross_site():
        if request.method in SAFE_METHODS or not request.path.startswith("/api/"):
            return None
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return None  # no ambient credential: a page on another site cannot add this header
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            return error_response(403, "cross_origin", f"requests from {origin} are refused")
        if not request.headers.get("X-Requested-With") and not request.headers.get("X-CSRF-Token") \
                and not request.is_json:
            return error_response(403, "cross_origin", "state-changing requests need an X-Requested-With header "
                                  "or a JSON body")
        return None
