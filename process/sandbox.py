"""What a step may see of the host: its environment, and (in strict mode) the network and files.

Environment: a step gets an allow-list of the invoking environment, not all of it, because the
operator's shell (or a CI runner) is full of tokens that a workflow step has no business reading.
`sandbox.env_passthrough` adds names or prefixes, `sandbox.inherit_env` restores the cron-like
"everything"; DAGU_* and DAG_* are never inherited, since the supervisor sets its own and a stale
one from the invoking shell would mislead the step.

Strict mode (`sandbox.strict`): no network, a read-only root, and only the working directory and
the paths the supervisor names (a per-step TMPDIR, the log directory) writable; /tmp is part of
the read-only root rather than a blank tmpfs, because programs, virtualenvs and working
directories often live under /tmp and a blank one would hide them.  Two mechanisms, each probed
by actually running `true` once:

- bubblewrap (`bwrap`), when installed: the well-trodden tool (Flatpak uses it); ~8 ms a step.
- `unshare` from util-linux with unprivileged user namespaces: a shell script inside new user,
  mount, network, pid, ipc and uts namespaces remounts every mount read-only, binds the writable
  paths back, then runs the step inside one more user+mount namespace, which locks those mounts
  so the step (root in its namespace) cannot remount them writable; ~70 ms a step, mostly one
  `mount` process per mount point.

Everything else is read-only, HOME included: a tool that writes caches there needs HOME (or
XDG_CACHE_HOME pointed at TMPDIR) among the writable paths.  In both, the wrapper is the step's
process-group leader and the step dies with it, so a SIGTERM to the group ends a strict step at
once (no graceful-stop window), and a step killed by signal N is reported as exit status 128+N,
as a shell would.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

from dagu.spec.records import dataclass

ALLOWED_ENV: tuple[str, ...] = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_*", "TZ",
                                "TMPDIR", "TERM")
"""Names (a trailing * is a prefix) passed from the invoking environment to every step."""

RESERVED_PREFIXES: tuple[str, ...] = ("DAGU_", "DAG_")
"""Never inherited: the supervisor sets these for each step."""


def _matches(name: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("*"):
            if name.startswith(pattern[:-1]):
                return True
        elif name == pattern:
            return True
    return False


def base_environment(environ: Mapping[str, str], passthrough: Sequence[str] = (),
                     inherit_all: bool = False) -> dict[str, str]:
    """The part of the invoking environment a step starts from (before the DAG's own env)."""
    for pattern in passthrough:
        if "*" in pattern[:-1] or not pattern.strip("*"):
            raise ValueError(f"invalid env_passthrough pattern {pattern!r}: a name, or a prefix "
                             "followed by one trailing *")
    return {name: value for name, value in environ.items()
            if not name.startswith(RESERVED_PREFIXES)
            and (inherit_all or _matches(name, ALLOWED_ENV) or _matches(name, passthrough))}


# --------------------------------------------------------------------------
# Strict mode
# --------------------------------------------------------------------------

# Runs as root of fresh user/mount/net/pid namespaces; $1 working dir, $2 count N, then N
# writable paths, then the step's argv.  Writable paths are opened as fds 3.. first, because the
# read-only remount would hide the way back to them; fds 3-9 are what sh redirections can name.
_UNSHARE_SETUP = r"""
set -e
wd=$1; n=$2; shift 2
i=1
while [ "$i" -le "$n" ]; do
  eval "p=\${$i}"
  eval "exec $((i + 2))<\"\$p\""
  i=$((i + 1))
done
while read -r _id _parent _dev _root mp _rest; do
  mp=$(printf '%b' "$mp")
  case "$mp" in /proc|/proc/*) continue ;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done < /proc/self/mountinfo
if [ -w / ]; then echo "dagu sandbox: could not make / read-only" >&2; exit 125; fi
for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus; do
  if [ -e "$p" ]; then mount --bind "$p" "$p"; mount -o remount,bind,ro "$p"; fi
done
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
i=1
while [ "$i" -le "$n" ]; do
  eval "p=\${$i}"
  mkdir -p "$p"
  mount -c --bind "/proc/self/fd/$((i + 2))" "$p"
  mount -o remount,bind,rw "$p"
  eval "exec $((i + 2))<&-"
  i=$((i + 1))
done
shift "$n"
cd "$wd"
unshare --user --mount --map-root-user -- "$@"
"""
_MAX_UNSHARE_WRITABLE = 7


@dataclass(frozen=True)
class StrictSandbox:
    """A way to run a step with no network and a read-only root; see the module docstring."""

    mechanism: str  # "bwrap" | "unshare"
    executable: str = ""

    def wrap(self, argv: Sequence[str], working_dir: str, writable: Sequence[str]) -> list[str]:
        """argv wrapped to run in the sandbox, with working_dir and `writable` read-write.

        The paths must exist when the step starts.
        """
        paths = list(dict.fromkeys(os.path.abspath(p) for p in [working_dir, *writable]))
        workdir = os.path.abspath(working_dir)
        if self.mechanism == "bwrap":
            out = [self.executable or "bwrap", "--unshare-all", "--unshare-user", "--die-with-parent",
                   "--cap-drop", "ALL", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
            for path in paths:
                out += ["--bind", path, path]
            return out + ["--chdir", workdir, "--", *argv]
        if self.mechanism == "unshare":
            if len(paths) > _MAX_UNSHARE_WRITABLE:
                raise ValueError(f"the unshare sandbox takes at most {_MAX_UNSHARE_WRITABLE} "
                                 f"writable paths, got {len(paths)}")
            return [self.executable or "unshare", "--user", "--map-root-user", "--net", "--mount",
                    "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts", "--",
                    "/bin/sh", "-c", _UNSHARE_SETUP, "dagu-sandbox", workdir, str(len(paths)),
                    *paths, *argv]
        raise ValueError(f"unknown sandbox mechanism {self.mechanism!r}")


SANDBOX_MECHANISMS = ("bwrap", "unshare")


def _userns_hint() -> str:
    """Why user namespaces may be unavailable, from the sysctls that switch them off."""
    for path, off in (("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                      ("/proc/sys/user/max_user_namespaces", "0"),
                      ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1")):
        try:
            with open(path) as fh:
                if fh.read().strip() == off:
                    return f"user namespaces are disabled ({path} is {off})"
        except OSError:
            continue
    return ""


@functools.cache
def probe_sandbox(mechanism: str) -> StrictSandbox | str:
    """One mechanism, checked by running `true` in it; the sandbox, or why it is unavailable."""
    tool = {"bwrap": "bwrap", "unshare": "unshare"}.get(mechanism)
    if tool is None:
        raise ValueError(f"unknown sandbox mechanism {mechanism!r}")
    import shutil  # here only: probing is once per host
    executable = shutil.which(tool)
    if executable is None:
        return "bubblewrap is not installed" if tool == "bwrap" else "unshare (util-linux) is not installed"
    if mechanism == "unshare" and shutil.which("mount") is None:
        return "mount (util-linux) is not installed"
    sandbox = StrictSandbox(mechanism, executable)
    import subprocess  # here only: probing is once per host
    import tempfile
    with tempfile.TemporaryDirectory(prefix="dagu-sandbox-probe-") as workdir:
        try:
            proc = subprocess.run(sandbox.wrap(["true"], workdir, []), capture_output=True,
                                  text=True, timeout=20, cwd=workdir, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{tool} could not be run: {exc}"
    if proc.returncode == 0:
        return sandbox
    lines = proc.stderr.strip().splitlines()
    reason = f"{tool} failed: {lines[-1] if lines else f'exit status {proc.returncode}'}"
    hint = _userns_hint()
    return f"{reason} ({hint})" if hint else reason


@functools.cache
def probe_strict() -> StrictSandbox | str:
    """The best strict sandbox this host has, or a human reason why there is none."""
    reasons = []
    for mechanism in SANDBOX_MECHANISMS:
        found = probe_sandbox(mechanism)
        if isinstance(found, StrictSandbox):
            return found
        reasons.append(found)
    return "no strict sandbox on this host: " + "; ".join(reasons)
