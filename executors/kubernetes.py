"""kubernetes (k8s) steps: run the step as a Job, stream its pod's log, and clean up.

Talks to the API server through the official `kubernetes` client (imported when a step runs),
with a fresh ApiClient per step built from `kubeconfig:` / KUBECONFIG / in-cluster settings, so
no global client configuration is touched.  Why the shape below:

- The Job gets `backoffLimit: 0` unless told otherwise: dagu's own retry_policy retries steps.
- The Job is polled (not watched) for completion: a poll survives API-server hiccups and needs
  no resourceVersion bookkeeping; the pod's log is followed as soon as the pod runs.
- A stop or a timeout deletes the Job *and* its pods (propagation Background, then the pods by
  the `job-name` label, explicitly, so no pod keeps running even where garbage collection lags),
  from the cancellation callback's own thread.
- The container's env is the workflow's declared env (never the operator's); values go in the
  Job object, never on a command line.
"""

from __future__ import annotations

import codecs
import os
import re
import secrets
import threading
import time
from dataclasses import field
from typing import Any

from dagu.spec.records import dataclass
from dagu.executors.base import Cancellation, ExecutorError, StepIO, StepRequest, StepResult
from dagu.executors.kubernetes_spec import job_body

_TERMINAL_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                     "CreateContainerError")


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    try:
        from kubernetes import client  # noqa: F401  (the client, only when a k8s step runs)
    except ImportError:
        return StepResult(exit_code=1, error="the kubernetes step needs the `kubernetes` Python package")
    cfg = request.config
    try:
        api_client, server = _api_client(request)
    except ExecutorError as exc:
        return StepResult(exit_code=1, error=str(exc))
    namespace = str(cfg.get("namespace") or "default")
    name = _job_name(request)
    try:
        body = job_body(request, name)
    except ExecutorError as exc:
        return StepResult(exit_code=1, error=str(exc))
    job = _Job(api_client, server, namespace, name, io, cancel, float(cfg.get("poll_interval") or 1.0))
    keep = str(cfg.get("cleanup_policy") or "delete") == "keep"
    try:
        return job.run(body, keep=keep)
    except Exception as exc:  # the client's ApiException, urllib3's errors, ...
        if cancel.is_set():
            return StepResult(exit_code=1, error=f"cancelled: job {namespace}/{name} deleted")
        return StepResult(exit_code=1, error=f"kubernetes API at {server}: {job.phase} failed "
                                             f"({_short(exc)}){_hint(exc)}")
    finally:
        if cancel.is_set() or not keep:  # whatever ended the step (an API error too), nothing is left running
            job.delete()
        try:
            api_client.close()
        except Exception:
            pass


def _api_client(request: StepRequest) -> tuple[Any, str]:
    """A fresh ApiClient from the kubeconfig (with: kubeconfig, KUBECONFIG, ~/.kube/config) or the
    in-cluster service account; and the server's host:port for messages."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = request.config
    path = cfg.get("kubeconfig") or request.env.get("KUBECONFIG") or request.parent_env.get("KUBECONFIG")
    home = request.parent_env.get("HOME") or os.path.expanduser("~")
    if not path and os.path.exists(os.path.join(home, ".kube", "config")):
        path = os.path.join(home, ".kube", "config")
    configuration = client.Configuration()
    try:
        if path:
            path = os.path.join(request.cwd, os.path.expanduser(str(path)))
            if not os.path.isfile(path):
                raise ExecutorError(f"kubeconfig {path} does not exist: fix `kubeconfig:` or KUBECONFIG")
            config.load_kube_config(config_file=path, context=cfg.get("context") or None,
                                    client_configuration=configuration, persist_config=False)
        elif request.parent_env.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            raise ExecutorError("no kubeconfig: set `kubeconfig:` (or KUBECONFIG in the step env), "
                                "or run dagu inside a cluster")
    except ConfigException as exc:
        raise ExecutorError(f"kubeconfig {path or '(in-cluster)'}: {_short(exc)}") from None
    configuration.retries = 1
    server = re.sub(r"^https?://", "", configuration.host).rstrip("/")
    return client.ApiClient(configuration), server


def _job_name(request: StepRequest) -> str:
    """A DNS-1123 name, unique per attempt: dagu-<dag>-<step>-<random>."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{request.dag_name}-{request.step_id}".lower()).strip("-")
    return f"dagu-{slug[:40].rstrip('-')}-{secrets.token_hex(4)}"


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    status = getattr(exc, "status", None)
    if status:
        text = f"HTTP {status} {reason or ''}".strip()
    else:
        text = str(reason or exc).strip().splitlines()[0] if str(reason or exc).strip() else ""
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _hint(exc: BaseException) -> str:
    text = f"{exc} {getattr(exc, 'reason', '')}"
    status = getattr(exc, "status", None)
    if "Connection refused" in text or "NewConnectionError" in text or "Max retries" in text:
        return "; is the API server up, and the kubeconfig's server address right?"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "; the API server's host name does not resolve: check the kubeconfig's server"
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text:
        return "; TLS verification failed: check the kubeconfig's certificate-authority"
    if status in (401, 403):
        return "; the credentials of the kubeconfig's user are refused, or lack this permission"
    return ""


