"""Real headless Chromium (Debian's, driven by Playwright) logs in to a real `dagu server` that has
users, lands on the DAG list, and logs out; a screenshot of the list goes to the test's tmp dir.
Skipped, with the reason, where chromium or Playwright is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.web.conftest import DAGU, make_data
from tests.web.test_server import start_server, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")


@pytest.fixture
def server(tmp_path: Path):
    data = make_data(tmp_path)
    data.start("hello", "h1")
    res = subprocess.run([*DAGU, "user", "add", "ada", "--role", "operator"], cwd=data.root, env=data.env,
                         input="ada-password-1\n", capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    proc, url = start_server(data)
    try:
        yield url
    finally:
        stop_server(proc)


def test_log_in_then_the_dag_list_shows_the_user_and_logs_out(server: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        try:
            page = browser.new_page()
            page.goto(f"{server}/dags", timeout=30_000)
            assert "/login?next=/dags" in page.url  # no session: to the login page first
            page.fill("input[name=user]", "ada")
            page.fill("input[name=password]", "wrong-password")
            page.click("button[type=submit]")
            assert "wrong user name or password" in page.inner_text(".login-error").lower()
            page.screenshot(path=str(tmp_path / "login-refused.png"))
            page.fill("input[name=password]", "ada-password-1")
            page.click("button[type=submit]")
            page.wait_for_selector('tr[data-dag="hello"]', timeout=30_000)
            assert page.url == f"{server}/dags"
            assert page.inner_text("#user-name") == "ada" and "operator" in page.inner_text("header")
            page.screenshot(path=str(tmp_path / "dags-logged-in.png"), full_page=True)
            assert (tmp_path / "dags-logged-in.png").stat().st_size > 1000
            # the page's own fetch POSTs carry the CSRF token: start a run from the DAG page
            page.goto(f"{server}/dags/hello")
            with page.expect_response(lambda r: r.url.endswith("/api/v1/dags/hello/start")) as started:
                page.click("#start-button")
            assert started.value.status == 202, started.value.text()
            page.click("#logout")
            page.wait_for_url("**/login**")
            assert page.goto(f"{server}/api/v1/dags").status == 401
        finally:
            browser.close()
