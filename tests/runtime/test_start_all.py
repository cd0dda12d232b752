"""`dagu start-all` with real processes: the scheduler and the server come up under one supervisor,
each is restarted alone after a kill -9, SIGTERM ends everything, a busy port or a held scheduler
lock is reported instead of restarted.  Every process is ended by its pid."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from dagu.service.start_all import Backoff, RestartPolicy, describe_exit
from tests.runtime.conftest import DAGU, Env
from tests.servers import free_port

# -- the restart policy, without processes ------------------------------------------------


def test_the_delay_doubles_to_the_cap_and_the_part_is_given_up_after_five_quick_crashes() -> None:
    b = Backoff(RestartPolicy(first_delay=1, max_delay=4, crash_limit=5, crash_window=60))
    delays = [b.exited(started_at=t, now=t + 0.5) for t in (0.0, 2.0, 5.0, 10.0)]
    assert delays == [1, 2, 4, 4]
    assert b.exited(started_at=20.0, now=20.5) is None  # the fifth within 60 s


def test_a_part_that_stayed_up_starts_again_at_the_first_delay_and_old_crashes_are_forgotten() -> None:
    b = Backoff(RestartPolicy(first_delay=1, max_delay=30, healthy_after=60, crash_limit=3, crash_window=60))
    assert b.exited(0.0, 1.0) == 1
    assert b.exited(2.0, 3.0) == 2
    assert b.exited(4.0, 100.0) == 1  # up 96 s: healthy, and the two early crashes are out of the window
    assert b.exited(101.0, 102.0) == 2
    assert b.exited(104.0, 105.0) is None


def test_exits_are_described_as_a_user_reads_them() -> None:
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(-9) == "killed by SIGKILL"


# -- dagu start-all ---------------------------------------------------------------------------


class StartAll:
    """A `dagu start-all` this test started, its output in files, read as it grows."""

    def __init__(self, env: Env, *args: str, name: str = "start-all") -> None:
        self.err_path = env.dir / f"{name}.err"
        self.out_path = env.dir / f"{name}.out"
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen([*DAGU, "start-all", *args], cwd=env.dir, env=env.env,
                                         stdout=out, stderr=err, start_new_session=True)

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30) -> list[re.Match]:
        """The first `count` matches of `pattern` in stderr, waiting for them to appear."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, self.err))
            if len(found) >= count:
                return found[:count]
            assert self.proc.poll() is None or len(found) >= count, f"start-all exited:\n{self.err}"
            assert time.monotonic() < deadline, f"{pattern!r} x{count} not in:\n{self.err}"
            time.sleep(0.05)

    def pid_of(self, part: str, restart: int = 0) -> int:
        suffix = rf" \(restart {restart}\)" if restart else r"\n"
        return int(self.wait_for(rf"{part} started, pid (\d+){suffix}", 1)[0].group(1))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def started(env: Env):
    made: list[StartAll] = []

    def start(*args: str, name: str = "start-all") -> StartAll:
        made.append(StartAll(env, *args, name=name))
        return made[-1]

    yield start
    for s in made:
        if s.proc.poll() is None:
            s.stop()


def health(port: int) -> dict:
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/system/health", timeout=10))


