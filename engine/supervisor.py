"""The supervisor: run one DAG of a plan, step by step, as sandboxed and accounted subprocesses.

One thread drives everything.  It starts each step's process in its own
session, writes the process's stdout and stderr straight to log files (no
pipes: a grandchild that keeps a descriptor open cannot make us wait), and
blocks on pidfds of its children plus a wake-up pipe (signals, the sampler's
over-limit calls) with a timeout for the next deadline (step or DAG timeout,
SIGKILL after a stop's grace period, a retry's or repetition's interval).

Every state change goes to the hooks (the journal first), which are flushed
once per turn of the loop, right before it blocks: the journal is always at
most one turn behind, and a 1,000-step chain costs one fsync per step, not a
rewrite of a growing status file.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import selectors
import signal
import subprocess
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping

from dagu.executors import ExecutorError, job_for
from dagu.executors.base import Job, JobContext, Launch
from dagu.process import accounting
from dagu.engine import conditions
from dagu.process import limits as limits_mod
from dagu.process import sandbox
from dagu.engine.run_context import RunContext
from dagu.engine.evaluate import EvalError, Scope, StepFacts, render, resolve_path
from dagu.engine.hooks import Hooks
from dagu.store.state import (ABORTED, FAILED, MISSED, NOT_STARTED, PARTIAL, RUNNING, SKIPPED, SUCCEEDED, WAITING,
                                RunStatus, apply)
from dagu.store.runs import Journal, hostname
from dagu.spec.plan import Step

HANDLER_ORDER = ("init", "success", "failure", "abort", "exit")
HANDLER_NAMES = {"init": "onInit", "success": "onSuccess", "failure": "onFailure", "abort": "onAbort",
                 "exit": "onExit", "wait": "onWait"}
DEFAULT_GRACE_SEC = 5.0
SNAPSHOT_EVERY_SEC = 2.0
SNAPSHOT_MAX_SHARE = 0.02  # while running, snapshots take at most this share of the supervisor's time


class JournalHook:
    """The essential subscriber: events into the run's journal, folded into the live status."""

    def __init__(self, journal: Journal, status: RunStatus) -> None:
        self.journal = journal
        self.status = status

    def event(self, event: dict[str, Any]) -> None:
        apply(self.status, self.journal.add(event))

    def flush(self) -> None:
        self.journal.flush()


@dataclass
class Node:
    """One step (or handler) as the loop tracks it."""

    step: Step
    handler: str | None = None
    status: str = NOT_STARTED
    attempt: int = 0  # the number of the current/last attempt
    tries: int = 0  # runs in the current retry sequence
    repeats: int = 0  # runs in the current repeat sequence
    job: Job | None = None
    procs: set[int] = field(default_factory=set)
    deadline: float | None = None
    killed_by: str | None = None  # "timeout", "stop", "memory"
    started_wall: float = 0.0
    started_mono: float = 0.0
    user: float = 0.0
    sys: float = 0.0
    peak: int = 0
    read: int = 0
    write: int = 0
    samples: int = 0
    last_code: int | None = None
    tolerated: bool = False
    done: bool = False
    waiting: int = 0  # dependencies not yet done
    stdout: str | None = None
    stderr: str | None = None
    cgroup_oom: bool = False
    limits: Any = None
    spawn_error: str | None = None
    approved: bool = False

    @property
    def key(self) -> str:
        return f"handler:{self.handler}" if self.handler else self.step.id


@dataclass
class Proc:
    popen: subprocess.Popen
    pidfd: int | None
    node: Node
    launch: Launch
    kill_at: float | None = None  # when to escalate to SIGKILL


def signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class Supervisor:
    def __init__(self, ctx: RunContext, status: RunStatus, journal: Journal) -> None:
        self.ctx = ctx
        self.dag = ctx.dag
        self.status = status
        self.hooks = Hooks(JournalHook(journal, status))
        self.nodes: dict[str, Node] = {s.id: Node(s) for s in ctx.dag.steps}
        self.dependents: dict[str, list[str]] = {sid: [] for sid in self.nodes}
        for s in ctx.dag.steps:
            for d in s.depends:
                self.dependents[d].append(s.id)
        self.routers = {s.id: s for s in ctx.dag.steps if s.routes}
        self.route_choice: dict[str, set[str]] = {}
        self.facts: dict[str, StepFacts] = {}
        self.output_order: list[tuple[str, str, str]] = []  # (step, name, value) in finish order
        self._ancestors: dict[str, frozenset[str]] = {}
        self.ready: deque[Node] = deque()
        self.procs: dict[int, Proc] = {}
        self.timed: dict[int, Proc] = {}  # processes with a timeout or a pending SIGKILL
        self.polled: set[int] = set()  # processes without a pidfd (old kernels): polled
        self.active: set[str] = set()  # keys of nodes with processes running
        # preconditions that run commands are checked on threads, so a slow one does not stall
        # the bookkeeping of running steps: node -> (scope, cwd), results back through `checked`
        self.checking: dict[str, tuple[Node, Scope, str]] = {}
        self.checked: "queue.SimpleQueue[tuple[str, str | None, BaseException | None]]" = queue.SimpleQueue()
        self.checker: ThreadPoolExecutor | None = None
        self.timers: list[tuple[float, Node]] = []
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.stop_reason: str | None = None  # "signal" | "timeout" | "stop"
        self.stop_signals = 0
        self.run_deadline = time.monotonic() + ctx.dag.timeout_sec if ctx.dag.timeout_sec else None
        self.grace = float(ctx.dag.settings.get("max_clean_up_time_sec", DEFAULT_GRACE_SEC) or DEFAULT_GRACE_SEC)
        self.max_active = ctx.dag.max_active_steps or 0
        self.sampler = accounting.Sampler()
        self.memory = limits_mod.MemoryGuard()
        self.over_limit: set[int] = set()
        self.strict: Any = None
        self.error: str | None = None
        self._last_snapshot = 0.0
        self._snapshot_cost = 0.0

    # ------------------------------------------------------------------ events

    def emit(self, ev: str, **fields: Any) -> None:
        self.hooks.event({"ev": ev, "at": time.time(), **fields})

    def flush(self, force: bool = False) -> None:
        self.hooks.flush()
        now = time.monotonic()
        # Readers fold the journal over the snapshot, so a snapshot only saves them work:
        # space them out by their own cost so a 10,000-step run does not spend its time on them.
        gap = max(SNAPSHOT_EVERY_SEC, self._snapshot_cost / SNAPSHOT_MAX_SHARE)
        if force or now - self._last_snapshot >= gap:
            self.ctx.run.write_snapshot(self.status)
            self._last_snapshot = time.monotonic()
            self._snapshot_cost = self._last_snapshot - now

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_signals += 1
        try:
            os.write(self.wake_w, b"s")
        except OSError:
            pass

    def _install_signals(self) -> dict[int, Any]:
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (tests): no signal handling
                break
        return old

    # ------------------------------------------------------------------ run

    def kill_everything(self) -> None:
        """Last resort (the disk is full, the journal cannot be written): no step outlives us."""
        for proc in list(self.procs.values()):
            self._kill(proc, signal.SIGKILL)

    def run(self) -> RunStatus:
        old = self._install_signals()
        try:
            return self._run()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            if self.checker is not None:
                self.checker.shutdown(wait=False, cancel_futures=True)
            self.sampler.close()
            self.selector.close()
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _run(self) -> RunStatus:
        ctx = self.ctx
        retry = ctx.retry_of is not None
        self.emit("run_started", pid=os.getpid(), host=hostname(), parent=ctx.parent,
                  params=[f"{k}={v}" for k, v in ctx.params], retry=retry and not ctx.resume,
                  resume=ctx.resume,
                  steps=[[s.id, s.name] for s in self.dag.steps])
        if retry:
            self._restore(ctx.retry_of, ctx.resume)
        self.flush(force=True)
        final: str
        if ctx.missed:  # the scheduler missed ticks: say so where runs are read, and notify
            self.error = ctx.missed
            return self._finish(MISSED, handlers=("failure", "exit"))
        if not retry and self.dag.preconditions:
            unmet = conditions.unmet(self.dag.preconditions, self._scope(None), ctx.cwd, self._env(None))
            if unmet:
                for node in self.nodes.values():
                    self.emit("step_skipped", step=node.step.id, reason="DAG precondition not met")
                self.error = f"DAG precondition not met: {unmet}"
                return self._finish(ABORTED, handlers=("exit",))
        init = self.dag.handlers.get("init")
        if init is not None and not ctx.resume:
            node = self._handler_node("init")
            self._loop_with([node])
            if node.status != SUCCEEDED:
                self.error = "the init handler failed; no step ran"
                for n in self.nodes.values():
                    if not n.done:
                        self.emit("step_finished", step=n.step.id, status=NOT_STARTED, reason="init handler failed")
                final = ABORTED if self.stop_reason == "signal" else FAILED
                return self._finish(final)
        self._seed()
        self._loop()
        final = self._final_status()
        return self._finish(final)

    def _finish(self, final: str, handlers: tuple[str, ...] | None = None) -> RunStatus:
        if handlers is None:
            handlers = {SUCCEEDED: ("success", "exit"), PARTIAL: ("success", "exit"), FAILED: ("failure", "exit"),
                        ABORTED: ("abort", "exit"), WAITING: ("wait",)}[final]
        self.status.status = final  # handlers see DAG_RUN_STATUS
        for h in handlers:
            if h not in self.dag.handlers:
                continue
            if self.stop_signals > 1:
                break
            node = self._handler_node(h)
            self._loop_with([node])
            if h == "success" and node.status != SUCCEEDED:
                final = FAILED
                self.error = "the success handler failed"
                self.status.status = final
        for step_id, name, value in self.output_order:
            self.emit("output", step=step_id, name=name, value=value)
        self.emit("run_finished", status=final, error=self.error)
        self.flush(force=True)
        return self.status

    def _final_status(self) -> str:
        if self.stop_reason == "signal":
            return ABORTED
        if self.stop_reason == "timeout":
            self.error = f"the DAG ran over its timeout_sec of {self.dag.timeout_sec:g} s"
            return FAILED
        statuses = [n for n in self.nodes.values()]
        if any(n.status in (FAILED, ABORTED) and not n.tolerated for n in statuses):
            return FAILED
        if any(n.status == WAITING for n in statuses):
            waiting = [n.step.id for n in statuses if n.status == WAITING]
            self.error = (f"waiting for approval of step(s) {', '.join(waiting)}: "
                          f"dagu approve {self.ctx.run_id} STEP, or dagu reject {self.ctx.run_id} STEP")
            return WAITING
        if any(n.status == FAILED and n.tolerated for n in statuses):
            return PARTIAL
        return SUCCEEDED

    def _handler_node(self, name: str) -> Node:
        return Node(self.dag.handlers[name], handler=name)

    def _restore(self, previous: RunStatus, resume: bool = False) -> None:
        """`dagu retry`: keep succeeded steps (and their outputs), put the rest back in line.

        A resume after an approval decision keeps failed steps too (and whether continue_on
        tolerated them): it only runs what has not run yet.
        """
        keep = (SUCCEEDED, SKIPPED, FAILED, ABORTED) if resume else (SUCCEEDED, SKIPPED)
        for sid, node in self.nodes.items():
            old = previous.steps.get(sid)
            if old is not None and old.status in keep and sid in previous.steps:
                node.status = old.status
                node.tolerated = old.tolerated
                node.done = True
                if old.approval and old.approval.get("decision") == "approved":
                    node.approved = True
                    for name, value in (old.approval.get("inputs") or {}).items():
                        self.output_order.append((sid, name, str(value)))
                node.attempt = len(old.attempts)
                last = old.last
                self.facts[sid] = StepFacts(output=old.output, outputs=old.outputs,
                                            stdout=last.stdout if last else None,
                                            stderr=last.stderr if last else None,
                                            exit_code=last.exit_code if last else None)
                if old.output is not None and old.output_name:
                    self.output_order.append((sid, old.output_name, old.output))
                if node.step.routes and old.outputs is not None:
                    self.route_choice[sid] = set(old.outputs.get("selected", []))
            else:
                node.attempt = len(old.attempts) if old else 0
                self.emit("step_reset", step=sid)

    def _seed(self) -> None:
        for sid in self.dag.order:
            node = self.nodes[sid]
            if node.done:
                continue
            node.waiting = sum(1 for d in node.step.depends if not self.nodes[d].done)
        for sid in self.dag.order:
            node = self.nodes[sid]
            if not node.done and node.waiting == 0:
                self._make_ready(node)

    # ------------------------------------------------------------------ the loop

    def _loop_with(self, nodes: list[Node]) -> None:
        for node in nodes:
            self._make_ready(node)
        self._loop()

    def _loop(self) -> None:
        while True:
            self._start_ready()
            self.flush()
            if not self.procs and not self.timers and not self.ready \
                    and (not self.checking or self.stop_reason is not None):
                return
            timeout = self._next_deadline()
            events = self.selector.select(timeout)
            for key, _mask in events:
                if key.data is None:
                    self._drain_wake()
                    self._take_checked()
                else:
                    self._reap(key.data)
            self._poll_without_pidfd()
            self._check_time()

    def _next_deadline(self) -> float | None:
        # Only processes with a deadline are looked at (`timed`): a 1,000-step fan-out must not
        # cost a scan of every process per turn of the loop.
        now = time.monotonic()
        candidates = [t for t, _ in self.timers]
        candidates += [p.kill_at for p in self.timed.values() if p.kill_at is not None]
        candidates += [p.node.deadline for p in self.timed.values() if p.node.deadline is not None]
        if self.run_deadline is not None and self.stop_reason is None:
            candidates.append(self.run_deadline)
        if self.polled:
            candidates.append(now + 0.01)
        if not candidates:
            return None
        return max(0.0, min(candidates) - now)

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass
        if self.stop_signals and self.stop_reason != "signal":
            self._stop("signal")
        elif self.stop_signals > 1:  # a second signal: no more grace
            for proc in list(self.procs.values()):
                self._kill(proc, signal.SIGKILL)
        for pid in list(self.over_limit):
            self.over_limit.discard(pid)
            proc = self.procs.get(pid)
            if proc is not None:
                proc.node.killed_by = "memory"
                self._kill(proc, signal.SIGKILL)

    def _check_time(self) -> None:
        now = time.monotonic()
        if self.run_deadline is not None and now >= self.run_deadline and self.stop_reason is None:
            self._stop("timeout")
        for proc in list(self.timed.values()):
            node = proc.node
            if node.deadline is not None and now >= node.deadline and node.killed_by is None:
                node.killed_by = "timeout"
                self._signal_node(node, self._stop_signal(node))
            if proc.kill_at is not None and now >= proc.kill_at:
                proc.kill_at = None
                self._kill(proc, signal.SIGKILL)
        due = [t for t in self.timers if t[0] <= now]
        if due:
            self.timers = [t for t in self.timers if t[0] > now]
            for _t, node in due:
                if self.stop_reason is None:
                    self._launch(node)
                else:
                    self._conclude(node, ABORTED, reason="the run was stopped before this step could run again")

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.ready.clear()
        for _t, node in self.timers:
            self._conclude(node, ABORTED, reason="the run was stopped before this step could run again")
        self.timers.clear()
        for node in {p.node.key: p.node for p in self.procs.values()}.values():
            if node.killed_by is None:
                node.killed_by = "stop" if reason == "signal" else "dag-timeout"
            self._signal_node(node, self._stop_signal(node))

    def _stop_signal(self, node: Node) -> int:
        name = node.step.signal_on_stop or "SIGTERM"
        try:
            return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        except KeyError:
            return signal.SIGTERM

    def _signal_node(self, node: Node, sig: int) -> None:
        for pid in list(node.procs):
            proc = self.procs.get(pid)
            if proc is not None:
                self._kill(proc, sig)
                if sig != signal.SIGKILL and proc.kill_at is None:
                    proc.kill_at = time.monotonic() + self.grace
                    self.timed[proc.popen.pid] = proc

    def _kill(self, proc: Proc, sig: int) -> None:
        try:
            os.killpg(proc.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(proc.popen.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    # ------------------------------------------------------------------ readiness

    def _make_ready(self, node: Node) -> None:
        if node.handler is None:
            verdict = self._verdict(node)
            if verdict is not None:
                status, reason = verdict
                self._conclude(node, status, reason=reason, event="step_skipped" if status == SKIPPED else None)
                return
        self.ready.append(node)

    def _verdict(self, node: Node) -> tuple[str, str] | None:
        """Whether a step whose dependencies are done must not run, and why."""
        skipped_by = None
        for d in node.step.depends:
            dep = self.nodes[d]
            if dep.status in (FAILED, ABORTED) and not dep.tolerated:
                return NOT_STARTED, f"not run: step {d!r} {dep.status}"
            if dep.status == NOT_STARTED:
                return NOT_STARTED, f"not run: step {d!r} did not run"
            if dep.status == SKIPPED and not dep.step.continue_on.skipped and not dep.tolerated:
                skipped_by = skipped_by or f"skipped because step {d!r} was skipped"
        if skipped_by:
            return SKIPPED, skipped_by
        for d in node.step.depends:
            if d in self.routers and node.step.id in self._route_targets(d) \
                    and node.step.id not in self.route_choice.get(d, set()):
                # upstream: what depends on a target the router did not choose still runs
                node.tolerated = True
                return SKIPPED, f"skipped: router {d!r} did not choose this step"
        return None

    def _route_targets(self, router: str) -> set[str]:
        return {t for r in self.routers[router].routes for t in r.targets}

    def _start_ready(self) -> None:
        while self.ready:
            if self.stop_reason is not None and self.ready[0].handler is None:
                self.ready.clear()
                return
            if self.max_active and self._running_count() >= self.max_active and self.ready[0].handler is None:
                return
            node = self.ready.popleft()
            self._begin(node)

    def _running_count(self) -> int:
        return sum(1 for key in self.active if not key.startswith("handler:"))

    # ------------------------------------------------------------------ scopes

    def _ancestors_of(self, sid: str) -> frozenset[str]:
        found = self._ancestors.get(sid)
        if found is None:
            seen: set[str] = set()
            stack = list(self.nodes[sid].step.depends)
            while stack:
                d = stack.pop()
                if d not in seen:
                    seen.add(d)
                    stack.extend(self.nodes[d].step.depends)
            found = self._ancestors[sid] = frozenset(seen)
        return found

    def _visible_outputs(self, node: Node | None) -> list[tuple[str, str]]:
        """Outputs a step may read: its ancestors' (handlers see all), oldest first."""
        if not self.output_order:
            return []
        if node is None or node.handler is not None:
            return [(n, v) for _s, n, v in self.output_order]
        ancestors = self._ancestors_of(node.step.id)
        return [(n, v) for s, n, v in self.output_order if s in ancestors]

    def _scope(self, node: Node | None, extra: dict[str, str] | None = None) -> Scope:
        ctx = self.ctx
        variables = dict(ctx.run_vars)
        for name, value in self._visible_outputs(node):
            variables[name] = value
        variables.update(self._specials(node))
        if extra:
            variables.update(extra)
        env = self._env_from(variables)
        return Scope(vars=variables, env=env, cwd=ctx.cwd, steps=self.facts)

    def _specials(self, node: Node | None) -> dict[str, str]:
        out = {"DAG_NAME": self.dag.name, "DAG_RUN_ID": self.ctx.run_id,
               "DAG_RUN_LOG_FILE": "", "DAGU_HOME": self.ctx.home}
        if node is not None:
            out["DAG_RUN_STEP_NAME"] = HANDLER_NAMES.get(node.handler, node.handler) if node.handler else node.step.name
            if node.stdout:
                out["DAG_RUN_LOG_FILE"] = node.stdout
                out["DAG_RUN_STEP_STDOUT_FILE"] = node.stdout
                out["DAG_RUN_STEP_STDERR_FILE"] = node.stderr or ""
            if node.handler:
                out["DAG_RUN_STATUS"] = self.status.status
            else:
                out.update(self._pushback_vars(node.step.id))
        return out

    def _pushback_vars(self, sid: str) -> dict[str, str]:
        """What a step run again by an approval push-back is told (upstream's names): the
        iteration, the approver's feedback (also one variable per input) and its last stdout."""
        previous = self.ctx.retry_of
        pushback = previous.pushback if previous is not None else None
        if not pushback or sid not in pushback.get("reset", ()):
            return {}
        out = {k: str(v) for k, v in (pushback.get("inputs") or {}).items()}
        out["DAG_PUSHBACK_ITERATION"] = str(pushback["iteration"])
        out["DAG_PUSHBACK"] = json.dumps({k: pushback.get(k) for k in
                                          ("iteration", "by", "at", "inputs", "history")})
        old = previous.steps.get(sid)
        if old is not None and old.last is not None and old.last.stdout:
            out["DAG_PUSHBACK_PREVIOUS_STDOUT_FILE"] = old.last.stdout
        return out

    def _env_from(self, variables: Mapping[str, str]) -> dict[str, str]:
        env = dict(self.ctx.base_env)
        for k, v in variables.items():
            if not k.isdigit():
                env[k] = v
        return env

    def _env(self, node: Node | None) -> dict[str, str]:
        return self._scope(node).env

    # ------------------------------------------------------------------ starting a step

    def _begin(self, node: Node) -> None:
        """A step's first run in this run: preconditions, then launch.

        The scope is built here only when a precondition or an inline step needs it; a plain
        step goes straight to `_launch`, which builds its own (once per step on the hot path).
        """
        step = node.step
        node.tries = 0
        node.repeats = 0
        inline = bool(step.routes) or step.type in ("router", "noop")
        if not step.preconditions and not inline:
            self._launch(node)
            return
        scope = self._scope(node)
        try:
            cwd = self._cwd(step, scope)
            if step.preconditions and conditions.runs_commands(step.preconditions):
                self._check_on_thread(node, scope, cwd)
                return
            unmet = conditions.unmet(step.preconditions, Scope(scope.vars, scope.env, cwd, scope.steps), cwd,
                                scope.env) if step.preconditions else None
        except (EvalError, OSError) as exc:
            self._fail_without_process(node, self._located(node, str(exc)))
            return
        self._after_check(node, scope, unmet)

    def _after_check(self, node: Node, scope: Scope, unmet: str | None) -> None:
        if unmet:
            self._conclude(node, SKIPPED, reason=f"precondition not met: {unmet}", event="step_skipped")
        elif node.step.routes or node.step.type in ("router", "noop"):
            self._inline(node, scope)
        else:
            self._launch(node)

    def _check_on_thread(self, node: Node, scope: Scope, cwd: str) -> None:
        """Evaluate the step's preconditions on a worker thread; `_take_checked` goes on."""
        if self.checker is None:
            self.checker = ThreadPoolExecutor(max_workers=4, thread_name_prefix="precondition")
        key = node.key
        self.checking[key] = (node, scope, cwd)
        self.active.add(key)  # a step being checked counts against max_active_steps
        checks, env = node.step.preconditions, scope.env
        check_scope = Scope(scope.vars, scope.env, cwd, scope.steps)

        def work() -> None:
            try:
                self.checked.put((key, conditions.unmet(checks, check_scope, cwd, env), None))
            except BaseException as exc:  # handed to the loop, which reports it on the step
                self.checked.put((key, None, exc))
            try:
                os.write(self.wake_w, b"c")
            except OSError:
                pass

        self.checker.submit(work)

    def _take_checked(self) -> None:
        while True:
            try:
                key, unmet, exc = self.checked.get_nowait()
            except queue.Empty:
                return
            node, scope, _cwd = self.checking.pop(key)
            self.active.discard(key)
            if self.stop_reason is not None:
                continue  # stopping: the step does not start, as a step still in line would not
            if exc is not None:
                self._fail_without_process(node, self._located(node, str(exc)))
            else:
                self._after_check(node, scope, unmet)

    def _located(self, node: Node, message: str) -> str:
        """A configuration error of a step, prefixed with where the step is written (file:line:col)."""
        where = self.dag.source_map.get(f"handler_on.{node.handler}" if node.handler else node.step.id)
        return f"{where}: {message}" if where else message

    def _cwd(self, step: Step, scope: Scope) -> str:
        cwd = self.ctx.cwd
        # the compiler copies the DAG's working_dir into steps as their default; that one is ctx.cwd already
        if step.working_dir is not None and step.working_dir != self.dag.working_dir:
            cwd = resolve_path(cwd, render(step.working_dir, scope, False))
        if not os.path.isdir(cwd):
            raise EvalError(f"working directory {cwd} does not exist (create it, or fix working_dir)")
        return cwd

    def _fail_without_process(self, node: Node, error: str) -> None:
        node.attempt += 1
        self.emit("step_started", step=node.step.id, name=node.step.name, handler=node.handler,
                  attempt=node.attempt)
        self._conclude(node, FAILED, reason=error, error=error)

    def _inline(self, node: Node, scope: Scope) -> None:
        """Router and noop steps: decided here, no process.  A router still writes what it
        decided to its stdout log (upstream's text), so `dagu logs --step` shows why."""
        node.attempt += 1
        stdout = self.ctx.run.step_log(node.step.id, node.attempt, "out") if node.step.routes else None
        self.emit("step_started", step=node.step.id, name=node.step.name, handler=node.handler,
                  attempt=node.attempt, **({"stdout": stdout} if stdout else {}))
        outputs = None
        if node.step.routes:
            decision = conditions.route(node.step, scope)
            self.route_choice[node.step.id] = decision.chosen
            outputs = decision.outputs
            try:
                with open(stdout, "w", encoding="utf-8") as fh:
                    fh.write(decision.log)
            except OSError:
                pass  # the decision is in the journal too; a log that cannot be written loses nothing
            if decision.error:
                self.facts[node.step.id] = StepFacts(exit_code=1, outputs=outputs, stdout=stdout)
                self._conclude(node, FAILED, exit_code=1, reason=decision.error, error=decision.error,
                               extra={"outputs": outputs})
                return
        self.facts[node.step.id] = StepFacts(exit_code=0, outputs=outputs, stdout=stdout)
        self._conclude(node, SUCCEEDED, exit_code=0, extra={"outputs": outputs} if outputs else None)

    def _launch(self, node: Node) -> None:
        """Start one attempt of a step: build its job and start its first processes."""
        step = node.step
        node.attempt += 1
        node.killed_by = None
        node.spawn_error = None
        node.user = node.sys = 0.0
        node.peak = node.read = node.write = node.samples = 0
        run = self.ctx.run
        is_handler = node.handler is not None
        node.stdout = run.step_log(step.id, node.attempt, "out", is_handler)
        node.stderr = run.step_log(step.id, node.attempt, "err", is_handler)
        node.started_wall = time.time()
        node.started_mono = time.monotonic()
        try:
            scope = self._scope(node)
            box = step.options.get("sandbox") or {}
            if box.get("env_passthrough") or box.get("inherit_env"):  # the step lets more of the host in
                extra = sandbox.base_environment(self.ctx.environ, box.get("env_passthrough", ()),
                                                 bool(box.get("inherit_env")))
                for name, value in extra.items():
                    scope.env.setdefault(name, value)
            for entry in step.env:
                scope.vars[entry.name] = render(entry.value, scope, False)
                scope.env[entry.name] = scope.vars[entry.name]
            cwd = self._cwd(step, scope)
            scope.cwd = cwd
            if step.stdout is not None:
                node.stdout = resolve_path(cwd, render(step.stdout, scope, False))
            if step.stderr is not None:
                node.stderr = resolve_path(cwd, render(step.stderr, scope, False))
            node.limits = limits_mod.limits_from(self.dag.settings, step.options)
            job_ctx = JobContext(plan=self.ctx.plan, plan_path=self.ctx.plan_path, dag=self.dag, step=step,
                                 scope=scope, env=scope.env, cwd=cwd, stdout=node.stdout, stderr=node.stderr,
                                 attempt=node.attempt, run_id=self.ctx.run_id, home=self.ctx.home,
                                 scratch=run.logs, self_argv=self.ctx.self_argv, parent_env=self.ctx.environ)
            node.job = job_for(job_ctx)
        except (EvalError, ExecutorError, ValueError, OSError) as exc:
            self.emit("step_started", step=step.id, name=step.name, handler=node.handler, attempt=node.attempt,
                      stdout=node.stdout, stderr=node.stderr)
            message = self._located(node, str(exc))
            self._conclude(node, FAILED, reason=message, error=message)
            return
        timeout = step.timeout_sec
        node.deadline = node.started_mono + timeout if timeout else None
        self._spawn_from(node)
        # recorded after the spawn so the journal names the process group (a retry after a
        # supervisor crash kills what is left of it); the same flush makes both durable
        self.emit("step_started", step=step.id, name=step.name, handler=node.handler, attempt=node.attempt,
                  stdout=node.stdout, stderr=node.stderr, pid=min(node.procs) if node.procs else None)
        if not node.procs and node.job.done():
            self._attempt_ended(node)

    def _spawn_from(self, node: Node) -> None:
        assert node.job is not None
        for launch in node.job.launches():
            try:
                self._spawn(node, launch)
            except (OSError, limits_mod.LimitError) as exc:
                node.job.exited(launch, 127)
                node.spawn_error = str(exc) if isinstance(exc, limits_mod.LimitError) else \
                    f"cannot start {launch.argv[0]!r}: {exc.strerror or exc}"
                self._note_spawn_error(node, launch, node.spawn_error)

    def _note_spawn_error(self, node: Node, launch: Launch, message: str) -> None:
        try:
            with open(launch.stderr, "a", encoding="utf-8") as fh:
                fh.write(f"dagu: {message}\n")
        except OSError:
            pass

    def _spawn(self, node: Node, launch: Launch) -> None:
        for path in (launch.stdout, launch.stderr):
            parent = os.path.dirname(path)
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, exist_ok=True)
        argv = launch.argv
        limits = node.limits if launch.sandboxed else None
        preexec = limits_mod.preexec_for(limits) if limits is not None else None
        env = launch.env
        if launch.sandboxed and self._strict_wanted(node):
            scratch = os.path.join(self.ctx.run.path, "tmp", f"{node.key.replace(':', '.')}.{node.attempt}")
            os.makedirs(scratch, exist_ok=True)
            env = {**env, "TMPDIR": scratch}  # the root, /tmp included, is read-only in the sandbox
            argv = self.strict.wrap(argv, launch.cwd, [self.ctx.run.logs, os.path.dirname(launch.stdout), scratch])
        same = launch.stdout == launch.stderr
        out = os.open(launch.stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            err = out if same else os.open(launch.stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                           0o644)
            try:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=launch.cwd,
                                         env=env, start_new_session=True, close_fds=True,
                                         preexec_fn=preexec)
            finally:
                if err != out:
                    os.close(err)
        finally:
            os.close(out)
        pid = popen.pid
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        proc = Proc(popen, pidfd, node, launch)
        self.procs[pid] = proc
        node.procs.add(pid)
        self.active.add(node.key)
        if node.deadline is not None:
            self.timed[pid] = proc
        if pidfd is not None:
            self.selector.register(pidfd, selectors.EVENT_READ, pid)
        else:
            self.polled.add(pid)
        if limits is not None and limits.memory_bytes:
            if self.memory.mechanism == "sampler":
                self.sampler.watch(pid, limits.memory_bytes, self._over_limit)
            else:
                try:
                    self.memory.start(f"{self.ctx.run_id}.{node.key}.{node.attempt}.{pid}", limits.memory_bytes, pid)
                except limits_mod.LimitError as exc:
                    node.spawn_error = str(exc)  # never let a step run without the limit it asked for
                    self._kill(proc, signal.SIGKILL)
                self.sampler.watch(pid)
        else:
            self.sampler.watch(pid)

    def _strict_wanted(self, node: Node) -> bool:
        wanted = bool({**self.dag.settings.get("sandbox", {}), **node.step.options.get("sandbox", {})}.get("strict"))
        if wanted and self.strict is None:
            found = sandbox.probe_strict()
            if isinstance(found, str):
                raise OSError(f"strict sandbox requested but not available on this host: {found}")
            self.strict = found
        return wanted

    @staticmethod
    def _own_peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _over_limit(self, pid: int, rss: int) -> None:  # sampler thread
        self.over_limit.add(pid)
        try:
            os.write(self.wake_w, b"m")
        except OSError:
            pass

    # ------------------------------------------------------------------ processes ending

    def _poll_without_pidfd(self) -> None:
        for pid in list(self.polled):
            self._reap(pid, block=False)

    def _reap(self, pid: int, block: bool = True) -> None:
        proc = self.procs.get(pid)
        if proc is None:
            return
        try:
            got, status, rusage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            got, status, rusage = pid, 255 << 8, None
        if got == 0:
            return
        proc.popen.returncode = os.waitstatus_to_exitcode(status)
        del self.procs[pid]
        self.timed.pop(pid, None)
        self.polled.discard(pid)
        if proc.pidfd is not None:
            self.selector.unregister(proc.pidfd)
            os.close(proc.pidfd)
        node = proc.node
        node.procs.discard(pid)
        if not node.procs:
            self.active.discard(node.key)
        stats = self.sampler.unwatch(pid)
        if proc.launch.sandboxed and node.limits is not None and node.limits.memory_bytes \
                and self.memory.mechanism != "sampler":
            node.cgroup_oom = self.memory.finish(f"{self.ctx.run_id}.{node.key}.{node.attempt}.{pid}") or node.cgroup_oom
        usage = accounting.usage_from(0.0, 0.0, rusage, stats)
        if rusage is not None and rusage.ru_maxrss * 1024 <= self._own_peak():
            # A child forked from us starts with our pages mapped, and the kernel keeps that
            # high-water mark across exec: a maxrss no bigger than ours may be our own, so only
            # the sampler's figure (taken after exec) is trusted for it.
            usage.peak_rss_bytes = stats.peak_rss_bytes
        node.user += usage.user_sec
        node.sys += usage.sys_sec
        node.peak = max(node.peak, usage.peak_rss_bytes)
        node.read += usage.read_bytes
        node.write += usage.write_bytes
        node.samples += usage.samples
        node.last_code = proc.popen.returncode
        assert node.job is not None
        node.job.exited(proc.launch, proc.popen.returncode)
        if self.stop_reason is None and node.killed_by is None:
            self._spawn_from(node)
        if not node.procs:
            self._attempt_ended(node)

    def _attempt_ended(self, node: Node) -> None:
        """The attempt's processes are all gone: decide what the step is now."""
        step = node.step
        assert node.job is not None
        result = node.job.result()
        code = result.exit_code
        wall = time.monotonic() - node.started_mono
        usage = {"wall_sec": round(wall, 6), "user_sec": round(node.user, 6), "sys_sec": round(node.sys, 6),
                 "peak_rss_bytes": node.peak, "read_bytes": node.read, "write_bytes": node.write,
                 "samples": node.samples}
        if node.limits is not None and node.limits.memory_bytes:
            usage["memory_limit_by"] = self.memory.mechanism
        error = result.error or node.spawn_error
        sig = signal_name(code)
        if node.killed_by == "timeout":
            error = f"timed out after {step.timeout_sec:g} s (timeout_sec); its process group was killed"
        elif node.killed_by == "stop":
            error = "stopped: the run was aborted"
        elif node.killed_by == "dag-timeout":
            error = f"killed: the DAG ran over its timeout_sec of {self.dag.timeout_sec:g} s"
        else:
            why = limits_mod.describe_failure(node.limits or limits_mod.Limits(), code, node.cgroup_oom,
                                              node.killed_by == "memory",
                                              mechanism="sampler" if node.killed_by == "memory"
                                              else self.memory.mechanism)
            if why:
                error = why
            elif sig:
                error = error or f"killed by {sig}"
        output_value = result.output
        captured = None
        if code == 0 and step.output and output_value is None:
            captured, too_big = self._capture(node)
            if too_big:
                error = too_big
                code = 1
            else:
                output_value = captured
        fields: dict[str, Any] = {"exit_code": code, "signal": sig, "usage": usage}
        if error:
            fields["error"] = error
        if result.outputs is not None:
            fields["outputs"] = result.outputs
        if result.children:
            fields["children"] = result.children
        self.facts[step.id] = StepFacts(output=output_value, stdout=node.stdout, stderr=node.stderr,
                                        exit_code=code, outputs=result.outputs)
        if step.output and output_value is not None and code == 0:
            fields["output"] = output_value
            fields["output_name"] = step.output
        stopping = self.stop_reason is not None or node.killed_by in ("stop", "dag-timeout")
        # repetition first: a repeating step is not finished until its policy says so
        if not stopping and self._should_repeat(node, code):
            self._record_attempt(node, RUNNING, fields)
            node.repeats += 1
            self._schedule(node, step.repeat_policy.interval_sec, step.repeat_policy.backoff,  # type: ignore
                           step.repeat_policy.max_interval_sec, node.repeats)  # type: ignore[union-attr]
            return
        if code == 0 and not error:
            approval = step.options.get("approval") if node.handler is None else None
            if isinstance(approval, dict) and not node.approved:
                prompt = approval.get("prompt") or "approve to continue"
                self._conclude(node, WAITING, fields=fields, reason=f"waiting for approval: {prompt}")
                return
            self._conclude(node, SUCCEEDED, fields=fields)
            return
        if not stopping and self._should_retry(node, code):
            self._record_attempt(node, RUNNING, fields)
            node.tries += 1
            policy = step.retry_policy
            assert policy is not None
            self._schedule(node, policy.interval_sec, policy.backoff, policy.max_interval_sec, node.tries)
            return
        if stopping:
            self._conclude(node, ABORTED, fields=fields, reason=error)
            return
        if node.handler is None and self._continue(node, code):
            node.tolerated = not step.continue_on.mark_success
            fields["tolerated"] = node.tolerated
            status = SUCCEEDED if step.continue_on.mark_success else FAILED
            self._conclude(node, status, fields=fields,
                           reason=(error or f"exit status {code}") + "; the run continues (continue_on)")
            return
        self._conclude(node, FAILED, fields=fields, reason=error or f"exit status {code}")

    def _capture(self, node: Node) -> tuple[str | None, str | None]:
        limit = node.step.max_output_size or self.dag.max_output_size
        try:
            size = os.path.getsize(node.stdout or "")
            if size > limit:
                return None, (f"output is {size} bytes, over max_output_size ({limit} bytes); raise "
                              "max_output_size or write large data to a file and pass its path")
            with open(node.stdout or "", "rb") as fh:
                return fh.read().decode("utf-8", "replace").rstrip("\n"), None
        except OSError as exc:
            return None, f"cannot read the step's output: {exc.strerror}"

    def _should_repeat(self, node: Node, code: int) -> bool:
        policy = node.step.repeat_policy
        if policy is None or node.killed_by is not None:
            return False
        if policy.limit is not None and node.repeats + 1 >= policy.limit:
            return False
        if policy.exit_codes:
            listed = code in policy.exit_codes
            return listed if policy.mode == "while" else not listed
        if code != 0:
            return False
        if policy.condition is None:
            return policy.mode == "while"
        scope = self._scope(node)
        try:
            met = conditions.unmet((policy.condition,), scope, scope.cwd, scope.env) is None
        except EvalError:
            return False
        return met if policy.mode == "while" else not met

    def _should_retry(self, node: Node, code: int) -> bool:
        policy = node.step.retry_policy
        if policy is None or node.killed_by is not None or node.tries >= policy.limit:
            return False
        return not policy.exit_codes or code in policy.exit_codes

    def _schedule(self, node: Node, interval: float, backoff: float, cap: float | None, n: int) -> None:
        delay = interval * (backoff ** (n - 1)) if backoff and backoff > 1 else interval
        if cap is not None:
            delay = min(delay, cap)
        self.timers.append((time.monotonic() + max(0.0, delay), node))

    def _continue(self, node: Node, code: int) -> bool:
        rule = node.step.continue_on
        if rule.failure:
            return True
        if code in rule.exit_codes:
            return True
        if rule.output and node.stdout:
            scope = self._scope(node)
            try:
                with open(node.stdout, encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        line = line.rstrip("\n")
                        if any(conditions.matches(m, line, scope, contains=True) for m in rule.output):
                            return True
            except OSError:
                return False
        return False

    def _record_attempt(self, node: Node, status: str, fields: dict[str, Any]) -> None:
        """An attempt that ends but is followed by another (retry, repeat)."""
        self.emit("step_finished", step=node.step.id, name=node.step.name, handler=node.handler,
                  attempt=node.attempt, status=status, **fields)

    def _conclude(self, node: Node, status: str, *, reason: str | None = None, error: str | None = None,
                  fields: dict[str, Any] | None = None, exit_code: int | None = None, event: str | None = None,
                  extra: dict[str, Any] | None = None) -> None:
        """The step is done for this run: record it and release its dependents."""
        node.status = status
        node.done = True
        node.deadline = None
        data = dict(fields or {})
        if error and "error" not in data:
            data["error"] = error
        if exit_code is not None:
            data["exit_code"] = exit_code
        if extra:
            data.update(extra)
        if event == "step_skipped":
            self.emit("step_skipped", step=node.step.id, name=node.step.name, handler=node.handler, reason=reason,
                      **({"tolerated": True} if node.tolerated else {}))
        else:
            self.emit("step_finished", step=node.step.id, name=node.step.name, handler=node.handler,
                      attempt=node.attempt, status=status, reason=reason, **data)
        if status in (SUCCEEDED, WAITING) and node.step.output and "output" in data:
            self.output_order.append((node.step.id, node.step.output, data["output"]))
        if node.handler is not None or status == WAITING:  # a waiting step releases nothing yet
            return
        for sid in self.dependents.get(node.step.id, ()):
            dep = self.nodes[sid]
            if dep.done:
                continue
            dep.waiting -= 1
            if dep.waiting == 0:
                self._make_ready(dep)


