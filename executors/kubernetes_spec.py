"""A kubernetes step's `with:` block (merged over the DAG-level `kubernetes:` block) turned into
a batch/v1 Job manifest, without importing the client.

Upstream writes nested Kubernetes objects (security_context, affinity, volumes, ...) in
snake_case; the API wants camelCase, so keys of those objects are converted here, while the
user's own maps (labels, annotations, node_selector, resource quantities) are left alone.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from dagu.executors.base import ExecutorError, StepRequest
from dagu.executors.container_args import declared_env, step_argv, words

CONTAINER = "step"
_FREE_MAPS = frozenset({"labels", "annotations", "node_selector", "nodeSelector", "match_labels", "matchLabels",
                        "requests", "limits", "data", "string_data", "items_by_key"})


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_tree(value: Any) -> Any:
    """snake_case keys -> camelCase, recursively, except inside free-form maps."""
    if isinstance(value, Mapping):
        return {camel(str(k)): (dict(v) if str(k) in _FREE_MAPS and isinstance(v, Mapping) else camel_tree(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [camel_tree(v) for v in value]
    return value


def _label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.") or "x"


def _env(request: StepRequest) -> list[dict[str, Any]]:
    """Declared env as name/value pairs; upstream's {name, value_from: ...} entries kept as given."""
    cfg_env = request.config.get("env")
    sourced: list[dict[str, Any]] = []
    plain: Any = cfg_env
    if isinstance(cfg_env, list):
        sourced = [camel_tree(e) for e in cfg_env if isinstance(e, Mapping) and "value_from" in e]
        plain = [e for e in cfg_env if not (isinstance(e, Mapping) and "value_from" in e)]
    values = declared_env(request, plain)
    taken = {e.get("name") for e in sourced}
    return [{"name": k, "value": v} for k, v in values.items() if k not in taken] + sourced


def job_body(request: StepRequest, name: str) -> dict[str, Any]:
    cfg = request.config
    image = str(cfg.get("image") or "").strip()
    if not image:
        raise ExecutorError("a kubernetes step needs `image:` (in with: or the DAG-level kubernetes: block)")
    container: dict[str, Any] = {"name": CONTAINER, "image": image, "env": _env(request)}
    argv = step_argv(request, cfg.get("shell"), cfg.get("command"))
    if argv is not None:
        container["command"] = argv
    if cfg.get("args") is not None:
        container["args"] = words(cfg.get("args"))
    simple = {"working_dir": "workingDir", "image_pull_policy": "imagePullPolicy"}
    for key, api_key in simple.items():
        if cfg.get(key):
            container[api_key] = cfg[key]
    for key in ("resources", "security_context", "volume_mounts", "env_from"):
        if cfg.get(key):
            container[camel(key)] = camel_tree(cfg[key])
    labels = {str(k): str(v) for k, v in (cfg.get("labels") or {}).items()}
    labels.update({"dagu.managed": "true", "dagu.dag": _label_value(request.dag_name),
                   "dagu.run-id": _label_value(request.run_id), "dagu.step": _label_value(request.step_id)})
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if cfg.get("annotations"):
        metadata["annotations"] = {str(k): str(v) for k, v in cfg["annotations"].items()}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    pod_keys = {"service_account": "serviceAccountName", "priority_class_name": "priorityClassName",
                "termination_grace_period_seconds": "terminationGracePeriodSeconds"}
    for key, api_key in pod_keys.items():
        if cfg.get(key) is not None:
            pod[api_key] = cfg[key]
    if cfg.get("node_selector"):
        pod["nodeSelector"] = {str(k): str(v) for k, v in cfg["node_selector"].items()}
    for key in ("tolerations", "affinity", "volumes"):
        if cfg.get(key):
            pod[camel(key)] = camel_tree(cfg[key])
    if cfg.get("pod_security_context"):
        pod["securityContext"] = camel_tree(cfg["pod_security_context"])
    if cfg.get("image_pull_secrets"):
        pod["imagePullSecrets"] = [{"name": str(s)} for s in cfg["image_pull_secrets"]]
    spec: dict[str, Any] = {"backoffLimit": int(cfg.get("backoff_limit", 0)),
                            "template": {"metadata": {"labels": dict(labels)}, "spec": pod}}
    deadline = cfg.get("active_deadline") or (int(request.timeout_sec) + 1 if request.timeout_sec else None)
    if deadline:
        spec["activeDeadlineSeconds"] = int(deadline)
    if cfg.get("ttl_after_finished") is not None:
        spec["ttlSecondsAfterFinished"] = int(cfg["ttl_after_finished"])
    if cfg.get("pod_failure_policy"):
        spec["podFailurePolicy"] = camel_tree(cfg["pod_failure_policy"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
