"""The palette, the charts and the Workers page in real headless Chromium (Debian's `chromium`,
driven by Playwright) against a real `dagu server` over real runs: Ctrl-K, part of a DAG name,
Enter lands on its page; the DAG page draws its runs' durations, the run page a timeline with a
bar per attempt (a retried step has two).  Screenshots go to each test's tmp dir (look at them:
`pytest --basetemp=/tmp/shots`).  Skipped where chromium or Playwright is missing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.web.conftest import make_data
from tests.web.test_browser_flows import CHROMIUM, LIVE_MS, browser, page  # noqa: F401  (fixtures)
from tests.web.test_server import start_server, stop_server

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

RETRYING = """\
    schedule: "*/15 * * * 1-5"
    steps:
      - id: prepare
        command: echo ready
      - id: fickle
        depends: prepare
        command: sh -c 'test -f {mark} || {{ touch {mark}; exit 3; }}'
        retry_policy:
          limit: 2
          interval_sec: 0
    """


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    data = make_data(tmp_path_factory.mktemp("ui"))
    (data.dags / "nightly_report.yaml").write_text(textwrap.dedent(RETRYING.format(mark=data.root / "mark")))
    data.start("hello", "h1")
    data.start("hello", "h2", "WHO=moon")
    data.start("nightly_report", "r1")
    proc, url = start_server(data)
    try:
        yield data, url
    finally:
        stop_server(proc)


def test_ctrl_k_jumps_to_a_dag_by_part_of_its_name(site, page, tmp_path: Path) -> None:
    _data, url = site
    page.goto(f"{url}/queues")
    page.keyboard.press("Control+k")
    page.wait_for_selector("#palette-input", state="visible")
    page.keyboard.type("ntrep")  # fuzzy: n(ightly_)rep(ort)
    page.wait_for_selector('#palette-list .palette-item.active[data-href="/dags/nightly_report"]', timeout=LIVE_MS)
    page.screenshot(path=str(tmp_path / "palette.png"))
    page.keyboard.press("Enter")
    page.wait_for_url("**/dags/nightly_report", timeout=LIVE_MS)
    assert page.text_content("#dag-name") == "nightly_report"
    assert "every 15 minutes on Monday to Friday" in page.text_content("#dag-meta")


def _palette_runs_of_hello(page, url: str) -> list[str]:
    """Open the palette on the DAG list, ask for hello's runs; the hrefs listed, in order."""
    page.goto(f"{url}/dags")
    page.click("#palette-open")
    page.fill("#palette-input", "hello/h")
    page.wait_for_selector('#palette-list .palette-item[data-href="/runs/hello/h1"]', timeout=LIVE_MS)
    return page.eval_on_selector_all("#palette-list .palette-item", "els => els.map((e) => e.dataset.href)")


def test_the_palette_moves_with_the_arrows_closes_with_esc_and_finds_runs(site, page, tmp_path: Path) -> None:
    _data, url = site
    items = _palette_runs_of_hello(page, url)
    assert set(items) == {"/runs/hello/h1", "/runs/hello/h2"}
    page.keyboard.press("ArrowDown")
    chosen = page.get_attribute("#palette-list .palette-item.active", "data-href")
    assert chosen == items[1]
    page.keyboard.press("Escape")
    page.wait_for_selector("#palette", state="hidden")
    assert page.url.endswith("/dags")
    page.keyboard.press("Control+k")
    page.fill("#palette-input", "hello/h")
    page.wait_for_selector('#palette-list .palette-item[data-href="/runs/hello/h2"]', timeout=LIVE_MS)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url("**" + items[1], timeout=LIVE_MS)


def test_an_arrow_choice_made_before_the_fresh_answer_arrives_is_kept(site, page) -> None:
    """A reopened palette lists its last items at once; an arrow pressed before the answer to the
    same query arrives (held back here for 500 ms) still chooses what Enter opens."""
    import time

    _data, url = site
    items = _palette_runs_of_hello(page, url)
    assert len(items) == 2
    page.keyboard.press("Escape")

    def slow(route) -> None:
        time.sleep(0.5)
        route.continue_()

    page.route("**/search?*", slow)
    with page.expect_response("**/search?*", timeout=LIVE_MS):
        page.keyboard.press("Control+k")
        page.keyboard.press("ArrowDown")  # on the items still listed, before their fresh answer
    page.keyboard.press("Enter")
    page.wait_for_url("**" + items[1], timeout=LIVE_MS)


