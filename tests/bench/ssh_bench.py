"""Per-step overhead of an ssh step on a reused connection, beside a command step; connections
opened by 100 ssh steps to one host.

    python tests/bench/ssh_bench.py [--steps 100] [--repeat 3] [--active 4] [--json]

Starts a real sshd on 127.0.0.1 (tests/executors/server_sshd.py: needs root and openssh-server),
then times `dagu start` of a chain of N `true` steps and of a 1-step run, for `type: ssh` and for
plain command steps; (t_N - t_1) / (N - 1) is what one more step costs.  An ssh step's cost is a
channel open, an exec request and the script round trip on the connection the earlier steps left
in the pool; a command step's is a process spawn.  Then it runs N ssh steps as a fan-out
(`type: graph`) with `max_active_steps: A` and counts the connections sshd accepted (its
`Accepted ...` log lines): at most A, since a step leases a pooled connection for itself.
It is a script, not a test: it reports and never asserts on times (machines are noisy), but it
exits non-zero when the connection count exceeds A.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.executors.server_sshd import USER, Sshd, start_sshd  # noqa: E402


def write(path: Path, n: int, ssh: dict | None, graph: bool = False, active: int | None = None) -> None:
    lines = ["type: graph" if graph else "type: chain"]
    if active:
        lines.append(f"max_active_steps: {active}")
    if ssh:
        lines.append(f"ssh: {json.dumps(ssh)}")
    lines.append("steps:")
    for i in range(n):
        lines.append(f"  - id: s{i}")
        if ssh:
            lines.append("    type: ssh")
        lines.append('    command: "true"')
    path.write_text("\n".join(lines) + "\n")


def timed(path: Path, work: Path) -> float:
    home = tempfile.mkdtemp(dir=work)
    env = {**os.environ, "DAGU_HOME": home}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dagu", "start", "-q", str(path)], env=env, cwd=work,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"dagu start {path.name} failed: {(done.stdout + done.stderr)[-800:]}")
    return took


def per_step(work: Path, name: str, n: int, ssh: dict | None, repeat: int) -> float:
    one, many = work / f"{name}1.yaml", work / f"{name}{n}.yaml"
    write(one, 1, ssh)
    write(many, n, ssh)
    t1 = min(timed(one, work) for _ in range(repeat))
    tn = min(timed(many, work) for _ in range(repeat))
    return (tn - t1) / (n - 1)


def connections(work: Path, sshd: Sshd, ssh: dict, n: int, active: int) -> int:
    path = work / f"fanout{n}.yaml"
    write(path, n, ssh, graph=True, active=active)
    before = sshd.accepted()
    timed(path, work)
    time.sleep(0.2)  # sshd writes its log line as it accepts
    return sshd.accepted() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--active", type=int, default=4, help="max_active_steps of the fan-out")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gen = start_sshd()
    try:
        sshd = next(gen)
    except BaseException as exc:  # pytest.skip outside pytest: say why and stop
        print(f"cannot start sshd: {exc}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            known = sshd.known_hosts(work / "known_hosts")
            ssh = {"host": "127.0.0.1", "port": sshd.port, "user": USER, "key": str(sshd.client_key),
                   "known_host_file": str(known)}
            command_ms = per_step(work, "cmd", args.steps, None, args.repeat) * 1000
            ssh_ms = per_step(work, "ssh", args.steps, ssh, args.repeat) * 1000
            opened = connections(work, sshd, ssh, args.steps, args.active)
    finally:
        gen.close()
    result = {"steps": args.steps, "command_step_ms": round(command_ms, 2), "ssh_step_ms": round(ssh_ms, 2),
              "ssh_minus_command_ms": round(ssh_ms - command_ms, 2), "max_active_steps": args.active,
              "connections_for_fanout": opened}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"per-step overhead, chain of {args.steps} (best of {args.repeat}):")
        print(f"  command step (`true`, a process)          {command_ms:8.2f} ms")
        print(f"  ssh step (`true`, pooled connection)      {ssh_ms:8.2f} ms")
        print(f"{args.steps} ssh steps as a fan-out, max_active_steps {args.active}: "
              f"{opened} SSH connection(s) opened")
    return 0 if opened <= args.active else 1


if __name__ == "__main__":
    sys.exit(main())
