"""How long the DAG page takes to lay out and draw a large graph in real headless Chromium.

Issue 18 asks that the graph stays usable at 1,000 steps, laid out in under 2 s.  This script
writes a random 1,000-step DAG (each step depends on up to three earlier ones), serves it with a
real `dagu server`, opens its page with Playwright and reports, as medians of N loads: the time
from navigation until the SVG holds every step, and the layout+draw time measured inside the
page (`dagu.drawGraph`).  A benchmark, not a test: it prints figures and asserts nothing.

    python tests/bench/graph_bench.py [--steps 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.web.conftest import make_data  # noqa: E402
from tests.web.test_server import start_server, stop_server  # noqa: E402


def big_dag(steps: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    lines = ["type: graph", "steps:"]
    for i in range(steps):
        deps = sorted({f"s{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else []
        lines.append(f"  - id: s{i}\n    command: 'true'" + (f"\n    depends: [{', '.join(deps)}]" if deps else ""))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp))
        (data.dags / "big.yaml").write_text(big_dag(args.steps))
        proc, url = start_server(data)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                shown, drawn = [], []
                for _ in range(args.repeat):
                    page.goto("about:blank")
                    start = page.evaluate("performance.timeOrigin + performance.now()")
                    page.goto(f"{url}/dags/big", wait_until="commit")
                    page.wait_for_function(f"document.querySelectorAll('.graph-svg .node').length >= {args.steps}",
                                           timeout=60_000)
                    end = page.evaluate("performance.timeOrigin + performance.now()")
                    shown.append(end - start)
                    drawn.append(page.evaluate("""() => { const g = document.getElementById('graph');
                        const t0 = performance.now(); dagu.drawGraph(g, dagu.initial.graph, () => null);
                        return performance.now() - t0; }"""))
                browser.close()
        finally:
            stop_server(proc)
    print(f"graph of {args.steps} steps, median of {args.repeat}:")
    print(f"  page load until every step is drawn  {statistics.median(shown):8.0f} ms")
    print(f"  layout + draw (in the page)          {statistics.median(drawn):8.0f} ms")


if __name__ == "__main__":
    main()
