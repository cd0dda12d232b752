"""The frozen `dagu` works on a host without Python: run only with DAGU_FROZEN=/path/to/dagu.

    python build/freeze.py && DAGU_FROZEN=dist/dagu .venv/bin/python -m pytest tests/frozen

Every command runs with a PATH that has the system's programs but no python
(a folder of symlinks to /usr/bin and /bin minus python*), a throwaway HOME,
DAGU_HOME and cache.  The sub-DAG test proves that `call` re-invokes the frozen
binary itself: the called DAG's step reads its supervisor's /proc/PID/exe.
The unpack-once tests (first start unpacks, later starts re-use, a changed copy
is unpacked again, a damaged binary refuses to run, concurrent first starts)
run when the binary was built with build/freeze.py's default mode.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dagu import __version__

FROZEN = os.environ.get("DAGU_FROZEN")
pytestmark = pytest.mark.skipif(not FROZEN, reason="set DAGU_FROZEN=path/to/frozen/dagu (python build/freeze.py)")
ROOT = Path(__file__).resolve().parents[2]
UNPACK_MAGIC = b"DAGUPAK1"


def unpacks_once(binary: Path) -> bool:
    with open(binary, "rb") as fh:
        fh.seek(-len(UNPACK_MAGIC), os.SEEK_END)
        return fh.read() == UNPACK_MAGIC


@pytest.fixture(scope="module")
def no_python_path(tmp_path_factory) -> str:
    """A PATH folder with every program of /usr/bin and /bin except python*."""
    folder = tmp_path_factory.mktemp("bin-without-python")
    for source in ("/usr/bin", "/bin"):
        for entry in sorted(os.listdir(source)) if os.path.isdir(source) else []:
            if "python" in entry or (folder / entry).exists():
                continue
            (folder / entry).symlink_to(os.path.join(source, entry))
    assert shutil.which("python3", path=str(folder)) is None and shutil.which("python", path=str(folder)) is None
    return str(folder)


class Host:
    """A throwaway host: the binary copied into an empty folder, its own HOME, DAGU_HOME and work dir."""

    def __init__(self, tmp: Path, path: str) -> None:
        self.bin = tmp / "opt" / "dagu"
        self.bin.parent.mkdir()
        shutil.copy2(os.path.abspath(FROZEN), self.bin)
        self.dir = tmp / "work"
        self.dir.mkdir()
        self.cache = tmp / "cache"
        self.env = {"PATH": path, "HOME": str(tmp / "home"), "DAGU_HOME": str(tmp / "dagu-home"),
                    "XDG_CACHE_HOME": str(self.cache), "LANG": "C.UTF-8"}

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(textwrap.dedent(text))
        return path

    def run(self, *args: str, binary: Path | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary or self.bin), *args], cwd=self.dir, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def copies(self) -> list[Path]:
        root = self.cache / "dagu"
        return sorted(root.iterdir()) if root.is_dir() else []


@pytest.fixture
def host(tmp_path: Path, no_python_path: str) -> Host:
    return Host(tmp_path, no_python_path)


def test_version(host: Host) -> None:
    res = host.run("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"dagu {__version__}\n"


def test_a_command_starts_without_loading_ctypes(host: Host) -> None:
    """PyInstaller's bootstrap imports ctypes at every start when it can (dagu.spec: late_ctypes);
    dagu's copy loads when something uses it, as the frozen server does (test below)."""
    assert host.run("--version").returncode == 0  # unpacks
    res = host.run("--version", env={"LD_DEBUG": "files"})  # the dynamic loader lists what it opens
    assert res.returncode == 0 and res.stdout == f"dagu {__version__}\n"
    opened = [line for line in res.stderr.splitlines() if "file=" in line]
    assert any("libpython3" in line for line in opened), "LD_DEBUG is honoured: the probe sees the loads"
    assert [line for line in opened if "_ctypes" in line or "libffi" in line] == []


def test_compile_an_example(host: Host) -> None:
    shutil.copy(ROOT / "examples" / "etl.yaml", host.dir / "etl.yaml")
    res = host.run("compile", "etl.yaml", "-o", "etl.plan.json")
    assert res.returncode == 0, res.stderr
    plan = json.loads((host.dir / "etl.plan.json").read_text())
    assert plan["root"] == "etl" and [s["id"] for s in plan["dags"]["etl"]["steps"]] == ["extract", "transform", "load"]
    schema = host.run("schema", "dag")  # package data, read through importlib.resources
    assert schema.returncode == 0 and '"$schema"' in schema.stdout


def test_validate_reports_errors_with_location(host: Host) -> None:
    host.write("bad.yaml", """\
        type: graph
        steps:
          - id: build
            command: make
          - id: test
            depends: biuld
            command: make test
        """)
    res = host.run("validate", "bad.yaml")
    assert res.returncode == 1
    assert "bad.yaml:6:" in res.stdout and "[unknown-depends]" in res.stdout


