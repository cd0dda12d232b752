"""kubernetes (k8s) steps against kmock's Kubernetes API emulator (tests/executors/server_kube.py).

The emulator is the one stand-in allowed here, because no Kubernetes API server can run on these
machines; the test plays the Job controller and the kubelet (the emulator runs no controllers).
The executor reaches it through the real `kubernetes` client and a kubeconfig file, exactly as
it would reach a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.executors.server_kube import KubeMock, start_kube
from tests.runtime.conftest import Env
from tests.servers import free_port

SECRET = "k8s-secret-value-90210"


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeMock]:
    yield from start_kube(tmp_path_factory.mktemp("kube"))


def _wait(predicate, timeout: float = 20, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def _top(kube: KubeMock, extra: str = "") -> str:
    return f"""
kubernetes:
  kubeconfig: {kube.kubeconfig}
  image: busybox:1.36
  namespace: team
{extra}
env:
  - SHOW_DAG: from-dag
"""


def test_a_step_runs_as_a_job_with_its_settings_and_the_pod_log_is_its_output(env: Env, kube: KubeMock) -> None:
    env.write("job.yaml", _top(kube) + """
steps:
  - id: build
    type: kubernetes
    env:
      - SHOW_STEP: from-step
    with:
      env: [SHOW_WITH=from-with]
      service_account: builder
      node_selector: {disk: ssd}
      tolerations: [{key: dedicated, operator: Equal, value: ci, effect: NoSchedule}]
      resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 128Mi}}
      ttl_after_finished: 60
    command: make all
    output: LOG
  - id: broken
    type: k8s
    depends: [build]
    with: {namespace: default}
    command: sh -c 'exit 3'
    continue_on: {failure: true}
""")
    res = env.run("start", "job.yaml", "--run-id", "k1", env={"SHOW_OPERATOR": "leaked"})
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    st = env.status("job", "k1")
    build = st["steps"]["build"]
    assert build["status"] == "succeeded", (res.stderr, build)
    ran, shown, placed = (json.loads(line) for line in build["output"].splitlines())
    assert ran == {"ran": ["make", "all"]}
    assert shown == {"env": {"SHOW_DAG": "from-dag", "SHOW_STEP": "from-step", "SHOW_WITH": "from-with"}}
    assert placed["namespace"] == "team" and placed["ttl"] == 60
    assert placed["placement"] == {"serviceAccountName": "builder", "nodeSelector": {"disk": "ssd"},
                                   "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ci",
                                                    "effect": "NoSchedule"}]}
    assert placed["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
    broken = st["steps"]["broken"]
    assert broken["status"] == "failed" and broken["attempts"][0]["exit_code"] == 3
    assert "failed" in broken["attempts"][0]["error"]
    jobs = [n for n, job in kube.jobs_seen.items() if job["metadata"]["labels"]["dagu.run-id"] == "k1"]
    assert len(jobs) == 2 and all(job["spec"]["backoffLimit"] == 0 for job in kube.jobs_seen.values())
    assert not set(jobs) & set(kube.live("jobs"))  # cleanup_policy: delete (the default)
    assert not any(p.startswith(tuple(jobs)) for p in kube.live("pods"))


def test_stop_and_timeout_delete_the_job_and_its_pods(env: Env, kube: KubeMock) -> None:
    env.write("slow.yaml", _top(kube) + """
steps:
  - id: wait
    type: kubernetes
    with: {poll_interval: 0.1}
    command: sleep 300
""")
    proc = env.popen("start", "slow.yaml", "--run-id", "s1")
    try:
        def ours() -> list[str]:
            return [n for n, j in kube.jobs_seen.items() if j["metadata"]["labels"]["dagu.run-id"] == "s1"]
        _wait(lambda: ours() and any(p.startswith(ours()[0]) for p in kube.live("pods")), what="the job's pod")
        assert env.run("stop", "slow").returncode == 0
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert env.status("slow", "s1")["steps"]["wait"]["status"] in ("aborted", "failed")
    job = ours()[0]
    _wait(lambda: job not in kube.live("jobs") and not any(p.startswith(job) for p in kube.live("pods")),
          timeout=5, what="the job and its pod deleted")

    env.write("late.yaml", _top(kube) + """