@dataclass
class _Job:
    api_client: Any
    server: str
    namespace: str
    name: str
    io: StepIO
    cancel: Cancellation
    poll: float
    phase: str = "connect"
    created: bool = False
    deleted: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Event = field(default_factory=threading.Event)

    def run(self, body: dict[str, Any], keep: bool) -> StepResult:
        from kubernetes import client

        batch = client.BatchV1Api(self.api_client)
        core = client.CoreV1Api(self.api_client)
        self.phase = f"create job {self.namespace}/{self.name}"
        batch.create_namespaced_job(self.namespace, body, _request_timeout=30)
        self.created = True
        # not a daemon: an exiting supervisor still waits for the deletion
        self.cancel.on_cancel(lambda: threading.Thread(target=self.delete, name="k8s-cleanup", daemon=False).start())
        self.io.err.write(f"job {self.namespace}/{self.name} created\n")
        streamed: set[str] = set()
        reported: set[str] = set()
        while True:
            if self.cancel.is_set():
                return StepResult(exit_code=1, error=f"cancelled: job {self.namespace}/{self.name} deleted")
            self.phase = f"read job {self.namespace}/{self.name}"
            job = batch.read_namespaced_job_status(self.name, self.namespace, _request_timeout=30)
            pods = self._pods(core)
            for pod in pods:
                problem = _waiting_problem(pod)
                if problem and problem not in reported:
                    reported.add(problem)
                    self.io.err.write(f"pod {pod.metadata.name}: {problem}\n")
                if pod.metadata.name not in streamed and (pod.status and pod.status.phase) in (
                        "Running", "Succeeded", "Failed"):
                    streamed.add(pod.metadata.name)
                    self.phase = f"stream the log of pod {pod.metadata.name}"
                    self._stream_log(core, pod.metadata.name)
            outcome = _outcome(job)
            if outcome is not None and all(p.metadata.name in streamed or not _started(p) for p in pods):
                pods = self._pods(core)
                code = 0 if outcome else _exit_code(pods)
                if not keep:
                    self.delete()
                if outcome:
                    return StepResult(exit_code=0)
                return StepResult(exit_code=code, error=f"job {self.namespace}/{self.name} failed"
                                                        f"{_failure_reason(job, pods)}")
            self.cancel.wait(self.poll)

    def _pods(self, core: Any) -> list[Any]:
        """The Job's pods (by the job-name label, checked here too)."""
        self.phase = f"list the pods of job {self.namespace}/{self.name}"
        try:
            listed = core.list_namespaced_pod(self.namespace, label_selector=f"job-name={self.name}",
                                              _request_timeout=30).items
        except Exception as exc:
            if getattr(exc, "status", None) == 404:  # no pod yet (an API may answer 404 for an empty list)
                return []
            raise
        return [p for p in listed if (p.metadata.labels or {}).get("job-name") == self.name
                or (p.metadata.labels or {}).get("batch.kubernetes.io/job-name") == self.name]

    def _stream_log(self, core: Any, pod: str) -> None:
        """Follow the pod's log until the container ends (or a stop closes the connection)."""
        response = core.read_namespaced_pod_log(pod, self.namespace, follow=True, _preload_content=False)
        self.cancel.on_cancel(lambda: _close(response))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for chunk in response.stream(65536):
                text = decoder.decode(chunk)
                if text:
                    self.io.out.write(text)
                    self.io.out.flush()
                if self.cancel.is_set():
                    break
        except Exception:
            if not self.cancel.is_set():
                raise
        finally:
            tail = decoder.decode(b"", final=True)
            if tail:
                self.io.out.write(tail)
            _close(response)

    def delete(self) -> None:
        """Delete the Job and every pod it made; idempotent, never raises."""
        from kubernetes import client

        with self._lock:
            if not self.created:
                return
            if self.deleted:  # another thread deletes: wait for it to finish
                self._done.wait(15)
                return
            self.deleted = True
        try:
            self._delete(client)
        finally:
            self._done.set()

    def _delete(self, client: Any) -> None:
        batch = client.BatchV1Api(self.api_client)
        core = client.CoreV1Api(self.api_client)
        try:
            batch.delete_namespaced_job(self.name, self.namespace, propagation_policy="Background",
                                        grace_period_seconds=0, _request_timeout=10)
        except Exception:
            pass
        for _ in range(2):  # pods a lagging controller made meanwhile too
            try:
                for pod in self._pods(core):
                    core.delete_namespaced_pod(pod.metadata.name, self.namespace, grace_period_seconds=0,
                                               _request_timeout=10)
            except Exception:
                pass
            time.sleep(0.2)


def _close(response: Any) -> None:
    try:
        response.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread
    except Exception:
        pass
    try:
        response.release_conn()
    except Exception:
        pass


def _started(pod: Any) -> bool:
    return bool(pod.status and pod.status.phase in ("Running", "Succeeded", "Failed"))


def _outcome(job: Any) -> bool | None:
    """True: succeeded; False: failed; None: still running."""
    status = job.status
    if status is None:
        return None
    for condition in status.conditions or []:
        if condition.status == "True" and condition.type in ("Complete", "SuccessCriteriaMet"):
            return True
        if condition.status == "True" and condition.type in ("Failed", "FailureTarget"):
            return False
    if status.succeeded:
        return True
    if status.failed:
        return False
    return None


def _exit_code(pods: list[Any]) -> int:
    for pod in pods:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            terminated = cs.state and cs.state.terminated
            if terminated and terminated.exit_code:
                return int(terminated.exit_code)
    return 1


def _waiting_problem(pod: Any) -> str | None:
    for cs in (pod.status.container_statuses or []) if pod.status else []:
        waiting = cs.state and cs.state.waiting
        if waiting and waiting.reason in _TERMINAL_WAITING:
            return f"{waiting.reason}: {waiting.message or ''}".strip()
    return None


def _failure_reason(job: Any, pods: list[Any]) -> str:
    for condition in (job.status.conditions or []) if job.status else []:
        if condition.type == "Failed" and condition.status == "True":
            return f": {condition.reason or ''} {condition.message or ''}".rstrip()
    code = _exit_code(pods)
    return f": its container exited with status {code}"
