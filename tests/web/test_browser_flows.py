"""What a user does in the browser, in real headless Chromium (Debian's `chromium`, driven by
Playwright) against a real `dagu server` over real runs: start a DAG from its params form and
watch its steps turn green live, open a step's log, approve a waiting step with its input, and
see an edit with a broken key refused at its line with nothing written.  Each test saves a
screenshot in its tmp dir (look at them while building: `pytest --basetemp=/tmp/shots`).
Skipped, with the reason, where chromium or Playwright is missing (.ci/run installs both)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.web.conftest import make_data
from tests.web.test_server import start_server, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[test]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

LIVE_MS = 30_000  # how long a page may take to show what the run did (a wait, not a timing assertion)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    data = make_data(tmp_path_factory.mktemp("flows"))
    data.start("hello", "h1")
    proc, url = start_server(data)
    try:
        yield data, url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def test_start_from_the_params_form_and_watch_the_steps_turn_green(site, page, tmp_path: Path) -> None:
    data, url = site
    page.goto(f"{url}/dags")
    page.click('a[href="/dags/hello"]')
    page.wait_for_selector("#start-form select[name=WHO]")
    page.select_option("#start-form select[name=WHO]", "moon")
    page.click("#start-button")
    link = page.wait_for_selector("#start-result a", timeout=LIVE_MS)
    run_id = link.text_content()
    link.click()
    page.wait_for_url(f"**/runs/hello/{run_id}")
    for step in ("greet", "after"):  # the run page turns each box green as the run goes
        page.wait_for_selector(f'.graph-svg .node.s-succeeded[data-step="{step}"]', timeout=LIVE_MS)
    page.wait_for_selector("#run-status.s-succeeded", timeout=LIVE_MS)
    page.screenshot(path=str(tmp_path / "run-green.png"), full_page=True)
    # the params the form sent reached the run
    page.click('tr[data-step="greet"] button.show-log')
    page.wait_for_function("document.getElementById('log').textContent.includes('hello moon')", timeout=LIVE_MS)
    assert "bytes 0" in page.text_content("#log-range")


def test_approve_a_waiting_step_with_its_input(site, page, tmp_path: Path) -> None:
    data, url = site
    data.dagu("start", str(data.dags / "gated.yaml"), "--run-id", "g-browser")
    page.goto(f"{url}/runs/gated/g-browser")
    page.wait_for_selector('.approval[data-step="gate"]', timeout=LIVE_MS)
    page.screenshot(path=str(tmp_path / "waiting.png"), full_page=True)
    page.fill('.approval[data-step="gate"] input[name=inputs]', "TICKET=T-42")
    page.click('.approval[data-step="gate"] button.approve')
    page.wait_for_selector('.graph-svg .node.s-succeeded[data-step="ship"]', timeout=LIVE_MS)
    page.click('tr[data-step="ship"] button.show-log')
    page.wait_for_function("document.getElementById('log').textContent.includes('ship T-42')", timeout=LIVE_MS)


def test_an_edit_with_a_broken_key_is_refused_at_its_line(site, page, tmp_path: Path) -> None:
    data, url = site
    before = (data.dags / "hello.yaml").read_text()
    page.goto(f"{url}/dags/hello")
    page.wait_for_function("document.getElementById('spec-text').value.includes('says hello twice')", timeout=LIVE_MS)
    broken = before.replace("    command: echo done", "    comand: echo done")
    assert broken != before
    page.fill("#spec-text", broken)
    line = broken.splitlines().index("    comand: echo done") + 1
    # the live check marks the line while typing, before any save
    page.wait_for_selector(f'#spec-diagnostics li.error[data-line="{line}"]', timeout=LIVE_MS)
    assert "did you mean 'command'?" in page.text_content("#spec-diagnostics")
    assert page.text_content(".editor-gutter .mark.error") == str(line)
    page.click("#spec-save")
    page.wait_for_function("document.getElementById('spec-state').textContent.startsWith('refused')", timeout=LIVE_MS)
    page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
    assert "does not compile" in page.text_content("#spec-state")
    assert (data.dags / "hello.yaml").read_text() == before  # nothing was written