def wait_health(port: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return health(port)
        except OSError:
            assert time.monotonic() < deadline, f"nothing answers on port {port}"
            time.sleep(0.1)


def wait_heartbeat(env: Env, pid: int, timeout: float = 30) -> dict:
    path = env.home / "scheduler" / "heartbeat.json"
    deadline = time.monotonic() + timeout
    while True:
        try:
            beat = json.loads(path.read_text())
            if beat["pid"] == pid:
                return beat
        except (OSError, ValueError):
            pass
        assert time.monotonic() < deadline, f"no heartbeat of scheduler pid {pid}"
        time.sleep(0.1)


def gone(pid: int, proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_start_all_serves_and_schedules_restarts_each_part_alone_and_stops_everything(env: Env, started) -> None:
    (env.home / "dags").mkdir()
    port = free_port()
    sa = started("--port", str(port))
    server, scheduler = sa.pid_of("server"), sa.pid_of("scheduler")
    assert wait_health(port)["status"] == "ok"
    wait_heartbeat(env, scheduler)
    assert "scheduler | " in sa.err and "dagu scheduler: active" in sa.err  # each part's output, named
    assert f"server    | dagu server: serving http://127.0.0.1:{port}/" in sa.err

    os.kill(server, signal.SIGKILL)
    assert "server exited unexpectedly (killed by SIGKILL); restarting it in 1 s" in \
        sa.wait_for(r"server exited unexpectedly.*\n")[0].group(0)
    server2 = sa.pid_of("server", restart=1)
    assert server2 != server
    assert wait_health(port)["status"] == "ok"
    assert psutil.pid_exists(scheduler)  # the other part was left alone

    os.kill(scheduler, signal.SIGKILL)
    sa.wait_for(r"scheduler exited unexpectedly \(killed by SIGKILL\)")
    scheduler2 = sa.pid_of("scheduler", restart=1)
    wait_heartbeat(env, scheduler2)  # the lock of the killed one was released by the kernel
    assert health(port)["status"] == "ok"

    children = psutil.Process(sa.proc.pid).children(recursive=True)
    assert {server2, scheduler2} <= {c.pid for c in children}
    assert sa.stop() == 0
    assert all(gone(c.pid, c) for c in children), [c for c in children if not gone(c.pid, c)]
    assert "SIGTERM: stopping scheduler and server" in sa.err
    with pytest.raises(OSError):
        health(port)


def test_sigint_stops_it_too(env: Env, started) -> None:
    port = free_port()
    sa = started("--port", str(port))
    wait_health(port)
    children = psutil.Process(sa.proc.pid).children(recursive=True)
    sa.proc.send_signal(signal.SIGINT)
    assert sa.proc.wait(timeout=30) == 0
    assert children and all(gone(c.pid, c) for c in children)


def test_a_busy_port_is_reported_with_a_hint_and_not_restarted(env: Env, started) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        sa = started("--port", str(port))
        report = sa.wait_for(r"dagu start-all: server failed \(exit status 2\).*\n")[0].group(0)
        assert f"127.0.0.1:{port} is already in use" in report and "choose another --port" in report
        assert "not restarted" in report
        scheduler = sa.pid_of("scheduler")
        wait_heartbeat(env, scheduler)  # the scheduler runs on regardless
        time.sleep(2.5)  # longer than the first restart delay: a restart would have happened by now
        assert sa.proc.poll() is None
        assert sa.err.count("server started") == 1 and "server exited unexpectedly" not in sa.err
        assert sa.stop() == 0
        assert "stopped scheduler (exit status 0)" in sa.err


def test_a_second_start_all_on_the_same_home_reports_the_scheduler_running_elsewhere(env: Env, started) -> None:
    first = started("--port", str(free_port()), name="first")
    leader = first.pid_of("scheduler")
    wait_heartbeat(env, leader)
    port = free_port()
    second = started("--port", str(port), name="second")
    assert wait_health(port)["status"] == "ok"  # its server serves the same data dir
    second.wait_for(rf"the scheduler of this data dir already runs elsewhere \(pid {leader}\); this one waits "
                    "as a standby")
    time.sleep(2.5)  # longer than the first restart delay
    assert second.err.count("scheduler started") == 1 and "exited unexpectedly" not in second.err
    assert second.stop() == 0 and first.stop() == 0


def test_listening_beyond_this_host_without_users_is_refused_before_anything_starts(env: Env) -> None:
    res = env.run("start-all", "--host", "0.0.0.0", "--port", "0")
    assert res.returncode == 2
    assert "no user is configured" in res.stderr and "dagu user add NAME --role admin" in res.stderr
    assert "started" not in res.stderr and not (env.home / "scheduler").exists()


SUPERVISE = textwrap.dedent("""
    import sys
    from dagu.service.start_all import Backoff, Part, RestartPolicy, Supervisor
    policy = RestartPolicy(first_delay=0.05, max_delay=0.1, crash_limit=3, crash_window=60)
    parts = [Part("crasher", ["sh", "-c", "echo boom >&2; exit 7"], Backoff(policy)),
             Part("steady", ["sleep", "600"], Backoff(policy))]
    sys.exit(Supervisor(parts, {"PATH": "/usr/bin:/bin"}, sys.stdout, sys.stderr).run())
""")


def test_a_part_that_keeps_crashing_is_given_up_while_the_others_keep_running(tmp_path: Path) -> None:
    err = tmp_path / "err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-c", SUPERVISE], stderr=fh, stdout=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "giving up" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        text = err.read_text()
        assert "crasher exited unexpectedly (exit status 7), 3 times within 60 s: giving up on it" in text
        assert "its last error: boom" in text and "crasher | boom" in text
        steady = int(re.search(r"steady started, pid (\d+)", text).group(1))
        assert psutil.Process(steady).status() != psutil.STATUS_ZOMBIE
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not psutil.pid_exists(steady) or psutil.Process(steady).status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
