"""`dagu server` as a real process: it serves a page and the event stream, and refuses to listen
beyond this host while it has no users.  Every server started here is stopped by its pid."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.web.conftest import DAGU, Data, make_data


def start_server(data: Data) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*DAGU, "server", "--port", "0", "--dags", str(data.dags)], cwd=data.root, env=data.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = re.search(r"serving (http://127\.0\.0\.1:\d+)/", line)
    if match is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"dagu server did not start: {line}{proc.stderr.read()}")
    return proc, match.group(1)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def served(tmp_path: Path):
    data = make_data(tmp_path)
    data.start("hello", "h1")
    proc, url = start_server(data)
    try:
        yield data, url
    finally:
        stop_server(proc)


def test_the_server_serves_pages_assets_and_the_api(served) -> None:
    _data, url = served
    page = urllib.request.urlopen(f"{url}/dags", timeout=10).read().decode()
    assert "<title>DAGs" in page and "/static/live.js" in page
    assert urllib.request.urlopen(f"{url}/static/graph.js", timeout=10).status == 200
    dags = json.load(urllib.request.urlopen(f"{url}/api/v1/dags", timeout=10))["dags"]
    assert "hello" in {d["name"] for d in dags}


def test_the_event_stream_says_hello_then_reports_a_new_run(served) -> None:
    data, url = served
    stream = urllib.request.urlopen(f"{url}/api/v1/events?topics=dags,dag:hello", timeout=30)
    try:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        event = None
        while event != "hello":  # the stream is open and watching before the run starts
            line = stream.readline().decode()
            event = line[7:].strip() if line.startswith("event: ") else event
        data.start("hello", "h2")
        changed: list[str] = []
        while "dag:hello" not in changed:
            line = stream.readline().decode()
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: ") and event == "change":
                changed = json.loads(line[6:])["topics"]
    finally:
        stream.close()


def test_listening_beyond_this_host_is_refused(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    res = subprocess.run([*DAGU, "server", "--host", "0.0.0.0", "--port", "0"], cwd=data.root, env=data.env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "127.0.0.1" in res.stderr and "Traceback" not in res.stderr