def test_the_dag_page_charts_each_runs_duration(site, page, tmp_path: Path) -> None:
    _data, url = site
    page.goto(f"{url}/dags/hello")
    page.wait_for_selector("#duration-chart rect.bar", timeout=LIVE_MS)
    bars = page.eval_on_selector_all("#duration-chart rect.bar", "els => els.map((e) => [e.dataset.run, e.getAttribute('class'), +e.getAttribute('height')])")
    assert [b[0] for b in bars] == ["h1", "h2"]  # oldest on the left
    assert all("s-succeeded" in b[1] and b[2] >= 1 for b in bars)
    assert max(b[2] for b in bars) == 80  # the longest run fills the chart
    page.locator("#duration-chart-box").screenshot(path=str(tmp_path / "durations.png"))
    page.screenshot(path=str(tmp_path / "dag.png"), full_page=True)


def test_the_run_page_has_a_timeline_bar_per_attempt_and_step_meters(site, page, tmp_path: Path) -> None:
    _data, url = site
    page.goto(f"{url}/runs/nightly_report/r1")
    page.wait_for_selector("#gantt-chart rect.bar", timeout=LIVE_MS)
    bars = page.eval_on_selector_all("#gantt-chart rect.bar", "els => els.map((e) => [e.dataset.step, e.dataset.attempt, e.getAttribute('class')])")
    assert [b[:2] for b in bars] == [["prepare", "1"], ["fickle", "1"], ["fickle", "2"]]
    assert "s-failed" in bars[1][2] and "s-succeeded" in bars[2][2]  # the retry shows as a second bar
    fickle = page.eval_on_selector_all('#gantt-chart rect.bar[data-step="fickle"]', "els => els.map((e) => +e.getAttribute('x'))")
    assert fickle[0] < fickle[1]  # the retry starts after the first attempt
    assert page.locator('#steps tr[data-step="fickle"] svg.meter').count() == 4  # CPU, peak RSS, read, written
    page.locator("#gantt").screenshot(path=str(tmp_path / "gantt.png"))
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)


def test_the_workers_page_lists_workers_live(site, page, tmp_path: Path) -> None:
    import time

    from dagu.distributed.records import WorkerRecord, write_worker

    data, url = site
    page.goto(f"{url}/workers")
    page.wait_for_selector("#workers-empty:not([hidden])", timeout=LIVE_MS)
    now = time.time()
    write_worker(str(data.home), WorkerRecord(id="gpu-1", host="box", pid=4242, labels={"gpu": "true"}, max_active_runs=2,
                                              heartbeat_sec=5.0, started_at=now - 60, heartbeat_at=now,
                                              running=["hello/h1"]))
    row = page.wait_for_selector('#workers-table tr[data-worker="gpu-1"]', timeout=LIVE_MS)  # no reload: live
    assert "ok" in row.text_content() and "gpu=true" in row.text_content()
    assert row.query_selector('a[href="/runs/hello/h1"]') is not None
    page.screenshot(path=str(tmp_path / "workers.png"), full_page=True)


def test_the_dags_page_says_schedules_in_words_and_filters_by_tag_and_status(site, page, tmp_path: Path) -> None:
    _data, url = site
    page.goto(f"{url}/dags")
    row = page.wait_for_selector('#dags-table tr[data-dag="hello"]', timeout=LIVE_MS)
    assert "at 03:00 every day" in row.query_selector("td.schedule").text_content()
    assert "every 15 minutes on Monday to Friday" in page.text_content('#dags-table tr[data-dag="nightly_report"] td.schedule')
    page.screenshot(path=str(tmp_path / "dags.png"), full_page=True)
    page.click('#dags-table tr[data-dag="hello"] button.tag:text("nightly")')  # a tag filters the list
    shown = lambda: page.eval_on_selector_all("#dags-table tbody tr", "els => els.map((e) => e.dataset.dag)")  # noqa: E731
    assert shown() == ["hello"]
    assert "tag=nightly" in page.url  # the filters live in the address
    page.reload()
    page.wait_for_selector('#dags-table tr[data-dag="hello"]', timeout=LIVE_MS)
    assert shown() == ["hello"] and page.input_value("#tag-filter") == "nightly"
    page.select_option("#tag-filter", "")
    page.select_option("#status-filter", "broken")
    assert shown() == ["broken"]
    page.select_option("#status-filter", "")
    page.fill("#search", "report")
    assert shown() == ["nightly_report"]
