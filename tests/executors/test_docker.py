"""docker steps against a real dockerd (tests/executors/server_dockerd.py): no bridge network,
containers with `network: none`, and a busybox image imported from a local rootfs (no registry).

Each test runs `dagu` as a user would and checks the daemon's side too: which containers carry
the run's labels afterwards (none, after a stop or a timeout).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.executors.server_dockerd import IMAGE, Dockerd, start_dockerd
from tests.runtime.conftest import Env
from tests.servers import free_port

SECRET = "s3cret-docker-value-4417"


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    yield from start_dockerd()


def _flow(dockerd: Dockerd, steps: str, top: str = "") -> str:
    return f"""
env:
  - DOCKER_HOST: {dockerd.host}
  - FROM_DAG: dag-value
{top}
steps:
{steps}
"""


def _wait(predicate, timeout: float = 20, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.1)


def test_a_step_runs_in_a_new_container_with_its_env_user_dir_volume_and_output(env: Env, dockerd: Dockerd) -> None:
    shared = env.dir / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from-host\n")
    env.write("box.yaml", _flow(dockerd, f"""
  - id: inside
    type: docker
    env:
      - FROM_STEP: step-value
    with:
      image: {IMAGE}
      pull: missing
      network: none
      user: "65534"
      working_dir: /work
      volumes: ["./shared:/data"]
      env: [FROM_WITH=with-value]
    command: sh -c 'echo "dag=$FROM_DAG step=$FROM_STEP with=$FROM_WITH op=${{OPERATOR_VAR:-none}} uid=$(id -u) pwd=$(pwd) data=$(cat /data/in.txt)"; echo to-stderr >&2'
    output: SEEN
  - id: json
    type: container
    with: {{image: {IMAGE}, network: none}}
    command: echo '{{"n":7}}'
    output: J
  - id: use
    depends: [inside, json]
    command: echo "n=${{J.n}}"
    output: USED
  - id: fails
    type: docker
    with: {{image: {IMAGE}, network: none}}
    command: sh -c 'echo partial; exit 3'
    continue_on: {{failure: true}}
"""))
    res = env.run("start", "box.yaml", "--run-id", "r1", env={"OPERATOR_VAR": "leaked"})
    assert "Traceback" not in res.stderr and "yaml" not in res.stderr, res.stderr
    st = env.status("box", "r1")
    inside = st["steps"]["inside"]
    assert inside["status"] == "succeeded", (res.stderr, inside)
    assert inside["output"] == ("dag=dag-value step=step-value with=with-value op=none uid=65534 pwd=/work "
                                "data=from-host")
    assert "to-stderr" in Path(inside["attempts"][0]["stderr"]).read_text()
    assert st["steps"]["use"]["output"] == "n=7"
    fails = st["steps"]["fails"]
    assert fails["status"] == "failed" and fails["attempts"][0]["exit_code"] == 3
    assert "partial" in Path(fails["attempts"][0]["stdout"]).read_text()
    assert dockerd.containers("dagu.run_id=r1") == []  # auto_remove is the default


def test_dag_level_container_block_gives_the_defaults_and_step_keys_win(env: Env, dockerd: Dockerd) -> None:
    env.write("defaults.yaml", _flow(dockerd, """
  - id: a
    type: docker
    command: sh -c 'echo "$LEVEL $(pwd)"'
    output: A
  - id: b
    type: docker
    with: {working_dir: /bin, env: {LEVEL: step}}
    command: sh -c 'echo "$LEVEL $(pwd)"'
    output: B
""", top=f"""container:
  image: {IMAGE}
  network: none
  pull_policy: never
  working_dir: /tmp
  env: [LEVEL=dag]"""))
    res = env.run("start", "defaults.yaml", "--run-id", "d1")
    assert res.returncode == 0, res.stderr
    st = env.status("defaults", "d1")
    assert st["steps"]["a"]["output"] == "dag /tmp"
    assert st["steps"]["b"]["output"] == "step /bin"


def test_pull_never_refuses_an_image_the_daemon_does_not_have(env: Env, dockerd: Dockerd) -> None:
    env.write("nopull.yaml", _flow(dockerd, """
  - id: missing
    type: docker
    with: {image: "dagu-no-such-image:1.0", pull: never, network: none}
    command: echo never
"""))
    res = env.run("start", "nopull.yaml", "--run-id", "p1")
    assert res.returncode != 0
    attempt = env.status("nopull", "p1")["steps"]["missing"]["attempts"][0]
    assert "dagu-no-such-image:1.0" in attempt["error"] and "pull is `never`" in attempt["error"]
    assert "Traceback" not in res.stderr + res.stdout


def test_stop_and_timeout_remove_the_container(env: Env, dockerd: Dockerd) -> None:
    env.write("slow.yaml", _flow(dockerd, f"""
  - id: sleepy
    type: docker
    with: {{image: {IMAGE}, network: none, stop_timeout: 1}}
    command: sleep 300
"""))
    proc = env.popen("start", "slow.yaml", "--run-id", "s1")
    try:
        _wait(lambda: any(c["State"] == "running" for c in dockerd.containers("dagu.run_id=s1")),
              what="the step's container running")
        started = time.monotonic()
        stop = env.run("stop", "slow")
        assert stop.returncode == 0, stop.stderr
        proc.wait(20)
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert env.status("slow", "s1")["steps"]["sleepy"]["status"] in ("aborted", "failed")
    _wait(lambda: dockerd.containers("dagu.run_id=s1") == [], timeout=5, what="the container's removal")

    env.write("late.yaml", _flow(dockerd, f"""
  - id: late
    type: docker
    timeout_sec: 1
    with: {{image: {IMAGE}, network: none, stop_timeout: 1}}
    command: sleep 300