@pytest.mark.parametrize("fork", ["1", "0"])  # a sub-run forked from the supervisor, or spawned
def test_sub_dag_call_re_invokes_the_frozen_binary(host: Host, fork: str) -> None:
    host.write("who.sh", """\
        # the first ancestor that is not a shell: the supervisor of this (sub-)DAG run
        pid=$PPID
        while exe=$(readlink /proc/$pid/exe); do
            case "$exe" in */sh|*/dash|*/bash) pid=$(cut -d' ' -f4 /proc/$pid/stat) ;; *) break ;; esac
        done
        echo "$exe" > supervisor.txt
        tr '\\0' ' ' < /proc/$pid/cmdline > argv.txt
        """)
    host.write("child.yaml", """\
        params:
          - WHO: nobody
        steps:
          - id: who
            command: sh who.sh
          - id: trace
            command: echo "child ${WHO}" >> trace.txt
        """)
    host.write("parent.yaml", """\
        steps:
          - id: first
            command: echo parent >> trace.txt
          - id: call
            call: child
            params: "WHO=parent"
          - id: fan
            parallel:
              items: [a, b]
            call: child
            params: "WHO=${ITEM}"
        """)
    res = host.run("start", "parent.yaml", env={"DAGU_SUBRUN_FORK": fork})
    assert res.returncode == 0, res.stdout + res.stderr
    lines = (host.dir / "trace.txt").read_text().splitlines()
    assert lines[:2] == ["parent", "child parent"] and sorted(lines[2:]) == ["child a", "child b"]
    supervisor = (host.dir / "supervisor.txt").read_text().strip()
    argv = (host.dir / "argv.txt").read_text()
    assert "python" not in supervisor and "python" not in argv and " -m dagu" not in argv
    assert os.path.basename(supervisor) == "dagu", supervisor
    if unpacks_once(host.bin):  # the unpacked copy runs, exec'd by the launcher
        assert supervisor.startswith(str(host.cache / "dagu")), supervisor
    else:
        assert supervisor == str(host.bin)


def test_steps_do_not_inherit_the_bootloader_environment(host: Host) -> None:
    host.write("env.yaml", """\
        sandbox:
          inherit_env: true
        steps:
          - id: dump_env
            command: env > env.txt
        """)
    res = host.run("start", "env.yaml", env={"LD_LIBRARY_PATH": "/opt/mine"})
    assert res.returncode == 0, res.stderr
    env = dict(line.split("=", 1) for line in (host.dir / "env.txt").read_text().splitlines() if "=" in line)
    assert not [name for name in env if name.startswith("_PYI_")]
    assert env.get("LD_LIBRARY_PATH") == "/opt/mine"  # the caller's value, without the bundle's folder
    assert "LD_LIBRARY_PATH_ORIG" not in env


# ---- unpack-once ----

@pytest.fixture
def unpacking(host: Host) -> Host:
    if not unpacks_once(host.bin):
        pytest.skip("not an unpack-once binary (build/freeze.py --mode unpack-once)")
    return host


def test_first_start_unpacks_and_later_starts_reuse(unpacking: Host) -> None:
    assert unpacking.run("--version").returncode == 0
    [copy] = unpacking.copies()
    assert copy.name.startswith(f"{__version__}-") and (copy / "dagu").is_file()
    assert copy.stat().st_mode & 0o077 == 0  # private to this user
    inode = copy.stat().st_ino
    res = unpacking.run("--version")
    assert res.returncode == 0 and res.stderr == ""
    assert [c.stat().st_ino for c in unpacking.copies()] == [inode]


def test_a_changed_copy_is_unpacked_again(unpacking: Host) -> None:
    assert unpacking.run("--version").returncode == 0
    [copy] = unpacking.copies()
    victim = next((copy / "_internal").glob("libpython3*.so*"))  # in every build (base_library.zip is not)
    victim.chmod(0o600)
    with open(victim, "ab") as fh:
        fh.write(b"tampered")
    res = unpacking.run("--version")
    assert res.returncode == 0 and res.stdout == f"dagu {__version__}\n"
    assert "was changed after it was unpacked" in res.stderr
    [again] = unpacking.copies()
    assert not (again / "_internal" / victim.name).read_bytes().endswith(b"tampered")
    assert unpacking.run("--version").returncode == 0


def test_a_file_added_to_the_copy_is_noticed(unpacking: Host) -> None:
    assert unpacking.run("--version").returncode == 0
    [copy] = unpacking.copies()
    (copy / "_internal" / "sitecustomize.py").write_text("raise SystemExit('injected')\n")
    res = unpacking.run("--version")
    assert res.returncode == 0 and "was changed after it was unpacked" in res.stderr
    assert not (unpacking.copies()[0] / "_internal" / "sitecustomize.py").exists()


