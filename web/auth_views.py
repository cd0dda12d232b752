"""Log in and out (a page and the JSON API), who am I, and the admins' user management.

    GET  /login, POST /login (form), POST /logout (form)
    POST /api/v1/auth/login {"user", "password"} -> {"user", "role", "csrf_token"} and the cookie
    POST /api/v1/auth/logout, GET /api/v1/auth/me
    GET /api/v1/users, POST /api/v1/users {"name", "password", "role"}, DELETE /api/v1/users/NAME (admin)

Failed logins are counted per user name and per client address (web/auth.py LoginLimiter):
past the limit the answer is 429 with Retry-After, whether or not the password is right.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from dagu.service import users
from dagu.web.auth import auth_state, csrf_ok, csrf_token, current_principal, end_session, start_session
from dagu.web.errors import ApiError, error_response
from dagu.web.request_args import json_body, text_field

bp = Blueprint("auth", __name__, template_folder="templates")


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path of this site (never //host or a URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.dags")


def _try_login(name: str, password: str):
    """(principal, None) or (None, (status, code, message, retry_after))."""
    state = auth_state()
    keys = [f"user:{name}", f"addr:{request.remote_addr}"]
    wait = state.limiter.retry_after(keys)
    if wait:
        return None, (429, "too_many_attempts", f"too many failed logins: try again in {wait} s", wait)
    principal = state.directory.login(name, password)
    if principal is None:
        state.limiter.failed(keys)
        return None, (401, "bad_login", "wrong user name or password", None)
    state.limiter.succeeded(keys[0])
    return principal, None


@bp.get("/login")
def login_page():
    if not auth_state().directory.configured():
        return redirect(url_for("pages.dags"))
    return render_template("login.html", next=request.args.get("next", ""), error=None, user="", initial={})


@bp.post("/login")
def login_submit():
    name = request.form.get("user", "")
    target = request.form.get("next", "")
    if not csrf_ok():
        return render_template("login.html", next=target, error="The form expired: please log in again.",
                               user=name, initial={}), 403
    principal, refusal = _try_login(name, request.form.get("password", ""))
    if refusal is not None:
        status, _code, message, wait = refusal
        page = render_template("login.html", next=target, error=message[0].upper() + message[1:] + ".",
                               user=name, initial={})
        return page, status, ({"Retry-After": str(wait)} if wait else {})
    start_session(principal)
    return redirect(_safe_next(target))


@bp.post("/logout")
def logout():
    end_session()
    return redirect(url_for("auth.login_page"))


@bp.post("/api/v1/auth/login")
def api_login():
    body = json_body()
    name, password = text_field(body, "user"), text_field(body, "password")
    if not name or password is None:
        raise ApiError(400, "bad_request", 'give "user" and "password"')
    principal, refusal = _try_login(name, password)
    if refusal is not None:
        status, code, message, wait = refusal
        response = error_response(status, code, message)
        if wait:
            response.headers["Retry-After"] = str(wait)
        return response
    token = start_session(principal)
    return jsonify({"user": principal.name, "role": principal.role, "csrf_token": token})


@bp.post("/api/v1/auth/logout")
def api_logout():
    end_session()
    return jsonify({"logged_out": True})


@bp.get("/api/v1/auth/me")
def me():
    principal = current_principal()
    return jsonify({"user": principal.name, "role": principal.role, "kind": principal.kind,
                    "csrf_token": csrf_token() if principal.kind != "token" else None})


@bp.get("/api/v1/users")
def list_users():
    home = auth_state().directory.home
    return jsonify({"accounts": [{"name": a.name, "role": a.role, "kind": a.kind, "created_at": a.created_at}
                                 for a in users.list_accounts(home)]})


@bp.post("/api/v1/users")
def add_user():
    body = json_body()
    name, password, role = text_field(body, "name"), text_field(body, "password"), text_field(body, "role")
    users.add_user(auth_state().directory.home, name or "", password or "", role or users.VIEWER)
    return jsonify({"name": name, "role": role or users.VIEWER}), 201


@bp.delete("/api/v1/users/<name>")
def remove_user(name: str):
    users.remove_user(auth_state().directory.home, name)
    return jsonify({"name": name, "removed": True})