steps:
  - id: late
    type: kubernetes
    timeout_sec: 5
    with: {poll_interval: 0.1}
    command: sleep 300
""")  # 5 s: importing the kubernetes client alone can take over a second on a busy machine
    res = env.run("start", "late.yaml", "--run-id", "t1")
    assert res.returncode != 0
    assert env.status("late", "t1")["steps"]["late"]["status"] == "failed"
    late = [n for n, j in kube.jobs_seen.items() if j["metadata"]["labels"]["dagu.run-id"] == "t1"]
    assert late and late[0].startswith("dagu-late-late-")
    assert kube.jobs_seen[late[0]]["spec"]["activeDeadlineSeconds"] == 6  # the cluster enforces it too
    _wait(lambda: late[0] not in kube.live("jobs") and not any(p.startswith(late[0]) for p in kube.live("pods")),
          timeout=5, what="the job and its pod deleted")


def test_a_secret_reaches_the_job_env_and_no_file_of_the_run(env: Env, kube: KubeMock) -> None:
    env.write("sec.yaml", _top(kube) + """
secrets:
  - name: TOKEN
    provider: env
    key: MY_TOKEN
steps:
  - id: use
    type: kubernetes
    with: {env: {SHOW_ME: visible}}
    command: sh -c 'echo "$TOKEN"'
""")
    res = env.run("start", "sec.yaml", "--run-id", "x1", env={"MY_TOKEN": SECRET})
    assert res.returncode == 0, res.stderr
    job = next(j for j in kube.jobs_seen.values() if j["metadata"]["labels"]["dagu.run-id"] == "x1")
    env_vars = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env_vars["TOKEN"] == SECRET and "MY_TOKEN" not in env_vars and "PATH" not in env_vars
    assert SECRET not in json.dumps(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert SECRET not in res.stdout + res.stderr
    for path in env.home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_retry_policy_retries_a_failing_job(env: Env, kube: KubeMock) -> None:
    env.write("retry.yaml", _top(kube) + """
steps:
  - id: flaky
    type: kubernetes
    retry_policy: {limit: 1, interval_sec: 0}
    command: sh -c 'exit 5'
""")
    res = env.run("start", "retry.yaml", "--run-id", "y1")
    assert res.returncode != 0
    attempts = env.status("retry", "y1")["steps"]["flaky"]["attempts"]
    assert [a["exit_code"] for a in attempts] == [5, 5]


def test_an_unreachable_api_server_is_a_step_failure_naming_it(env: Env, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "down.kubeconfig"
    config.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    env.write("down.yaml", f"""
steps:
  - id: down
    type: k8s
    with: {{image: busybox, kubeconfig: {config}}}
    command: echo never
""")
    res = env.run("start", "down.yaml", "--run-id", "n1")
    assert res.returncode != 0
    error = env.status("down", "n1")["steps"]["down"]["attempts"][0]["error"]
    assert f"127.0.0.1:{port}" in error and "is the API server up" in error, error
    assert "Traceback" not in res.stdout + res.stderr


def test_a_typo_or_missing_image_is_a_compile_error_at_its_line(env: Env) -> None:
    env.write("typo.yaml", """
steps:
  - id: a
    type: kubernetes
    with:
      image: busybox
      namespce: x
    command: echo hi
  - id: b
    type: kubernetes
    with:
      namespace: x
    command: echo hi
""")
    res = env.run("compile", "typo.yaml")
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert "typo.yaml:7:7" in text and "did you mean 'namespace'" in text, text
    assert "typo.yaml:12:7" in text and "image" in text, text


def test_compiling_the_example_imports_no_client(env: Env) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "kubernetes.yaml"
    probe = ("import sys\nfrom dagu.cli import main\ncode = main(['compile', sys.argv[1]])\n"  # main: `dagu` itself exits at once
             "assert code == 0, code\n"
             "assert 'kubernetes' not in sys.modules and 'docker' not in sys.modules, 'a client was imported'\n")
    res = subprocess.run([sys.executable, "-c", probe, str(example)], cwd=env.dir, env=env.env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