"""))
    res = env.run("start", "late.yaml", "--run-id", "t1")
    assert res.returncode != 0
    assert env.status("late", "t1")["steps"]["late"]["status"] == "failed"
    _wait(lambda: dockerd.containers("dagu.run_id=t1") == [], timeout=5, what="the container's removal")


def test_exec_into_a_running_container_and_stop_kills_the_execd_processes(env: Env, dockerd: Dockerd) -> None:
    api = dockerd.api()
    name = f"dagu-exec-target-{os.getpid()}"
    target = api.create_container(IMAGE, ["sleep", "600"], name=name, labels={"dagu.test": "exec"},
                                  host_config=api.create_host_config(network_mode="none"))
    api.start(target)
    try:
        env.write("ex.yaml", _flow(dockerd, f"""
  - id: there
    type: docker
    with: {{container_name: {name}, exec: {{working_dir: /tmp, env: [WHO=exec]}}}}
    command: sh -c 'echo "$WHO $(pwd) $FROM_DAG"'
    output: OUT
  - id: long
    depends: [there]
    type: docker
    with: {{container_name: {name}, stop_timeout: 1}}
    command: sh -c 'sleep 400 & sleep 401'
"""))
        proc = env.popen("start", "ex.yaml", "--run-id", "e1")
        try:
            _wait(lambda: any("401" in " ".join(p) for p in api.top(name)["Processes"]), what="the exec running")
            assert env.run("stop", "ex").returncode == 0
            proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
        st = env.status("ex", "e1")
        assert st["steps"]["there"]["output"] == "exec /tmp dag-value"
        _wait(lambda: not any("40" in " ".join(p) for p in api.top(name)["Processes"]), timeout=5,
              what="the exec'd sleeps (and their child) ending")
        assert api.inspect_container(name)["State"]["Running"]  # the container itself is not ours to stop
    finally:
        api.remove_container(name, force=True)
        api.close()


def test_a_secret_in_the_container_env_is_in_no_command_line_log_or_run_file(env: Env, dockerd: Dockerd) -> None:
    env.write("sec.yaml", _flow(dockerd, f"""
  - id: use
    type: docker
    with: {{image: {IMAGE}, network: none}}  # a secret reaches the container's env under its name
    command: sh -c 'echo "token is $TOKEN"; sleep 2; [ ${{#TOKEN}} = {len(SECRET)} ]'
    output: SHOWN
""", top="secrets:\n  - name: TOKEN\n    provider: env\n    key: MY_TOKEN"))
    proc = subprocess.Popen([sys.executable, "-m", "dagu", "start", "sec.yaml", "--run-id", "x1"], cwd=env.dir,
                            env={**env.env, "MY_TOKEN": SECRET}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait(lambda: dockerd.containers("dagu.run_id=x1") != [], what="the container")
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert SECRET not in ps
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert env.status("sec", "x1")["steps"]["use"]["output"] == "token is *****"
    assert SECRET.encode() not in out + err
    for path in env.home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_retry_policy_retries_a_failing_container_step(env: Env, dockerd: Dockerd) -> None:
    env.write("retry.yaml", _flow(dockerd, f"""
  - id: flaky
    type: docker
    retry_policy: {{limit: 2, interval_sec: 0}}
    with: {{image: {IMAGE}, network: none}}
    command: sh -c 'echo try; exit 4'
"""))
    res = env.run("start", "retry.yaml", "--run-id", "y1")
    assert res.returncode != 0
    attempts = env.status("retry", "y1")["steps"]["flaky"]["attempts"]
    assert [a["exit_code"] for a in attempts] == [4, 4, 4]


@pytest.mark.parametrize("host, named", [
    ("unix:///tmp/dagu-no-such-docker.sock", "/tmp/dagu-no-such-docker.sock"),
    ("tcp://127.0.0.1:{port}", "127.0.0.1:{port}"),
])
def test_an_unreachable_daemon_is_a_step_failure_naming_it(env: Env, host: str, named: str) -> None:
    port = free_port()
    env.write("down.yaml", f"""
steps:
  - id: down
    type: docker
    with: {{image: {IMAGE}, host: "{host.format(port=port)}"}}
    command: echo never
""")
    res = env.run("start", "down.yaml", "--run-id", "n1")
    assert res.returncode != 0
    error = env.status("down", "n1")["steps"]["down"]["attempts"][0]["error"]
    assert named.format(port=port) in error and "connection failed" in error and "dockerd running" in error
    assert "Traceback" not in res.stdout + res.stderr


def test_a_typo_in_the_block_is_a_compile_error_at_its_line(env: Env) -> None:
    env.write("typo.yaml", f"""
steps:
  - id: a
    type: docker
    with:
      image: {IMAGE}
      auto_remov: true
    command: echo hi
  - id: b
    type: docker
    with:
      image: {IMAGE}
      pull: sometimes
    command: echo hi
""")
    res = env.run("compile", "typo.yaml")
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "typo.yaml:7:7" in text and "did you mean 'auto_remove'" in text, text
    assert "typo.yaml:13:13" in text, text


def test_compiling_imports_no_client_and_the_example_compiles(env: Env) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "docker.yaml"
    probe = ("import sys\nfrom dagu.cli import main\ncode = main(['compile', sys.argv[1]])\n"  # main: `dagu` itself exits at once
             "assert code == 0, code\n"
             "assert 'docker' not in sys.modules and 'kubernetes' not in sys.modules, 'a client was imported'\n")
    res = subprocess.run([sys.executable, "-c", probe, str(example)], cwd=env.dir, env=env.env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
