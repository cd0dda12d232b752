"""docker (container) steps: run the step in a new container, or exec it in a running one.

Talks to the Docker Engine API through the `docker` SDK (imported when a step runs, never at
compile time).  Why the shape below:

- The container's stdout and stderr are attached *before* it starts, so no early line is lost,
  and written to the step's log as they arrive; its exit status is the step's.
- A stop or a timeout stops the container (its stop signal, then SIGKILL after `stop_timeout`)
  and removes it, from the cancellation callback's own thread, so nothing is left on the daemon
  even if the engine stops waiting for this step.  Every container is labelled with the run and
  step (`dagu.run_id`, `dagu.step`) so leftovers can be found.
- An exec into an existing container cannot be killed through the API, so each exec carries a
  random `DAGU_EXEC_TOKEN` in its environment; a stop runs a second exec that signals every
  process holding that token (the exec'd command and its children).
- The operator's environment never reaches the container (container_args.declared_env); env
  values travel in the API request body, never on a command line.
"""

from __future__ import annotations

import codecs
import os
import secrets
import threading
from dataclasses import field
from typing import Any, Iterable, TextIO

from dagu.spec.records import dataclass
from dagu.executors.base import Cancellation, ExecutorError, StepIO, StepRequest, StepResult
from dagu.executors.docker_spec import ContainerSpec, build_spec, daemon_host, describe_host

def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    try:
        import docker  # the SDK, only when a docker step runs
        import docker.errors
        import requests.exceptions
    except ImportError:
        return StepResult(exit_code=1, error="the docker step needs the `docker` Python package "
                                             "(pip install docker)")
    host = daemon_host(request)
    where = describe_host(host)
    try:
        spec = build_spec(request)
    except ExecutorError as exc:
        return StepResult(exit_code=1, error=str(exc))
    try:
        api = docker.APIClient(base_url=host, version="auto", timeout=60, tls=_tls(request, host))
    except docker.errors.DockerException as exc:
        return StepResult(exit_code=1, error=f"docker daemon at {where}: connection failed ({_short(exc)}); "
                                             "is dockerd running, and is `host:` / DOCKER_HOST right?")
    session = _Session(api, request, io, cancel, spec, where)
    try:
        if spec.exec_in:
            return session.exec_in_container()
        return session.run_container()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        if cancel.is_set():
            return StepResult(exit_code=1, error="cancelled")
        return StepResult(exit_code=1, error=f"docker daemon at {where}: {session.phase} failed ({_short(exc)})"
                                             f"{session.hint(exc)}")
    finally:
        session.close()


