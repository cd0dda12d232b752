"""Who may do what: the gate every request passes (login, token, role, CSRF), before its view.

Two modes, decided per request from `$DAGU_HOME/users.json` (re-read when it changes):

- No user and no token, server bound to this host only: open local mode, as a single-user tool.
  Every request acts as the local user with every right.  Requests must name this host
  (`Host: localhost`/`127.x`/`[::1]`), so a web page whose DNS name was rebound to 127.0.0.1
  cannot read the API.  Bound beyond this host with no user, every request is refused.
- Any user or token exists: every route needs a session (log in at /login) or an
  `Authorization: Bearer <token>` header; only /login, /static and /api/v1/system/health do not.

Roles (service/users.py) are checked per endpoint: ROLE_OF names the endpoints that need more
than the default, and the default is deny-by-method: reads need `viewer`, anything that changes
state needs `operator`.  A new route is therefore closed to viewers unless it is listed here.

CSRF: a session carries a random token; every POST/PUT/PATCH/DELETE made with the session must
send it back in `X-CSRF-Token` (the pages' scripts do) or a `csrf_token` form field.  A bearer
token is no ambient credential (a browser never adds it by itself), so token calls need none.
"""

from __future__ import annotations

import collections
import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import field
from datetime import timedelta
from typing import Callable

from flask import Flask, current_app, g, redirect, request, session, url_for

from dagu.spec.records import dataclass
from dagu.service.users import ADMIN, OPERATOR, VIEWER, Directory, Principal, allows, session_key
from dagu.web.errors import error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without a login.
PUBLIC = frozenset({"auth.login_page", "auth.login_submit", "auth.api_login", "static", "pages.static",
                    "system.health"})
# Endpoints that need another role than the method's default (VIEWER to read, OPERATOR to change).
ROLE_OF = {
    "dags.put_spec": ADMIN, "dags.check_spec": ADMIN,  # the editor
    "auth.list_users": ADMIN, "auth.add_user": ADMIN, "auth.remove_user": ADMIN,
    "auth.logout": VIEWER, "auth.api_logout": VIEWER,  # anyone may end their own session
}
LOCAL = Principal("local", ADMIN, "local")
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_LIFETIME = timedelta(hours=12)


def required_role(endpoint: str | None, method: str) -> str:
    """The least role that may call `endpoint` with `method`."""
    if endpoint in ROLE_OF:
        return ROLE_OF[endpoint]
    return VIEWER if method in SAFE_METHODS else OPERATOR


@dataclass
class LoginLimiter:
    """Failed logins per key (a user name, a client address) in a sliding window: after
    `max_failures` within `window_sec`, further tries are refused until the oldest ages out.
    One per app (app.extensions), so two apps in one process never share counts."""

    max_failures: int = 5
    window_sec: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, collections.deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, keys: list[str]) -> int:
        """Seconds until a try is allowed for every key (0: now)."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._prune(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, times[0] + self.window_sec - now)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, keys: list[str]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                self._prune(key, now).append(now)
            if len(self._failures) > 10_000:  # bounded memory under a spray of names
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]

    def succeeded(self, user_key: str) -> None:
        with self._lock:
            self._failures.pop(user_key, None)

    def _prune(self, key: str, now: float) -> collections.deque:
        times = self._failures.setdefault(key, collections.deque())
        while times and times[0] <= now - self.window_sec:
            times.popleft()
        return times


@dataclass
class EndedSessions:
    """Ids of sessions logged out, until they would have expired anyway: a signed cookie stays
    valid by itself, so a copy of it (or a request still in flight at logout) must be refused
    here.  In memory: a restart forgets them (delete $DAGU_HOME/web-secret to end every session)."""

    lifetime_sec: float
    clock: Callable[[], float] = time.time
    _ended: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def end(self, sid: str) -> None:
        now = self.clock()
        with self._lock:
            self._ended = {k: t for k, t in self._ended.items() if t > now}
            self._ended[sid] = now + self.lifetime_sec

    def ended(self, sid: str) -> bool:
        with self._lock:
            return sid in self._ended


@dataclass
class AuthState:
    directory: Directory
    limiter: LoginLimiter
    loopback_only: bool
    ended: EndedSessions = field(default_factory=lambda: EndedSessions(SESSION_LIFETIME.total_seconds()))


def auth_state() -> AuthState:
    return current_app.extensions["dagu.auth"]


def current_principal() -> Principal | None:
    return g.get("principal")


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_hex(32)
    return token


def start_session(principal: Principal) -> str:
    """A fresh session for a user who just logged in (a new CSRF token too); its CSRF token."""
    session.clear()
    session.permanent = True
    session.update(user=principal.name, fp=principal.fingerprint, csrf=secrets.token_hex(32),
                   sid=secrets.token_hex(16))
    return session["csrf"]


def end_session() -> None:
    """Log out: this session's id is refused from now on, and the cookie is cleared."""
    sid = session.get("sid")
    if isinstance(sid, str):
        auth_state().ended.end(sid)
    session.clear()


