"""The retry rule of a lost worker's run, without a broker: what the run's records and the pending
file say after each loss (the end-to-end retry on a real worker is in test_workers.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dagu.distributed import records, retries
from dagu.store.runs import Store


def _run(tmp_path: Path, policy: str) -> tuple[str, Store]:
    src = tmp_path / "d.yaml"
    src.write_text(f"worker_selector: {{}}\n{policy}steps:\n  - name: s\n    command: 'true'\n")
    plan = tmp_path / "d.json"
    subprocess.run([sys.executable, "-m", "dagu", "compile", str(src), "-o", str(plan)], check=True)
    home = str(tmp_path / "home")
    store = Store(home)
    store.create("d", "r1", plan.read_text())
    assert records.claim(home, "d", "r1", "w0", "start", extra={"queue": "dagu.any", "env": []})
    return home, store


def test_each_loss_takes_one_attempt_up_to_the_limit_and_a_message_taken_but_never_claimed_counts(
        tmp_path: Path) -> None:
    home, store = _run(tmp_path, "retry_policy: {limit: 2}\n")
    run = store.run("d", "r1")
    note = records.fail_lost_run(home, "d", "r1", "worker w0 was lost")
    assert note and "retry 1 of 2" in note
    status = run.read().status
    assert status.status == "failed" and [r["attempt"] for r in status.retries] == [1]
    sent: list[tuple[str, dict]] = []
    assert retries.send_due(home, lambda q, m: sent.append((q, m)))
    assert [(q, m["op"], m["attempt"]) for q, m in sent] == [("dagu.any", "retry", 1)]
    assert not Path(retries.pending_path(home, "d", "r1")).exists()
    # the worker that took retry 1 was lost before it claimed it: attempt 1 is given up, 2 scheduled
    note = records.fail_lost_run(home, "d", "r1", "worker w1 was lost")
    assert note and "retry 1 lost with its worker" in note and "retry 2 of 2" in note
    status = run.read().status
    assert status.retries[0]["refused"].startswith("worker w1 was lost")
    assert not retries.is_current(run, 1) and retries.is_current(run, 2)  # a late retry 1 is dropped
    assert records.claim(home, "d", "r1", "w2", "retry", attempt=2)
    assert records.read_claim(home, "d", "r1")["worker"] == "w2"
    assert records.fail_lost_run(home, "d", "r1", "again") is None  # claimed: its own worker's sweep decides


def test_no_retry_policy_no_retry_and_a_sub_run_is_its_callers_to_retry(tmp_path: Path) -> None:
    home, store = _run(tmp_path, "")
    note = records.fail_lost_run(home, "d", "r1", "worker w0 was lost")
    assert note and "retry" not in note
    assert store.run("d", "r1").read().status.retries == []
    assert not Path(retries.pending_path(home, "d", "r1")).parent.exists()
    assert json.loads(Path(records.claim_path(home, "d", "r1")).read_text())["queue"] == "dagu.any"
