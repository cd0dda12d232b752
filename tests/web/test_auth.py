"""Users, roles, tokens, sessions and CSRF, with users added by the real `dagu user` / `dagu token`
commands and the app over a data dir written by real runs.

The role test walks `app.url_map`: every state-changing route must refuse a viewer with 403 in
the API's error shape, so a route added later without thought is caught here (web/auth.py denies
by default, and this proves it does)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from email.utils import parsedate_to_datetime

import pytest

from tests.web.conftest import DAGU, Data, make_data

PASSWORDS = {"ada": "admin-pass-1", "otto": "operator-pass-1", "vic": "viewer-pass-1"}
ROLES = {"ada": "admin", "otto": "operator", "vic": "viewer"}
CHANGING = {"POST", "PUT", "DELETE", "PATCH"}
# Endpoints any caller may POST to: logging in, and ending one's own session.
OPEN_TO_ALL = {"auth.login_submit", "auth.api_login", "auth.logout", "auth.api_logout"}
VALUES = {"name": "hello", "dag": "gated", "run_id": "g1", "step": "gate", "action": "approve",
          "filename": "app.css"}


def dagu_input(data: Data, text: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DAGU, *args], cwd=data.root, env=data.env, input=text, capture_output=True,
                          text=True, timeout=60)


def body(res) -> dict:
    return json.loads(res.data)


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Data, dict[str, str]]:
    data = make_data(tmp_path_factory.mktemp("auth"))
    data.start("hello", "h1")
    data.start("gated", "g1")
    for user, password in PASSWORDS.items():
        res = dagu_input(data, password + "\n", "user", "add", user, "--role", ROLES[user])
        assert res.returncode == 0, res.stderr
    tokens = {}
    for role in ("viewer", "operator"):
        res = data.dagu("token", "create", f"ci-{role}", "--role", role)
        assert res.returncode == 0, res.stderr
        tokens[role] = res.stdout.strip()
    return data, tokens


@pytest.fixture(scope="module")
def app(accounts):
    from dagu.web.app import create_app

    return create_app(accounts[0].config())


def login(app, user: str):
    """A test client logged in as `user`, and its CSRF token."""
    client = app.test_client()
    res = client.post("/api/v1/auth/login", json={"user": user, "password": PASSWORDS[user]})
    assert res.status_code == 200, res.data
    assert body(res)["role"] == ROLES[user]
    return client, body(res)["csrf_token"]


def url_of(rule) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: VALUES[m.group(1)], rule.rule)


def changing_rules(app):
    return [(rule, method) for rule in app.url_map.iter_rules() for method in sorted(rule.methods & CHANGING)]


def test_the_users_file_is_private_readable_and_holds_only_hashes(accounts) -> None:
    data, tokens = accounts
    path = data.home / "users.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert json.loads(text)["users"]["vic"]["role"] == "viewer"  # cat shows who has which role
    for secret in [*PASSWORDS.values(), *tokens.values(), *(t.rsplit("_", 1)[1] for t in tokens.values())]:
        assert secret not in text
    assert "scrypt$" in text and "pbkdf2_sha256$" in text
    listing = data.dagu("user", "list")
    assert re.search(r"^vic\s+viewer\s", listing.stdout, re.M) and "ci-operator" not in listing.stdout
    assert re.search(r"^ci-operator\s+operator\s", data.dagu("token", "list").stdout, re.M)


def test_the_session_key_is_made_once_and_private(app, accounts) -> None:
    path = accounts[0].home / "web-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    from dagu.web.app import create_app

    assert create_app(accounts[0].config()).secret_key == app.secret_key == path.read_bytes()


def test_the_cli_refuses_bad_input_without_a_traceback(accounts) -> None:
    data, _ = accounts
    for args, text, word in [(("user", "add", "x"), "long-enough-1\n", "--role"),
                             (("user", "add", "x", "--role", "viewer"), "short\n", "at least 8"),
                             (("user", "add", "../x", "--role", "viewer"), "long-enough-1\n", "not allowed"),
                             (("user", "add", "vic", "--role", "admin"), "long-enough-1\n", "exists"),
                             (("user", "remove", "nobody"), "", "no user"),
                             (("token", "revoke", "nobody"), "", "no token")]:
        res = dagu_input(data, text, *args)
        assert res.returncode in (1, 2) and word in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert "admin" not in data.dagu("user", "list").stdout.split("vic", 1)[1].splitlines()[0]


def test_without_a_login_only_login_static_and_health_answer(app) -> None:
    client = app.test_client()
    res = client.get("/api/v1/dags")
    assert res.status_code == 401 and body(res)["error"]["code"] == "unauthorized"
    assert res.headers["WWW-Authenticate"].startswith("Bearer")
    res = client.get("/dags?tag=x")
    assert res.status_code == 302 and res.headers["Location"] == "/login?next=/dags?tag%3Dx"
    assert client.get("/login").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/api/v1/system/health").status_code == 200
    for rule in app.url_map.iter_rules():
        if rule.endpoint in {"auth.login_page", "static", "pages.static", "system.health"} | OPEN_TO_ALL:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            res = client.open(url_of(rule), method=method, json={})
            assert res.status_code in (401, 302), (rule.rule, method, res.status_code)


def test_logging_in_with_the_form_then_the_dags_page_names_the_user(app) -> None:
    client = app.test_client()
    page = client.get("/login?next=/dags/hello").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)
    res = client.post("/login", data={"user": "vic", "password": "wrong-password", "csrf_token": csrf})
    assert res.status_code == 401 and "wrong user name or password" in res.get_data(as_text=True).lower()
    res = client.post("/login", data={"user": "vic", "password": PASSWORDS["vic"], "next": "/dags/hello"})
    assert res.status_code == 403  # no CSRF token in the form
    res = client.post("/login", data={"user": "vic", "password": PASSWORDS["vic"], "csrf_token": csrf,
                                      "next": "/dags/hello"})
    assert res.status_code == 302 and res.headers["Location"] == "/dags/hello"
    cookie = res.headers["Set-Cookie"]
    assert cookie.startswith("dagu_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1)).timestamp()
    assert 11.9 * 3600 < expires - time.time() < 12.1 * 3600  # a 12 h session, not Flask's 31 days
    page = client.get("/dags").get_data(as_text=True)
    assert 'id="user-name">vic<' in page and 'id="logout"' in page
    fresh = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page).group(1)
    assert fresh != csrf  # a new session, a new token
    copy = client.get_cookie("dagu_session").value
    assert client.get("/api/v1/dags").headers.get("Set-Cookie") is None  # no response re-sends the cookie
    assert client.post("/logout", data={"csrf_token": fresh}).status_code == 302
    assert client.get("/api/v1/dags").status_code == 401
    client.set_cookie("dagu_session", copy)  # a copy kept from before the logout
    assert client.get("/api/v1/dags").status_code == 401


def test_an_offsite_next_is_not_followed(app) -> None:
    client = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get("/login").get_data(as_text=True)).group(1)
    res = client.post("/login", data={"user": "vic", "password": PASSWORDS["vic"], "csrf_token": csrf,
                                      "next": "//evil.example/x"})
    assert res.headers["Location"] == "/dags"


def test_a_session_must_send_the_csrf_token_to_change_anything(app) -> None:
    client, csrf = login(app, "otto")
    res = client.post("/api/v1/dags/slow/stop", json={})
    assert res.status_code == 403 and body(res)["error"]["code"] == "csrf"
    res = client.post("/api/v1/dags/slow/stop", json={}, headers={"X-CSRF-Token": "0" * 64})
    assert res.status_code == 403 and body(res)["error"]["code"] == "csrf"
    res = client.post("/api/v1/dags/slow/stop", json={}, headers={"X-CSRF-Token": csrf})
    assert res.status_code == 200 and body(res) == {"stopped": []}
    assert body(client.get("/api/v1/auth/me")) == {"user": "otto", "role": "operator", "kind": "user",
                                                   "csrf_token": csrf}


def test_a_bearer_token_needs_no_csrf_and_a_wrong_one_is_refused(app, accounts) -> None:
    client = app.test_client()
    token = accounts[1]["operator"]
    res = client.post("/api/v1/dags/slow/stop", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200, res.data  # no CSRF token, no X-Requested-With, no JSON body
    for bad in (token[:-2] + "xx", "dagu_000000000000_x", "nonsense"):
        res = client.get("/api/v1/dags", headers={"Authorization": f"Bearer {bad}"})
        assert res.status_code == 401 and body(res)["error"]["code"] == "unauthorized"


def test_every_state_changing_route_refuses_a_viewer(app, accounts) -> None:
    rules = changing_rules(app)
    assert len(rules) >= 10  # the walk sees the app's routes
    assert {r.endpoint for r, _ in rules} >= {"dags.start", "dags.put_spec", "runs.decide", "runs.retry",
                                              "runs.stop", "runs.dequeue", "auth.add_user"}
    client, csrf = login(app, "vic")
    bearer = {"Authorization": f"Bearer {accounts[1]['viewer']}"}
    checked = []
    for rule, method in rules:
        if rule.endpoint in OPEN_TO_ALL:
            continue
        for headers in ({"X-CSRF-Token": csrf}, bearer):
            res = client.open(url_of(rule), method=method, json={}, headers=headers)
            assert res.status_code == 403, (rule.rule, method, res.status_code, res.data[:200])
            error = body(res)["error"] if rule.rule.startswith("/api/") else None
            if error is not None:
                assert error["code"] == "forbidden" and "viewer" in error["message"], (rule.rule, error)
        checked.append(rule.endpoint)
    assert sorted(set(r.endpoint for r, _ in rules) - set(checked)) == sorted(OPEN_TO_ALL)


def test_a_viewer_reads_every_page_and_api(app) -> None:
    client, _ = login(app, "vic")
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and rule.endpoint not in {"auth.list_users", "events.stream"}:
            res = client.get(url_of(rule) + ("?topics=dags" if rule.endpoint.startswith("events.") else ""))
            assert res.status_code in (200, 302), (rule.rule, res.status_code)
    assert client.get("/api/v1/users").status_code == 403


def test_operators_run_but_do_not_edit_admins_edit_and_manage_users(app, accounts) -> None:
    operator, ocsrf = login(app, "otto")
    spec = body(operator.get("/api/v1/dags/hello/spec"))
    for method, url, payload in [("PUT", "/api/v1/dags/hello/spec", {"text": spec["text"]}),
                                 ("POST", "/api/v1/dags/hello/spec/check", {"text": spec["text"]}),
                                 ("POST", "/api/v1/users", {"name": "eve", "password": "12345678", "role": "admin"}),
                                 ("DELETE", "/api/v1/users/vic", {})]:
        res = operator.open(url, method=method, json=payload, headers={"X-CSRF-Token": ocsrf})
        assert res.status_code == 403 and "operator" in body(res)["error"]["message"], url
    res = operator.post("/api/v1/runs/gated/g1/steps/gate/reject", json={"reason": "no"},
                        headers={"X-CSRF-Token": ocsrf})
    assert res.status_code != 403
    admin, acsrf = login(app, "ada")
    res = admin.post("/api/v1/dags/hello/spec/check", json={"text": spec["text"]}, headers={"X-CSRF-Token": acsrf})
    assert res.status_code == 200 and body(res)["ok"]
    res = admin.post("/api/v1/users", json={"name": "newbie", "password": "newbie-pass-1", "role": "viewer"},
                     headers={"X-CSRF-Token": acsrf})
    assert res.status_code == 201
    names = {a["name"]: a for a in body(admin.get("/api/v1/users"))["accounts"]}
    assert names["newbie"]["role"] == "viewer" and "password" not in names["newbie"]
    assert names["ci-operator"]["kind"] == "token"
    assert admin.delete("/api/v1/users/newbie", headers={"X-CSRF-Token": acsrf}).status_code == 200


def test_removing_a_user_or_changing_the_password_ends_their_sessions(accounts) -> None:
    from dagu.web.app import create_app

    data, _ = accounts
    app = create_app(data.config())
    assert dagu_input(data, "temp-pass-11\n", "user", "add", "tmp", "--role", "viewer").returncode == 0
    client = app.test_client()
    assert client.post("/api/v1/auth/login", json={"user": "tmp", "password": "temp-pass-11"}).status_code == 200
    assert client.get("/api/v1/dags").status_code == 200
    assert dagu_input(data, "temp-pass-22\n", "user", "add", "tmp", "--role", "viewer", "--replace").returncode == 0
    assert client.get("/api/v1/dags").status_code == 401
    assert client.post("/api/v1/auth/login", json={"user": "tmp", "password": "temp-pass-22"}).status_code == 200
    assert data.dagu("user", "remove", "tmp").returncode == 0
    assert client.get("/api/v1/dags").status_code == 401


def test_a_revoked_token_is_refused_at_once(accounts) -> None:
    from dagu.web.app import create_app

    data, _ = accounts
    app = create_app(data.config())
    token = data.dagu("token", "create", "short-lived", "--role", "viewer").stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/dags", headers=headers).status_code == 200
    assert data.dagu("token", "revoke", "short-lived").returncode == 0
    assert app.test_client().get("/api/v1/dags", headers=headers).status_code == 401


def test_failed_logins_are_limited_per_user_and_per_address(accounts) -> None:
    from dagu.web.app import create_app

    app = create_app(accounts[0].config())
    client = app.test_client()
    for _ in range(5):
        res = client.post("/api/v1/auth/login", json={"user": "ada", "password": "wrong-one"})
        assert res.status_code == 401 and body(res)["error"]["code"] == "bad_login"
    res = client.post("/api/v1/auth/login", json={"user": "ada", "password": PASSWORDS["ada"]})
    assert res.status_code == 429 and body(res)["error"]["code"] == "too_many_attempts"
    assert 1 <= int(res.headers["Retry-After"]) <= 60
    # the same address, another name: limited too (per address)
    res = client.post("/api/v1/auth/login", json={"user": "otto", "password": PASSWORDS["otto"]})
    assert res.status_code == 429
    # another address: the user name is still limited
    other = {"environ_base": {"REMOTE_ADDR": "127.0.0.9"}}
    assert client.post("/api/v1/auth/login", json={"user": "ada", "password": PASSWORDS["ada"]},
                       **other).status_code == 429
    assert client.post("/api/v1/auth/login", json={"user": "otto", "password": PASSWORDS["otto"]},
                       **other).status_code == 200
    # the form answers 429 too; and another app instance keeps its own counts
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get("/login").get_data(as_text=True)).group(1)
    res = client.post("/login", data={"user": "ada", "password": PASSWORDS["ada"], "csrf_token": csrf})
    assert res.status_code == 429 and "too many failed logins" in res.get_data(as_text=True).lower()
    assert int(res.headers["Retry-After"]) >= 1
    fresh = create_app(accounts[0].config()).test_client()
    assert fresh.post("/api/v1/auth/login", json={"user": "ada", "password": PASSWORDS["ada"]}).status_code == 200


def test_the_limiter_lets_tries_again_once_the_window_passed() -> None:
    from dagu.web.auth import LoginLimiter

    now = [100.0]
    limiter = LoginLimiter(max_failures=2, window_sec=60, clock=lambda: now[0])
    limiter.failed(["user:a"])
    now[0] += 30
    limiter.failed(["user:a"])
    assert limiter.retry_after(["user:a"]) == 31 and limiter.retry_after(["user:b"]) == 0
    now[0] += 31
    assert limiter.retry_after(["user:a"]) == 0


def test_open_mode_answers_only_to_this_host(tmp_path) -> None:
    from dagu.web.app import create_app

    data = make_data(tmp_path)
    client = create_app(data.config()).test_client()
    assert body(client.get("/api/v1/auth/me"))["kind"] == "local"
    assert client.get("/api/v1/dags", headers={"Host": "127.0.0.1:8080"}).status_code == 200
    res = client.get("/api/v1/dags", headers={"Host": "rebound.example:8080"})
    assert res.status_code == 403 and body(res)["error"]["code"] == "host_refused"
    assert client.get("/login").status_code == 302  # nobody to log in as
    page = client.get("/dags").get_data(as_text=True)
    assert 'id="logout"' not in page


def test_beyond_this_host_with_no_user_every_request_is_refused(tmp_path) -> None:
    from dagu.web.app import create_app

    data = make_data(tmp_path)
    client = create_app({**data.config(), "LOOPBACK_ONLY": False}).test_client()
    res = client.get("/api/v1/dags")
    assert res.status_code == 503 and "dagu user add" in body(res)["error"]["message"]


def test_the_server_binds_beyond_this_host_only_once_a_user_exists(tmp_path) -> None:
    import urllib.error
    import urllib.request

    from tests.web.test_server import stop_server

    data = make_data(tmp_path)
    res = subprocess.run([*DAGU, "server", "--host", "0.0.0.0", "--port", "0"], cwd=data.root, env=data.env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "dagu user add NAME --role admin" in res.stderr and "Traceback" not in res.stderr
    assert dagu_input(data, "admin-pass-1\n", "user", "add", "ada", "--role", "admin").returncode == 0
    proc = subprocess.Popen([*DAGU, "server", "--host", "0.0.0.0", "--port", "0"], cwd=data.root, env=data.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        match = re.search(r"serving http://0\.0\.0\.0:(\d+)/", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        base = f"http://127.0.0.1:{match.group(1)}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/v1/dags", timeout=10)
        assert refused.value.code == 401
        assert urllib.request.urlopen(f"{base}/api/v1/system/health", timeout=10).status == 200
    finally:
        stop_server(proc)
