"""A Kubernetes API for the kubernetes step's tests: kmock's in-process emulator on 127.0.0.1.

This is the one stand-in the issue allows: no Kubernetes API server can run on these machines.
The emulator stores objects (CRUD, list, delete) but runs no controllers, so this module plays
the Job controller and the kubelet itself, in the emulator's event loop:

- a new Job gets one pod labelled `job-name=<job>`;
- the pod "runs" the container's command: `sleep` keeps it Running until the Job is deleted,
  `exit N` fails it with exit status N, anything else succeeds;
- the pod's log (served at the real log endpoint) says which command ran, the values of the
  container env variables whose names start with SHOW_, and the Job's resources and placement,
  as JSON lines, so a test sees what reached the cluster.

The executor talks to it with the real `kubernetes` client through a kubeconfig file, exactly
as it would to a cluster.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


@dataclass
class KubeMock:
    port: int
    kubeconfig: Path
    jobs_seen: dict[str, dict] = field(default_factory=dict)  # every Job ever created, by name
    _state: dict = field(default_factory=dict)

    def live(self, plural: str) -> list[str]:
        """Names of the objects of a resource (jobs, pods) that exist now."""
        emulator = self._state["emulator"]
        return [key[2] for key in list(emulator.objects)
                if key[0].plural == plural and not emulator.objects[key].deleted]


def _log_for(state: dict, url: str) -> bytes:
    match = re.search(r"/namespaces/([^/]+)/pods/([^/]+)/log", url)
    pod = state["pods"].get(match.group(2)) if match else None
    if pod is None:
        return b""
    container = pod["container"]
    lines = [{"ran": container.get("command")},
             {"env": {e["name"]: e.get("value") for e in container.get("env", []) if e["name"].startswith("SHOW_")}},
             {"placement": {k: pod["spec"].get(k) for k in ("serviceAccountName", "nodeSelector", "tolerations")},
              "resources": container.get("resources"), "ttl": pod["job"]["spec"].get("ttlSecondsAfterFinished"),
              "namespace": pod["namespace"]}]
    return ("\n".join(json.dumps(line, sort_keys=True) for line in lines) + "\n").encode()


async def _controller(emulator: Any, mock: KubeMock, state: dict) -> None:
    seen: set[tuple[str, str]] = set()
    while True:
        for key in list(emulator.objects):
            resource, namespace, name = key
            obj = emulator.objects[key]
            if resource.plural != "jobs" or obj.deleted or (namespace, name) in seen:
                continue
            seen.add((namespace, name))
            job = json.loads(json.dumps(obj.raw if hasattr(obj, "raw") else dict(obj)))
            mock.jobs_seen[name] = job
            spec = job["spec"]["template"]["spec"]
            container = spec["containers"][0]
            pod_name = f"{name}-pod0"
            argv = " ".join(container.get("command") or [])
            code = int(m.group(1)) if (m := re.search(r"exit (\d+)", argv)) else 0
            running = "sleep" in argv
            state["pods"][pod_name] = {"container": container, "spec": spec, "job": job, "namespace": namespace}
            terminated = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
            emulator.objects["v1/pods", namespace, pod_name] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace,
                             "labels": {**job["spec"]["template"]["metadata"].get("labels", {}), "job-name": name}},
                "spec": spec,
                "status": {"phase": "Running" if running else "Succeeded" if code == 0 else "Failed",
                           "containerStatuses": [{"name": container["name"], "ready": running, "restartCount": 0,
                                                  "image": container["image"], "imageID": "",
                                                  "state": {"running": {}} if running else terminated}]}}
            if not running:
                obj.patch({"status": {"succeeded": 1} if code == 0 else {"failed": 1}})
        await asyncio.sleep(0.05)


def start_kube(tmp: Path) -> Iterator[KubeMock]:
    import kmock

    ready = threading.Event()
    state: dict = {"pods": {}}
    holder: dict = {}

    def serve() -> None:
        async def main() -> None:
            async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
                log_path = re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log")
                emulator["get", log_path] << (lambda request: _log_for(state, str(request.url)))
                mock = KubeMock(port=server.port, kubeconfig=tmp / "kubeconfig", _state=state)
                state["emulator"] = emulator
                holder["mock"] = mock
                task = asyncio.create_task(_controller(emulator, mock, state))
                state["loop"] = asyncio.get_running_loop()
                state["stop"] = asyncio.Event()
                ready.set()
                await state["stop"].wait()
                task.cancel()

        asyncio.run(main())

    thread = threading.Thread(target=serve, name="kmock", daemon=True)
    thread.start()
    assert ready.wait(20), "kmock's emulator did not start"
    mock = holder["mock"]
    mock.kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: kmock
  cluster: {{server: "http://127.0.0.1:{mock.port}"}}
users:
- name: tester
  user: {{token: not-checked-by-the-emulator}}
contexts:
- name: kmock
  context: {{cluster: kmock, user: tester, namespace: default}}
current-context: kmock
""")
    try:
        yield mock
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)
