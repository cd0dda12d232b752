"""`secrets:` (issue 16): resolved at run start into the steps' environment, never written raw
anywhere in the run folder, and a secret that cannot be resolved refuses the run by name."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.runtime.conftest import Env

TOKEN, FILE_VALUE, MANAGED = "t0ken-from-env-71", "file-secret-93", "managed-secret-58"

WORKFLOW = r"""
    secrets:
      - name: TOKEN
        provider: env
        key: MY_TOKEN
      - name: FROM_FILE
        provider: file
        key: ./secret.txt
      - MANAGED
    steps:
      - id: use
        command: |
          for v in "$TOKEN" "$FROM_FILE" "$MANAGED"; do printf '%s\n' "$v" | md5sum | cut -c1-12; done | tr '\n' ' ' > sums
          [ "$(cat sums)" = "SUMS " ]
          echo "token=$TOKEN file=$FROM_FILE managed=$MANAGED"
          echo "on stderr: $TOKEN" >&2
        output: SHOWN
      - id: fail
        command: echo "$FROM_FILE" >&2; exit 3
        depends: [use]
        continue_on:
          failure: true
    """


def _sums() -> str:
    """What the step computes from the values it sees, so the workflow need not hold them."""
    return " ".join(hashlib.md5(f"{v}\n".encode()).hexdigest()[:12] for v in (TOKEN, FILE_VALUE, MANAGED))


def _everything_under(path: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in path.rglob("*") if p.is_file()]


def test_secrets_reach_the_steps_and_no_file_of_the_run_holds_them(env: Env) -> None:
    env.write("sec.yaml", WORKFLOW.replace("SUMS", _sums()))
    (env.dir / "secret.txt").write_text(FILE_VALUE + "\n")
    (env.home / "secrets").mkdir()
    (env.home / "secrets" / "MANAGED").write_text(MANAGED)
    res = env.run("start", "sec.yaml", "--run-id", "r1", env={"MY_TOKEN": TOKEN})
    assert res.returncode == 0, res.stderr
    st = env.status("sec", "r1")
    assert st["steps"]["use"]["status"] == "succeeded"  # the values were in the step's environment
    assert st["steps"]["use"]["output"] == "token=***** file=***** managed=*****"
    run_dir = env.home / "runs" / "sec" / "r1"
    files = _everything_under(run_dir)
    assert any(p.name == "use.1.out" for p, _ in files)
    for path, data in files:
        for value in (TOKEN, FILE_VALUE, MANAGED):
            assert value.encode() not in data, f"{value} found in {path}"
    assert (run_dir / "logs" / "use.1.err").read_text() == "on stderr: *****\n"
    for value in (TOKEN, FILE_VALUE, MANAGED):
        assert value not in res.stdout + res.stderr


def test_a_secret_that_cannot_be_resolved_refuses_the_run_naming_it(env: Env) -> None:
    env.write("sec.yaml", WORKFLOW)
    (env.dir / "secret.txt").write_text(FILE_VALUE)
    res = env.run("start", "sec.yaml", env={"MY_TOKEN": TOKEN})
    assert res.returncode != 0
    assert "secret MANAGED" in res.stderr and "Traceback" not in res.stderr
    assert not (env.dir / "trace").exists()
    assert not (env.home / "runs" / "sec").exists() or not any((env.home / "runs" / "sec").glob("*/logs/*"))
    res = env.run("start", "sec.yaml")
    assert "secret TOKEN (line 3:5): environment variable MY_TOKEN is not set" in res.stderr
    (env.dir / "secret.txt").unlink()
    (env.dir / "secret.txt").mkdir()
    res = env.run("start", "sec.yaml", env={"MY_TOKEN": TOKEN})
    assert "secret FROM_FILE" in res.stderr and "not a regular file" in res.stderr
    assert TOKEN not in res.stderr