def _is_loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _from_session(state: AuthState) -> Principal | None:
    name, sid = session.get("user"), session.get("sid")
    if not isinstance(name, str) or not isinstance(sid, str) or state.ended.ended(sid):
        return None
    directory = state.directory
    principal = directory.user(name)
    if principal is None or not hmac.compare_digest(principal.fingerprint, str(session.get("fp", ""))):
        session.clear()  # removed, or the password changed since: log in again
        return None
    return principal


def csrf_ok() -> bool:
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = request.form.get(CSRF_FIELD)
    return bool(expected and sent) and hmac.compare_digest(str(expected), str(sent))


def _unauthenticated(message: str):
    if request.path.startswith("/api/"):
        response = error_response(401, "unauthorized", message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="dagu"'
        return response
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("auth.login_page", next=target))


def gate():
    """before_request: set g.principal, or answer 401/403/503 instead of the view."""
    state = auth_state()
    g.principal = None
    if not state.directory.configured():
        if not state.loopback_only:
            return error_response(503, "no_users", "this server listens beyond this host and has no user yet: "
                                  "add one with `dagu user add NAME --role admin`")
        if not _is_loopback_host(request.host):
            return error_response(403, "host_refused", f"host {request.host!r} is not this machine: open mode "
                                  "(no users) answers only to localhost, 127.0.0.1 and [::1]")
        g.principal = LOCAL
        return None
    principal = None
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        principal = state.directory.token(authorization[7:].strip())
        if principal is None:
            return _unauthenticated("the bearer token is unknown or revoked")
    else:
        principal = _from_session(state)
    g.principal = principal
    if request.endpoint in PUBLIC:
        return None
    if principal is None:
        return _unauthenticated("log in first (POST /api/v1/auth/login), or send Authorization: Bearer <token>")
    if request.method not in SAFE_METHODS and principal.kind != "token" and not csrf_ok():
        return error_response(403, "csrf", f"missing or wrong CSRF token: send the {CSRF_HEADER} header "
                              "(GET /api/v1/auth/me gives it) or reload the page")
    needed = required_role(request.endpoint, request.method)
    if not allows(principal.role, needed):
        return error_response(403, "forbidden", f"{principal.name} is a {principal.role}; this needs the "
                              f"{needed} role")
    return None


def init_app(app: Flask, home: str, loopback_only: bool) -> None:
    """Sign sessions with the data dir's key, gate every request, give templates the user."""
    from dagu.web import auth_views

    app.secret_key = session_key(home)
    # Not refreshed on each request: a session ends 12 h after its login, and a response never
    # sends the cookie again unless the session changed (so none can revive a logged-out one).
    app.config.update(SESSION_COOKIE_NAME="dagu_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
                      SESSION_REFRESH_EACH_REQUEST=False)
    limiter = LoginLimiter(int(app.config.get("LOGIN_MAX_FAILURES", 5)),
                           float(app.config.get("LOGIN_WINDOW_SEC", 60.0)))
    app.extensions["dagu.auth"] = AuthState(Directory(home), limiter, loopback_only)
    app.before_request(gate)
    app.context_processor(lambda: {"csrf_token": csrf_token, "principal": current_principal()})
    app.register_blueprint(auth_views.bp)