def test_a_damaged_binary_refuses_to_run(unpacking: Host) -> None:
    data = unpacking.bin.read_bytes()
    truncated = unpacking.bin.with_name("dagu-truncated")
    truncated.write_bytes(data[: len(data) // 2])
    flipped = unpacking.bin.with_name("dagu-flipped")
    middle = len(data) // 2
    flipped.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    for broken in (truncated, flipped):
        broken.chmod(0o755)
        res = unpacking.run("--version", binary=broken)
        assert res.returncode == 127 and "this binary is damaged" in res.stderr, res.stderr
    leftovers = [p.name for p in (unpacking.cache / "dagu").iterdir()] if (unpacking.cache / "dagu").exists() else []
    assert leftovers == []


def test_concurrent_first_starts_share_one_copy(unpacking: Host) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: unpacking.run("--version"), range(6)))
    assert all(r.returncode == 0 and r.stdout == f"dagu {__version__}\n" for r in results), \
        [r.stderr for r in results]
    assert len(unpacking.copies()) == 1  # no .unpack-* left behind


def test_a_cache_writable_by_others_is_refused(unpacking: Host) -> None:
    root = unpacking.cache / "dagu"
    root.mkdir(parents=True)
    root.chmod(0o777)
    res = unpacking.run("--version")
    assert res.returncode == 127 and "not writable by others" in res.stderr


def test_the_scheduler_zygote_of_the_frozen_binary_forks_working_runs(host: Host) -> None:
    """launch/local.py starts scheduled runs by asking `dagu zygote` to fork them."""
    host.write("z.yaml", """
        steps:
          - id: a
            command: echo "forked $DAG_RUN_ID" > out.txt
        """)
    assert host.run("compile", "z.yaml").returncode == 0
    plan = Path(host.env["DAGU_HOME"]) / "plans" / "z.plan.json"
    log = host.dir / "launch.log"
    zygote = subprocess.Popen([str(host.bin), "zygote"], cwd=host.dir, env=host.env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert json.loads(zygote.stdout.readline())["ready"] is True
        request = {"argv": ["start", "-q", str(plan), "--run-id", "z1"], "log": str(log)}
        zygote.stdin.write((json.dumps(request) + "\n").encode())
        zygote.stdin.flush()
        pid = json.loads(zygote.stdout.readline())["pid"]
        assert isinstance(pid, int)
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=10)
    for _ in range(200):
        status = host.run("status", "z", "--run-id", "z1", "--format", "json")
        if status.returncode == 0 and json.loads(status.stdout)["status"] == "succeeded":
            break
        time.sleep(0.05)
    assert (host.dir / "out.txt").read_text() == "forked z1\n"


def test_the_frozen_server_serves_a_page_its_assets_and_the_api(host: Host) -> None:
    """The web UI works from the one executable: templates and assets are inside it, nothing is
    fetched from elsewhere, and the API answers."""
    import re
    import urllib.request

    dags = host.dir / "dags"
    dags.mkdir()
    (dags / "hello.yaml").write_text("steps:\n  - id: hi\n    command: echo hi\n")
    proc = subprocess.Popen([str(host.bin), "server", "--port", "0", "--dags", str(dags)], cwd=host.dir,
                            env=host.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "serving http://" not in line:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            line = proc.stderr.readline() if proc.stderr else ""
        base = re.search(r"(http://127\.0\.0\.1:\d+)/", line).group(1)
        page = urllib.request.urlopen(f"{base}/dags", timeout=30).read().decode()
        assert "hello" in page
        assert not re.search(r"""(src|href)=["']https?://(?!127\.0\.0\.1)""", page)
        assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", page)
        assert assets, "the page names no asset of its own"
        for asset in assets:
            assert urllib.request.urlopen(base + asset, timeout=30).status == 200, asset
        api = json.loads(urllib.request.urlopen(f"{base}/api/v1/dags", timeout=30).read())
        assert [d["name"] for d in api["dags"]] == ["hello"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_frozen_s3_step_type_puts_and_gets_an_object(host: Host, tmp_path: Path) -> None:
    """The binary carries only the botocore models dagu calls (build/dagu.spec): S3's is enough for a
    round trip, against the moto S3 server (tests/executors/server_s3.py)."""
    from tests.executors.server_s3 import s3_client, s3_defaults, start_moto

    server = start_moto(tmp_path / "moto")
    try:
        s3_client(server).create_bucket(Bucket="frozen")
        (host.dir / "in.txt").write_text("carried by a frozen dagu\n")
        host.write("s3.yaml", s3_defaults(server, "frozen", secret_from="MY_SECRET") + """
        steps:
          - id: up
            type: s3
            command: upload
            with: {key: a/in.txt, source: in.txt}
          - id: down
            type: s3
            command: download
            with: {key: a/in.txt, destination: out.txt}
        """)
        res = host.run("start", "s3.yaml", env={"MY_SECRET": "moto-checks-no-signature"})
        assert res.returncode == 0, res.stdout + res.stderr
        assert (host.dir / "out.txt").read_text() == "carried by a frozen dagu\n"
    finally:
        server.stop()
