"""A real dockerd for the docker step's tests: its own socket, data and exec roots under a temp
directory, no bridge network and no iptables (no container traffic leaves the host), and a
busybox image imported from a local rootfs, since there is no registry to pull from.

Stopped by its own pid at the end of the module; its directories are removed.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import need

IMAGE = "dagu-test-busybox:latest"
_APPLETS = ("sh", "echo", "sleep", "cat", "env", "ls", "pwd", "id", "tr", "grep", "kill", "printf", "true",
            "false", "touch", "mkdir", "seq", "head", "yes", "wc")


@dataclass
class Dockerd:
    host: str  # unix:///.../docker.sock
    socket: Path
    proc: subprocess.Popen

    def api(self):  # type: ignore[no-untyped-def]
        import docker

        return docker.APIClient(base_url=self.host, version="auto", timeout=30)

    def containers(self, label: str) -> list[dict]:
        """Every container (running or not) carrying this label."""
        api = self.api()
        try:
            return api.containers(all=True, filters={"label": label})
        finally:
            api.close()


def _busybox_rootfs_tar() -> bytes:
    """A tar of /bin/busybox (static) and a few applet links: the whole image."""
    busybox = need("busybox")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "tmp", "etc", "proc", "sys", "dev", "work"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in _APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def start_dockerd() -> Iterator[Dockerd]:
    program = need("dockerd")
    need("containerd")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root here (rootless dockerd is not set up on these machines)")
    root = Path(tempfile.mkdtemp(prefix="dagu-dockerd-", dir="/tmp"))  # short: unix socket paths are limited
    sock = root / "docker.sock"
    log = root / "dockerd.log"
    argv = [program, "--host", f"unix://{sock}", "--data-root", str(root / "root"), "--exec-root",
            str(root / "exec"), "--pidfile", str(root / "pid"), "--bridge=none", "--iptables=false",
            "--ip6tables=false", "--containerd-namespace", f"dagu-test-{os.getpid()}"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Dockerd(host=f"unix://{sock}", socket=sock, proc=proc)
    try:
        deadline = time.monotonic() + 40
        while True:
            if proc.poll() is not None:
                pytest.skip(f"dockerd could not start here: {log.read_text(errors='replace')[-800:]}")
            if sock.exists():
                try:
                    api = server.api()
                    api.ping()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                pytest.skip(f"dockerd did not answer in 40 s: {log.read_text(errors='replace')[-800:]}")
            time.sleep(0.1)
        repository, tag = IMAGE.split(":")
        api.import_image_from_data(_busybox_rootfs_tar(), repository=repository, tag=tag)
        api.close()
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # dockerd stops its containers and its containerd shims itself
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
