"""Real headless Chromium (Debian's `chromium`) loads the DAGs page and a run page from a real
`dagu server`, with every host name but 127.0.0.1 unresolvable, and the rendered DOM (after the
pages' scripts ran) is checked.  Skipped, with the reason, where chromium is not installed
(.ci/run installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.web.conftest import make_data
from tests.web.test_server import start_server, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")


def dump_dom(url: str) -> str:
    """The page's DOM once its scripts ran, from a throwaway profile with no network but 127.0.0.1."""
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions", "--disable-sync",
             "--disable-background-networking", "--disable-component-update",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--timeout=8000", "--dump-dom", url],
            capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": profile})
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def dump_dom_until(url: str, ready: str, attempts: int = 3) -> str:
    """The DOM once it holds `ready` (the page's fetches after load may outlast one dump on a
    busy machine: dump again, a few times, rather than wait longer every time)."""
    for _ in range(attempts):
        dom = dump_dom(url)
        if ready in dom:
            break
    return dom


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = make_data(tmp_path_factory.mktemp("browser"))
    data.start("hello", "h1")
    data.start("gated", "g1")
    proc, url = start_server(data)
    try:
        yield url
    finally:
        stop_server(proc)


def test_the_dags_page_renders_rows_strips_and_diagnostics(server: str) -> None:
    dom = dump_dom(f"{server}/dags")
    assert 'data-dag="hello"' in dom and 'href="/dags/hello"' in dom
    assert 'class="cell s-succeeded"' in dom  # the last-runs strip
    assert "unknown key 'comand'" in dom and "broken.yaml:3:5" in dom
    assert "nightly" in dom


def test_a_run_page_renders_steps_graph_and_the_log(server: str) -> None:
    # ready once the log's first page is in (the log is fetched after the page's first paint)
    dom = dump_dom_until(f"{server}/runs/hello/h1", "hello world\n1\n2\n", attempts=6)
    assert '<tr data-step="greet"' in dom and '<tr data-step="after"' in dom
    assert 'class="node s-succeeded" data-step="greet"' in dom  # the graph, coloured
    log = dom[dom.index('<pre id="log"'):]
    assert log.split(">", 1)[1].startswith("hello world\n1\n2\n")  # the first step's log, tailed
    assert 'id="log-which" class="muted">greet<' in dom and "bytes 0\u2013" in dom


def test_a_waiting_run_page_offers_the_approval(server: str) -> None:
    dom = dump_dom(f"{server}/runs/gated/g1")
    assert 'class="approval" data-step="gate"' in dom and "Approve" in dom