def _tls(request: StepRequest, host: str) -> Any:
    """TLS for a tcp:// daemon when DOCKER_TLS_VERIFY / DOCKER_CERT_PATH are declared in the step env."""
    if not host.startswith(("tcp://", "https://")) or not request.env.get("DOCKER_TLS_VERIFY"):
        return False
    import docker.tls

    certs = request.env.get("DOCKER_CERT_PATH") or os.path.join(request.parent_env.get("HOME", "~"), ".docker")
    return docker.tls.TLSConfig(client_cert=(os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem")),
                                ca_cert=os.path.join(certs, "ca.pem"), verify=True)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Session:
    api: Any
    request: StepRequest
    io: StepIO
    cancel: Cancellation
    spec: ContainerSpec
    where: str
    phase: str = "connect"
    container_id: str | None = None
    removed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- new container -------------------------------------------------------------------------

    def run_container(self) -> StepResult:
        spec = self.spec
        self.phase = f"image {spec.image}"
        problem = self._ensure_image()
        if problem:
            return StepResult(exit_code=1, error=problem)
        if self.cancel.is_set():
            return StepResult(exit_code=1, error="cancelled")
        self.phase = "create container"
        created = self.api.create_container_from_config(spec.config, name=spec.name, platform=spec.platform)
        self.container_id = created["Id"]
        self.io.err.write(f"container {spec.name or self.container_id[:12]} created from {spec.image}\n")
        self.cancel.on_cancel(self._on_cancel)
        self.phase = "attach"
        frames = self.api.attach(self.container_id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
        self.phase = "start container"
        self.api.start(self.container_id)
        self.phase = "read container output"
        _pump(frames, self.io)
        self.phase = "wait for container"
        status = self.api.wait(self.container_id)
        code = int(status.get("StatusCode", 1))
        if self.cancel.is_set():
            return StepResult(exit_code=code or 1, error="cancelled: container stopped and removed")
        if spec.auto_remove:
            self._remove()
        detail = (status.get("Error") or {}).get("Message") if isinstance(status.get("Error"), dict) else None
        return StepResult(exit_code=code, error=None if code == 0 else
                          f"container exited with status {code}" + (f": {detail}" if detail else ""))

    def _ensure_image(self) -> str | None:
        """Apply the pull policy; an error message, or None when the image is there."""
        import docker.errors

        spec = self.spec
        policy = spec.pull

        def present() -> bool:
            try:
                self.api.inspect_image(spec.image)
                return True
            except docker.errors.ImageNotFound:
                return False

        if policy == "never":
            return None if present() else (f"image {spec.image} is not on the docker daemon at {self.where} and "
                                           "pull is `never`: build or load it there, or set pull: missing")
        if policy == "missing" and present():
            return None
        try:
            self._pull()
            return None
        except docker.errors.DockerException as exc:
            if policy == "fallback" and present():
                self.io.err.write(f"pull of {spec.image} failed ({_short(exc)}); using the local image\n")
                return None
            return (f"pulling image {spec.image} through the docker daemon at {self.where} failed ({_short(exc)}); "
                    "check the image name and the daemon's registry access, or use pull: never with a local image")

    def _pull(self) -> None:
        repository, tag = _split_image(self.spec.image)
        self.io.err.write(f"pulling {self.spec.image}\n")
        for event in self.api.pull(repository, tag=tag, stream=True, decode=True, platform=self.spec.platform):
            if self.cancel.is_set():
                raise ExecutorError("cancelled during pull")
            if "error" in event:
                import docker.errors

                raise docker.errors.APIError(event["error"])
            status = event.get("status")
            if status and "progressDetail" not in event or status and not event.get("progressDetail"):
                self.io.err.write(f"{event.get('id', '')} {status}".strip() + "\n")

    # --- exec in a running container -----------------------------------------------------------

    def exec_in_container(self) -> StepResult:
        import docker.errors

        spec = self.spec
        self.phase = f"inspect container {spec.exec_in}"
        try:
            info = self.api.inspect_container(spec.exec_in)
        except docker.errors.NotFound:
            return StepResult(exit_code=1, error=f"container {spec.exec_in} does not exist on the docker daemon at "
                                                 f"{self.where}: start it first, or give `image:` to run a new one")
        if not info.get("State", {}).get("Running"):
            return StepResult(exit_code=1, error=f"container {spec.exec_in} is not running "
                                                 f"(state: {info.get('State', {}).get('Status')}); start it first")
        argv = spec.argv or ["/bin/sh"]
        token = secrets.token_hex(12)
        env = [f"{k}={v}" for k, v in spec.env.items()] + [f"DAGU_EXEC_TOKEN={token}"]
        self.phase = "exec create"
        exec_id = self.api.exec_create(spec.exec_in, argv, stdout=True, stderr=True, environment=env,
                                       workdir=spec.working_dir or None, user=spec.user or "")["Id"]
        self.cancel.on_cancel(lambda: _background(self._kill_exec, spec.exec_in, token))
        self.phase = "exec"
        _pump(self.api.exec_start(exec_id, stream=True, demux=True), self.io)
        code = self.api.exec_inspect(exec_id).get("ExitCode")
        code = 1 if code is None else int(code)
        if self.cancel.is_set():
            return StepResult(exit_code=code or 1, error="cancelled: the exec'd processes were signalled")
        return StepResult(exit_code=code, error=None if code == 0 else f"command exited with status {code} "
                                                                          f"in container {spec.exec_in}")

    def _kill_exec(self, container: str, token: str) -> None:
        """Signal every process of the container whose environment holds this exec's token."""
        script = ('for sig in TERM KILL; do for p in /proc/[0-9]*; do '
                  'if tr "\\0" "\\n" < "$p/environ" 2>/dev/null | grep -qx "DAGU_EXEC_TOKEN=$1"; then '
                  'kill -$sig "${p#/proc/}" 2>/dev/null; fi; done; [ $sig = TERM ] && sleep "$2"; done')
        try:
            killer = self.api.exec_create(container, ["/bin/sh", "-c", script, "dagu-stop", token,
                                                      str(self.spec.stop_timeout)], user="0")["Id"]
            self.api.exec_start(killer)
        except Exception:  # best effort: the container may be gone already
            pass

    # --- stop and clean up ---------------------------------------------------------------------

    def _on_cancel(self) -> None:
        _background(self._stop_and_remove)

    def _stop_and_remove(self) -> None:
        if self.container_id is None:
            return
        try:
            self.api.stop(self.container_id, timeout=self.spec.stop_timeout)
        except Exception:
            pass
        self._remove()

    def _remove(self) -> None:
        with self._lock:
            if self.removed or self.container_id is None:
                return
            self.removed = True
        try:
            self.api.remove_container(self.container_id, force=True)
        except Exception as exc:
            import docker.errors

            if not isinstance(exc, docker.errors.NotFound):
                try:
                    self.io.err.write(f"removing container {self.container_id[:12]} failed ({_short(exc)})\n")
                except ValueError:  # the log is closed: the step was concluded already
                    pass

    def close(self) -> None:
        if self.container_id is not None and self.cancel.is_set():
            self._stop_and_remove()
        try:
            self.api.close()
        except Exception:
            pass

    def hint(self, exc: BaseException) -> str:
        text = str(exc)
        if "No such file" in text or "Connection refused" in text or "FileNotFoundError" in text:
            return "; is dockerd running, and is `host:` / DOCKER_HOST right?"
        if "permission denied" in text.lower():
            return "; the user running dagu may not use this docker socket"
        return ""


def _background(fn: Any, *args: Any) -> None:
    """Run a blocking clean-up off the engine's thread; not a daemon, so an exiting supervisor
    still waits for the container to be removed."""
    threading.Thread(target=fn, args=args, name="docker-cleanup", daemon=False).start()


def _split_image(image: str) -> tuple[str, str | None]:
    if "@" in image:
        return image, None
    name, _, tag = image.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return image, "latest"


def _pump(frames: Iterable[tuple[bytes | None, bytes | None]], io: StepIO) -> None:
    """Write demultiplexed (stdout, stderr) chunks to the step's logs as they arrive."""
    out = codecs.getincrementaldecoder("utf-8")(errors="replace")
    err = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for frame in frames:
        if not isinstance(frame, tuple):
            frame = (frame, None)
        stdout, stderr = frame
        if stdout:
            _write(io.out, out.decode(stdout))
        if stderr:
            _write(io.err, err.decode(stderr))
    _write(io.out, out.decode(b"", final=True))
    _write(io.err, err.decode(b"", final=True))


def _write(stream: TextIO, text: str) -> None:
    if text:
        stream.write(text)
        stream.flush()

