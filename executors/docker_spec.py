"""A docker step's `with:` block (merged over the DAG-level `container:` block) turned into the
Docker Engine API's create-container body, without importing the SDK.

Both spellings upstream Dagu accepts arrive here, because the DAG-level `container:` block is
merged under the step's `with:` at compile time: the step keys (`container_name`, `pull`,
`auto_remove`, raw `container:`/`host:`/`network:` objects in Engine API field names) and the
DAG-level ones (`exec`, `name`, `pull_policy`, `keep_container`, `network: none`, `env`).
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Any, Mapping

from dagu.spec.records import dataclass
from dagu.executors.base import ExecutorError, StepRequest
from dagu.executors.container_args import declared_env, step_argv, words

DEFAULT_HOST = "unix:///var/run/docker.sock"
PULL_POLICIES = ("always", "missing", "never", "fallback")
_STANDARD_NETWORKS = ("none", "host", "bridge", "default")


@dataclass
class ContainerSpec:
    """What one docker step does: create `config` (a new container) or exec in `exec_in`."""

    image: str = ""
    exec_in: str = ""  # the running container to exec into (exec mode)
    name: str | None = None
    platform: str | None = None
    pull: str = "missing"
    auto_remove: bool = True
    stop_timeout: int = 2
    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the Engine API create body


def daemon_host(request: StepRequest) -> str:
    """`with: host` (a string), else DOCKER_HOST declared in the step env, else the default socket."""
    host = request.config.get("host")
    if isinstance(host, str) and host.strip():
        return host.strip()
    return request.env.get("DOCKER_HOST") or DEFAULT_HOST


def describe_host(host: str) -> str:
    """host:port of a tcp daemon, or the socket path of a local one, for messages."""
    for prefix in ("tcp://", "http://", "https://"):
        if host.startswith(prefix):
            return host[len(prefix):].rstrip("/")
    return host


def pull_policy(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "always" if value else "never"
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return "always" if text == "true" else "never"
    if text not in PULL_POLICIES:
        raise ExecutorError(f"with.pull: {value!r} is not one of {', '.join(PULL_POLICIES)}")
    return text


def _pascal(key: str) -> str:
    """An Engine API field name from snake_case or camelCase (working_dir, workingDir -> WorkingDir)."""
    return "".join(part[:1].upper() + part[1:] for part in key.split("_") if part)


def _raw(block: Any, where: str) -> dict[str, Any]:
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise ExecutorError(f"{where} must be a mapping of Docker Engine API fields")
    return {_pascal(str(k)): v for k, v in block.items()}


def volume_binds(volumes: Any, cwd: str) -> list[str]:
    """`host:container[:ro|rw]` binds; a relative host path (./x, ../x, ~/x) starts from the step's
    working directory, a bare name is a named volume."""
    binds = []
    for entry in volumes or []:
        text = str(entry)
        source, sep, rest = text.partition(":")
        if not sep:
            raise ExecutorError(f"with.volumes: {text!r} is not host_path:container_path[:ro|rw]")
        if source.startswith(("./", "../")) or source in (".", ".."):
            source = os.path.normpath(os.path.join(cwd, source))
        elif source.startswith("~"):
            source = os.path.expanduser(source)
        binds.append(f"{source}:{rest}")
    return binds


def build_spec(request: StepRequest) -> ContainerSpec:
    cfg = request.config
    exec_block = cfg.get("exec")
    exec_options = exec_block if isinstance(exec_block, Mapping) else {}
    image = str(cfg.get("image") or "").strip()
    container_name = str(cfg.get("container_name") or "").strip()
    exec_in = exec_block.strip() if isinstance(exec_block, str) else ""
    if not image and container_name:
        exec_in = container_name
    if not image and not exec_in:
        raise ExecutorError("a docker step needs `image:` (run a new container) or `container_name:` / "
                            "`exec:` (run in an existing one), in with: or the DAG-level container:")
    stop_timeout = cfg.get("stop_timeout", 2)
    auto_remove = cfg.get("auto_remove")
    if auto_remove is None:
        auto_remove = not cfg.get("keep_container", False)
    spec = ContainerSpec(
        image=image, exec_in=exec_in if not image else "", platform=cfg.get("platform") or None,
        pull=pull_policy(cfg.get("pull", cfg.get("pull_policy"))),
        auto_remove=bool(auto_remove), stop_timeout=int(stop_timeout),
        argv=step_argv(request, cfg.get("shell"), cfg.get("command")),
        working_dir=str(exec_options.get("working_dir") or cfg.get("working_dir") or ""),
        user=str(exec_options.get("user") or cfg.get("user") or ""),
    )
    spec.env = declared_env(request, cfg.get("env"))
    if exec_options.get("env") is not None:
        spec.env.update(declared_env(request, exec_options.get("env"), "with.exec.env"))
    if spec.exec_in:
        return spec
    spec.name = str(cfg.get("name") or container_name or "") or None
    spec.config = _create_body(request, spec)
    return spec


def _create_body(request: StepRequest, spec: ContainerSpec) -> dict[str, Any]:
    cfg = request.config
    body: dict[str, Any] = {"Image": spec.image, "Env": [f"{k}={v}" for k, v in spec.env.items()],
                            "AttachStdout": True, "AttachStderr": True, "Tty": False, "OpenStdin": False,
                            "StopTimeout": spec.stop_timeout}
    if spec.argv is not None:
        body["Cmd"] = spec.argv
    entrypoint = words(cfg.get("entrypoint"))
    if entrypoint is not None:
        body["Entrypoint"] = entrypoint
    if spec.working_dir:
        body["WorkingDir"] = spec.working_dir
    if spec.user:
        body["User"] = spec.user
    labels = {str(k): str(v) for k, v in (cfg.get("labels") or {}).items()}
    raw = _raw(cfg.get("container"), "with.container")
    if raw.get("Env"):  # raw env adds to the declared one, never replaces it
        raw["Env"] = body["Env"] + list(raw["Env"])
    labels.update(raw.pop("Labels", None) or {})
    body.update(raw)
    body["Labels"] = {**labels, "dagu.managed": "true", "dagu.dag": request.dag_name,
                      "dagu.run_id": request.run_id, "dagu.step": request.step_id}
    host_config = _raw(cfg.get("host") if isinstance(cfg.get("host"), Mapping) else None, "with.host")
    if host_config.pop("AutoRemove", False):
        spec.auto_remove = True  # removed by dagu after the exit status is read, never by the daemon
    binds = volume_binds(cfg.get("volumes"), request.cwd)
    if binds:
        host_config["Binds"] = list(host_config.get("Binds") or []) + binds
    network = cfg.get("network")
    if isinstance(network, str) and network.strip():
        host_config["NetworkMode"] = network.strip()
        if network.strip() not in _STANDARD_NETWORKS and not network.startswith("container:"):
            body["NetworkingConfig"] = {"EndpointsConfig": {network.strip(): {}}}
    elif isinstance(network, Mapping):
        body["NetworkingConfig"] = _raw(network, "with.network")
    body["HostConfig"] = host_config
    return body
