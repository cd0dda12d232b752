"""`dagu` leaves without the interpreter's teardown, but nothing a normal exit does first is lost:
the exit code, everything written to stdout, exit handlers, and threads that still have work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _dagu(tmp_path: Path, *argv: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys\n{prelude}\nsys.argv = ['dagu', *{list(argv)!r}]\nfrom dagu.cli import run\nrun()\n"
    env = {**os.environ, "DAGU_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)


def test_the_exit_code_and_all_of_a_large_output_arrive(tmp_path: Path) -> None:
    steps = "".join(f"  - id: s{i}\n    command: echo {i}\n" for i in range(400))
    (tmp_path / "big.yaml").write_text("type: chain\nsteps:\n" + steps)
    plan = _dagu(tmp_path, "compile", "big.yaml", "-o", "-")
    assert plan.returncode == 0, plan.stderr
    document = json.loads(plan.stdout)  # the whole document, flushed before the exit
    assert len(document["dags"][document["root"]]["steps"]) == 400
    (tmp_path / "bad.yaml").write_text("steps:\n  - id: a\n    depends: [nope]\n    command: 'true'\n")
    bad = _dagu(tmp_path, "validate", "bad.yaml")
    assert bad.returncode == 1 and "nope" in bad.stdout and bad.stdout.endswith("(checked 1 file)\n")


def test_exit_handlers_run_and_a_working_thread_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "thread-done"
    prelude = ("import atexit, threading, time\n"
               "atexit.register(lambda: print('exit handler ran', flush=True))\n"
               f"threading.Thread(target=lambda: (time.sleep(0.5), open({str(marker)!r}, 'w').close())).start()\n")
    result = _dagu(tmp_path, "--version", prelude=prelude)
    assert result.returncode == 0
    assert result.stdout.startswith("dagu ") and "exit handler ran" in result.stdout
    assert marker.exists()  # the normal exit waited for the thread
