"""The supervisor: run one DAG of a plan, step by step; the I/O loop around the engine's pure logic.

What a finished step means for the others is `graph.StepGraph`'s; what an
attempt's end means for its own step is `policy.decide`'s; what a step sees is
`scope.Scopes`'; its executor is found through the catalogue (`step_types`).
This module only does the I/O: one thread starts step processes (process/spawn)
and in-process calls (inprocess, on worker threads), and blocks on the pidfds
of its children plus a wake-up pipe (signals, the sampler's over-limit calls,
preconditions and in-process calls that returned) with a timeout for the next
deadline (step or DAG timeout, SIGKILL after a stop's grace period, an
abandoned in-process call, a retry's or repetition's interval).

Every state change goes to the hooks (the journal first), which are flushed
once per turn of the loop, right before it blocks: the journal is always at
most one turn behind, and a 1,000-step chain costs one fsync per step, not a
rewrite of a growing status file.
"""

from __future__ import annotations

import os
import queue
import selectors
import signal
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dagu.engine import conditions, policy
from dagu.engine.attempt import Attempt, capture_output, ended_error
from dagu.engine.evaluate import EvalError, Scope, StepFacts
from dagu.engine.graph import Node, StepGraph
from dagu.engine.hooks import Hooks, JournalHook
from dagu.engine.inprocess import InProcessRunner, Ticket, close_io, open_io
from dagu.engine.request import resolve_request
from dagu.engine.run_context import RunContext
from dagu.engine.scope import Scopes
from dagu.engine.step_types import ExecutorLookup, known, load_executor, type_of, unsupported
from dagu.executors import catalog
from dagu.executors.base import ExecutorError, StepResult
from dagu.process import limits as limits_mod
from dagu.process.spawn import Children, StrictSandbox, parse_signal, signal_name
from dagu.spec.plan import Step
from dagu.store.runs import Journal, hostname
from dagu.store.state import ABORTED, FAILED, MISSED, NOT_STARTED, PARTIAL, SKIPPED, SUCCEEDED, WAITING, RunStatus

DEFAULT_GRACE_SEC = 5.0
SNAPSHOT_EVERY_SEC = 2.0
SNAPSHOT_MAX_SHARE = 0.02  # while running, snapshots take at most this share of the supervisor's time
STOPPED_BEFORE_RERUN = "the run was stopped before this step could run again"


class Supervisor:
    def __init__(self, ctx: RunContext, status: RunStatus, journal: Journal,
                 executors: ExecutorLookup = load_executor) -> None:
        self.ctx = ctx
        self.dag = ctx.dag
        self.status = status
        self.hooks = Hooks(JournalHook(journal, status))
        self.executors = executors
        self.graph = StepGraph(ctx.dag.steps, ctx.dag.order)
        self.nodes = self.graph.nodes
        self.scopes = Scopes(ctx, self.graph, status)
        self.ready: deque[Node] = deque()
        self.running: dict[str, tuple[Node, Attempt]] = {}  # node key -> its attempt in flight
        self.timed: dict[str, tuple[Node, Attempt]] = {}  # attempts with a deadline
        # preconditions that run commands are checked on threads, so a slow one does not stall
        # the bookkeeping of running steps; results come back through `checked`
        self.checking: dict[str, Node] = {}
        self.checked: "queue.SimpleQueue[tuple[str, str | None, BaseException | None]]" = queue.SimpleQueue()
        self.checker: ThreadPoolExecutor | None = None
        self.timers: list[tuple[float, Node]] = []
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.children = Children(self.selector, self.wake)
        self.in_process = InProcessRunner(self.wake)
        self.strict = StrictSandbox()
        self.stop_reason: str | None = None  # "signal" | "timeout"
        self.stop_signals = 0
        self.run_deadline = time.monotonic() + ctx.dag.timeout_sec if ctx.dag.timeout_sec else None
        self.grace = float(ctx.dag.settings.get("max_clean_up_time_sec", DEFAULT_GRACE_SEC) or DEFAULT_GRACE_SEC)
        self.max_active = ctx.dag.max_active_steps or 0
        self.error: str | None = None
        self._last_snapshot = 0.0
        self._snapshot_cost = 0.0

    # ------------------------------------------------------------------ events and signals

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

    def wake(self) -> None:
        """Wake the loop (from a signal handler or another thread)."""
        try:
            os.write(self.wake_w, b"w")
        except OSError:
            pass

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_signals += 1
        self.wake()

    def _install_signals(self) -> dict[int, Any]:
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (tests): no signal handling
                break
        return old

    def kill_everything(self) -> None:
        """Last resort (the disk is full, the journal cannot be written): no step outlives us."""
        self.children.kill_all()

    # ------------------------------------------------------------------ the run

    def run(self) -> RunStatus:
        old = self._install_signals()
        try:
            return self._run()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            if self.checker is not None:
                self.checker.shutdown(wait=False, cancel_futures=True)
            self.in_process.close()
            self.children.close()
            self.selector.close()
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _run(self) -> RunStatus:
        ctx = self.ctx
        retry = ctx.retry_of is not None
        self.emit("run_started", pid=os.getpid(), host=hostname(), parent=ctx.parent,
                  params=[f"{k}={v}" for k, v in ctx.params], retry=retry and not ctx.resume, resume=ctx.resume,
                  steps=[[s.id, s.name] for s in self.dag.steps])
        if retry:
            self._restore(ctx.retry_of, ctx.resume)
        self.flush(force=True)
        if ctx.missed:  # the scheduler missed ticks: say so where runs are read, and notify
            self.error = ctx.missed
            return self._finish(MISSED, handlers=("failure", "exit"))
        missing = self._unsupported()
        if missing:  # refused before any step (or handler) has had a side effect
            self.error = (f"this build cannot run {'; '.join(missing)} (it runs: "
                          f"{', '.join(catalog.runnable_names())}); no step ran")
            return self._refuse(self.error, FAILED, handlers=())
        if not retry and self.dag.preconditions:
            unmet = conditions.unmet(self.dag.preconditions, self.scopes.scope(None), ctx.cwd,
                                     self.scopes.scope(None).env)
            if unmet:
                for node in self.nodes.values():
                    self.emit("step_skipped", step=node.step.id, reason="DAG precondition not met")
                self.error = f"DAG precondition not met: {unmet}"
                return self._finish(ABORTED, handlers=("exit",))
        if "init" in self.dag.handlers and not ctx.resume:
            node = Node(self.dag.handlers["init"], handler="init")
            self._loop_with([node])
            if node.status != SUCCEEDED:
                self.error = "the init handler failed; no step ran"
                return self._refuse("init handler failed", ABORTED if self.stop_reason == "signal" else FAILED)
        self._loop_with(self.graph.ready_at_start())
        return self._finish(self._final_status())

    def _unsupported(self) -> list[str]:
        runs = known if self.executors is load_executor else (lambda name: self.executors(name) is not None)
        steps = [*[(s.id, s) for s in self.dag.steps], *[(f"handler_on.{h}", s) for h, s in self.dag.handlers.items()]]
        located = [(f"{self.dag.source_map[k]}: " if k in self.dag.source_map else "", s) for k, s in steps]
        return unsupported(located, runs)

    def _refuse(self, reason: str, final: str, handlers: tuple[str, ...] | None = None) -> RunStatus:
        for n in self.nodes.values():
            if not n.done:
                self.emit("step_finished", step=n.step.id, status=NOT_STARTED, reason=reason)
        return self._finish(final, handlers)

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
            node = Node(self.dag.handlers[h], handler=h)
            self._loop_with([node])
            if h == "success" and node.status != SUCCEEDED:
                final = FAILED
                self.error = "the success handler failed"
                self.status.status = final
        for step_id, name, value in self.scopes.output_order:
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
        final, waiting = self.graph.outcome()
        if waiting:
            self.error = (f"waiting for approval of step(s) {', '.join(waiting)}: "
                          f"dagu approve {self.ctx.run_id} STEP, or dagu reject {self.ctx.run_id} STEP")
        return final

    def _restore(self, previous: RunStatus, resume: bool = False) -> None:
        """`dagu retry`: keep succeeded steps (and their outputs), put the rest back in line.

        A resume after an approval decision keeps failed steps too (and whether continue_on
        tolerated them): it only runs what has not run yet.
        """
        keep = (SUCCEEDED, SKIPPED, FAILED, ABORTED) if resume else (SUCCEEDED, SKIPPED)
        outputs = self.scopes.output_order
        for sid, node in self.nodes.items():
            old = previous.steps.get(sid)
            if old is not None and old.status in keep:
                chosen = old.outputs.get("selected", []) if old.outputs is not None else None
                self.graph.restore(sid, old.status, old.tolerated, chosen)
                if old.approval and old.approval.get("decision") == "approved":
                    node.approved = True
                    outputs.extend((sid, name, str(value)) for name, value in (old.approval.get("inputs") or {}).items())
                node.attempt = len(old.attempts)
                last = old.last
                self.scopes.facts[sid] = StepFacts(output=old.output, outputs=old.outputs,
                                                   stdout=last.stdout if last else None,
                                                   stderr=last.stderr if last else None,
                                                   exit_code=last.exit_code if last else None)
                if old.output is not None and old.output_name:
                    outputs.append((sid, old.output_name, old.output))
            else:
                node.attempt = len(old.attempts) if old else 0
                self.emit("step_reset", step=sid)

    # ------------------------------------------------------------------ the loop

    def _loop_with(self, nodes: list[Node]) -> None:
        for node in nodes:
            self._make_ready(node)
        self._loop()

    def _loop(self) -> None:
        while True:
            self._start_ready()
            self.flush()
            if not self.running and not self.timers and not self.ready \
                    and (not self.checking or self.stop_reason is not None):
                return
            for key, _mask in self.selector.select(self._next_deadline()):
                if key.data is None:
                    self._drain_wake()
                else:
                    self._reaped(self.children.reap(key.data))
            for reaped in self.children.poll():
                self._reaped(reaped)
            self._check_time()

    def _next_deadline(self) -> float | None:
        # Only attempts with a deadline are looked at (`timed`): a 1,000-step fan-out must not
        # cost a scan of every process per turn of the loop.
        now = time.monotonic()
        candidates = [t for t, _ in self.timers]
        for _node, att in self.timed.values():
            candidates += [t for t in (att.deadline, att.give_up_at) if t is not None]
        if self.run_deadline is not None and self.stop_reason is None:
            candidates.append(self.run_deadline)
        escalation = self.children.next_deadline()
        if escalation is not None:
            candidates.append(escalation)
        return max(0.0, min(candidates) - now) if candidates else None

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass
        if self.stop_signals and self.stop_reason != "signal":
            self._stop("signal")
        elif self.stop_signals > 1:  # a second signal: no more grace
            self.children.kill_all()
        for child in self.children.take_over_limit():
            child.owner[1].killed_by = "memory"
            self.children.signal(child, signal.SIGKILL)
        self._take_checked()
        for ticket, result, exc in self.in_process.take():
            node, att = ticket.owner
            close_io(ticket.io)
            if exc is not None:
                result = StepResult(exit_code=1, error=f"the {ticket.request.type} executor failed: "
                                                       f"{type(exc).__name__}: {exc}")
            self._attempt_ended(node, att, result or StepResult(exit_code=1, error="the executor returned nothing"))

    def _check_time(self) -> None:
        now = time.monotonic()
        if self.run_deadline is not None and now >= self.run_deadline and self.stop_reason is None:
            self._stop("timeout")
        for node, att in list(self.timed.values()):
            if att.deadline is not None and now >= att.deadline and att.killed_by is None:
                att.killed_by = "timeout"
                self._interrupt(node, att)
            if att.give_up_at is not None and now >= att.give_up_at and att.ticket is not None:
                self.in_process.abandon(att.ticket)
                self._attempt_ended(node, att, StepResult(exit_code=1, error=(
                    f"the {att.ticket.request.type} step did not return within {self.grace:g} s "
                    "(max_clean_up_time_sec) of being cancelled; it was abandoned")))
        self.children.escalate(now)
        due = [t for t in self.timers if t[0] <= now]
        if due:
            self.timers = [t for t in self.timers if t[0] > now]
            for _t, node in due:
                if self.stop_reason is None:
                    self._launch(node)
                else:
                    self._conclude(node, ABORTED, reason=STOPPED_BEFORE_RERUN)

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.ready.clear()
        for _t, node in self.timers:
            self._conclude(node, ABORTED, reason=STOPPED_BEFORE_RERUN)
        self.timers.clear()
        for node, att in list(self.running.values()):
            if att.killed_by is None:
                att.killed_by = "stop" if reason == "signal" else "dag-timeout"
            self._interrupt(node, att)

    def _interrupt(self, node: Node, att: Attempt) -> None:
        """Ask an attempt to end: its processes get the stop signal (SIGKILL after the grace
        period), an in-process call its cancellation (abandoned after the grace period)."""
        if att.ticket is not None:
            att.ticket.cancel.set()
            if att.give_up_at is None:
                att.give_up_at = time.monotonic() + self.grace
                self.timed[node.key] = (node, att)
            return
        sig = parse_signal(node.step.signal_on_stop)
        for pid in list(att.pids):
            child = self.children.procs.get(pid)
            if child is not None:
                self.children.signal(child, sig, self.grace)

    # ------------------------------------------------------------------ readiness

    def _make_ready(self, node: Node) -> None:
        if node.handler is None:
            verdict = self.graph.verdict(node)
            if verdict is not None:
                status, reason = verdict
                self._conclude(node, status, reason=reason, event="step_skipped" if status == SKIPPED else None)
                return
        self.ready.append(node)

    def _start_ready(self) -> None:
        while self.ready:
            if self.stop_reason is not None and self.ready[0].handler is None:
                self.ready.clear()
                return
            if self.max_active and self.ready[0].handler is None and self._running_count() >= self.max_active:
                return
            self._begin(self.ready.popleft())

    def _running_count(self) -> int:
        return sum(1 for key in (*self.running, *self.checking) if not key.startswith("handler:"))

    # ------------------------------------------------------------------ starting a step

    def _begin(self, node: Node) -> None:
        """A step's first run in this run: preconditions (on a thread when they run commands), then launch."""
        node.tries = node.repeats = 0
        step = node.step
        if not step.preconditions:
            self._launch(node)
            return
        scope = self.scopes.scope(node)
        try:
            cwd = self.scopes.cwd(step, scope)
            check_scope = Scope(scope.vars, scope.env, cwd, scope.steps)
            if conditions.runs_commands(step.preconditions):
                self._check_on_thread(node, check_scope)
                return
            unmet = conditions.unmet(step.preconditions, check_scope, cwd, dict(scope.env))
        except (EvalError, OSError) as exc:
            self._fail_without_attempt(node, self._located(node, str(exc)))
            return
        self._after_check(node, unmet)

    def _after_check(self, node: Node, unmet: str | None) -> None:
        if unmet:
            self._conclude(node, SKIPPED, reason=f"precondition not met: {unmet}", event="step_skipped")
        else:
            self._launch(node)

    def _check_on_thread(self, node: Node, scope: Scope) -> None:
        if self.checker is None:
            self.checker = ThreadPoolExecutor(max_workers=4, thread_name_prefix="precondition")
        key, checks = node.key, node.step.preconditions
        self.checking[key] = node  # a step being checked counts against max_active_steps

        def work() -> None:
            try:
                self.checked.put((key, conditions.unmet(checks, scope, scope.cwd, dict(scope.env)), None))
            except BaseException as exc:  # handed to the loop, which reports it on the step
                self.checked.put((key, None, exc))
            self.wake()

        self.checker.submit(work)

    def _take_checked(self) -> None:
        while True:
            try:
                key, unmet, exc = self.checked.get_nowait()
            except queue.Empty:
                return
            node = self.checking.pop(key)
            if self.stop_reason is not None:
                continue  # stopping: the step does not start, as a step still in line would not
            if exc is not None:
                self._fail_without_attempt(node, self._located(node, str(exc)))
            else:
                self._after_check(node, unmet)

    def _located(self, node: Node, message: str) -> str:
        """A configuration error of a step, prefixed with where the step is written (file:line:col)."""
        where = self.dag.source_map.get(f"handler_on.{node.handler}" if node.handler else node.step.id)
        return f"{where}: {message}" if where else message

    def _fail_without_attempt(self, node: Node, error: str, **started: Any) -> None:
        if not started:
            node.attempt += 1
        self.emit("step_started", step=node.step.id, name=node.step.name, handler=node.handler,
                  attempt=node.attempt, **started)
        self._conclude(node, FAILED, reason=error, error=error)

    def _launch(self, node: Node) -> None:
        """Start one attempt of a step: resolve it, then start its processes or its in-process call."""
        step, run = node.step, self.ctx.run
        node.attempt += 1
        is_handler = node.handler is not None
        att = Attempt(stdout=run.step_log(step.id, node.attempt, "out", is_handler),
                      stderr=run.step_log(step.id, node.attempt, "err", is_handler))
        try:
            executor = self.executors(type_of(step))
            if executor is None:  # checked before the run; a lookup can still change its mind
                raise ExecutorError(f"this build has no executor for step type {type_of(step)!r}")
            scope = self.scopes.step_scope(node, att.stdout, att.stderr)
            if step.stdout is not None:
                att.stdout = self._path(step.stdout, scope)
            if step.stderr is not None:
                att.stderr = self._path(step.stderr, scope)
            request = resolve_request(step, executor.name, scope, self.ctx, attempt=node.attempt,
                                      stdout=att.stdout, stderr=att.stderr, handler=node.handler)
            if executor.in_process:
                att.ticket = Ticket(executor.module.run, request, open_io(att.stdout, att.stderr), (node, att))
            else:
                att.limits = limits_mod.limits_from(self.dag.settings, step.options)
                att.memory_mechanism = self.children.memory.mechanism
                att.job = executor.module.make_job(request)
        except (EvalError, ExecutorError, ValueError, OSError) as exc:
            self._fail_without_attempt(node, self._located(node, str(exc)), stdout=att.stdout, stderr=att.stderr)
            return
        att.started_wall = time.time()
        if step.timeout_sec:
            att.deadline = att.started_mono + step.timeout_sec
            self.timed[node.key] = (node, att)
        self.running[node.key] = (node, att)
        if att.ticket is not None:
            self.in_process.submit(att.ticket)
            self.emit("step_started", step=step.id, name=step.name, handler=node.handler, attempt=node.attempt,
                      stdout=att.stdout, stderr=att.stderr)
            return
        self._spawn_from(node, att)
        # recorded after the spawn so the journal names the process group (a retry after a
        # supervisor crash kills what is left of it); the same flush makes both durable
        self.emit("step_started", step=step.id, name=step.name, handler=node.handler, attempt=node.attempt,
                  stdout=att.stdout, stderr=att.stderr, pid=min(att.pids) if att.pids else None)
        if not att.pids and att.job.done():
            self._attempt_ended(node, att, att.job.result())

    def _path(self, template: list, scope: Scope) -> str:
        from dagu.engine.evaluate import render, resolve_path

        return resolve_path(scope.cwd, render(template, scope, False))

    def _spawn_from(self, node: Node, att: Attempt) -> None:
        assert att.job is not None
        for launch in att.job.launches():
            argv, env = launch.argv, launch.env
            try:
                if launch.sandboxed and self._strict_wanted(node.step):
                    scratch = os.path.join(self.ctx.run.path, "tmp", f"{node.key.replace(':', '.')}.{node.attempt}")
                    os.makedirs(scratch, exist_ok=True)
                    env = {**env, "TMPDIR": scratch}  # the root, /tmp included, is read-only in the sandbox
                    argv = self.strict.wrap(argv, launch.cwd,
                                            [self.ctx.run.logs, os.path.dirname(launch.stdout), scratch])
                limits = att.limits if launch.sandboxed else None
                child = self.children.start((node, att), argv, env, launch.cwd, launch.stdout, launch.stderr,
                                            limits, f"{self.ctx.run_id}.{node.key}.{node.attempt}", tag=launch)
            except OSError as exc:
                att.job.exited(launch, 127)
                att.spawn_error = f"cannot start {launch.argv[0]!r}: {exc.strerror or exc}"
                self._note_spawn_error(launch.stderr, att.spawn_error)
                continue
            att.pids.add(child.pid)
            if child.limit_error:
                att.spawn_error = child.limit_error
                self._note_spawn_error(launch.stderr, child.limit_error)

    def _strict_wanted(self, step: Step) -> bool:
        return bool({**self.dag.settings.get("sandbox", {}), **step.options.get("sandbox", {})}.get("strict"))

    @staticmethod
    def _note_spawn_error(path: str, message: str) -> None:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"dagu: {message}\n")
        except OSError:
            pass

    # ------------------------------------------------------------------ attempts ending

    def _reaped(self, reaped: Any) -> None:
        if reaped is None:
            return
        node, att = reaped.child.owner
        att.pids.discard(reaped.child.pid)
        att.cgroup_oom = att.cgroup_oom or reaped.cgroup_oom
        att.add_usage(reaped.usage)
        assert att.job is not None
        att.job.exited(reaped.child.tag, reaped.returncode)
        if self.stop_reason is None and att.killed_by is None:
            self._spawn_from(node, att)
        if not att.pids:
            self._attempt_ended(node, att, att.job.result())

    def _attempt_ended(self, node: Node, att: Attempt, result: StepResult) -> None:
        """The attempt is over (its processes are gone, or its call returned or was abandoned)."""
        self.running.pop(node.key, None)
        self.timed.pop(node.key, None)
        step = node.step
        code = result.exit_code
        error = ended_error(att, step, self.dag, result)
        output_value = result.output
        if code == 0 and step.output and output_value is None:
            output_value, too_big = capture_output(att.stdout, step.max_output_size or self.dag.max_output_size)
            if too_big:
                error, code = too_big, 1
        fields: dict[str, Any] = {"exit_code": code, "signal": signal_name(code), "usage": att.usage()}
        if error:
            fields["error"] = error
        if result.outputs is not None:
            fields["outputs"] = result.outputs
        if result.children:
            fields["children"] = result.children
        if step.routes and result.outputs is not None and node.handler is None:
            self.graph.choose(step.id, result.outputs.get("selected", ()))
        self.scopes.facts[step.id] = StepFacts(output=output_value, stdout=att.stdout, stderr=att.stderr,
                                               exit_code=code, outputs=result.outputs)
        if step.output and output_value is not None and code == 0:
            fields["output"] = output_value
            fields["output_name"] = step.output
        end = policy.AttemptEnd(code, error, att.killed_by, self.stop_reason is not None)
        decision = policy.decide(node, end, lambda: self._repeat_condition(node, att),
                                 lambda: self._output_matches(node, att))
        if decision.action in (policy.REPEAT, policy.RETRY):
            self.emit("step_finished", step=step.id, name=step.name, handler=node.handler,
                      attempt=node.attempt, status=decision.status, **fields)
            if decision.action == policy.REPEAT:
                node.repeats += 1
            else:
                node.tries += 1
            self.timers.append((time.monotonic() + decision.delay, node))
            return
        if decision.action == policy.CONTINUE:
            node.tolerated = decision.tolerated
            fields["tolerated"] = decision.tolerated
        self._conclude(node, decision.status, fields=fields, reason=decision.reason)

    def _repeat_condition(self, node: Node, att: Attempt) -> bool | None:
        condition = node.step.repeat_policy.condition  # type: ignore[union-attr]
        scope = self.scopes.scope(node, att.stdout, att.stderr)
        try:
            return conditions.unmet((condition,), scope, scope.cwd, dict(scope.env)) is None
        except EvalError:
            return None

    def _output_matches(self, node: Node, att: Attempt) -> bool:
        scope = self.scopes.scope(node, att.stdout, att.stderr)
        try:
            with open(att.stdout, encoding="utf-8", errors="replace") as fh:
                return any(conditions.matches(m, line.rstrip("\n"), scope, contains=True)
                           for line in fh for m in node.step.continue_on.output)
        except OSError:
            return False

    def _conclude(self, node: Node, status: str, *, reason: str | None = None, error: str | None = None,
                  fields: dict[str, Any] | None = None, event: str | None = None) -> None:
        """The step is done for this run: record it and release its dependents."""
        data = dict(fields or {})
        if error and "error" not in data:
            data["error"] = error
        step = node.step
        if event == "step_skipped":
            self.emit("step_skipped", step=step.id, name=step.name, handler=node.handler, reason=reason,
                      **({"tolerated": True} if node.tolerated else {}))
        else:
            self.emit("step_finished", step=step.id, name=step.name, handler=node.handler,
                      attempt=node.attempt, status=status, reason=reason, **data)
        if status in (SUCCEEDED, WAITING) and step.output and "output" in data:
            self.scopes.output_order.append((step.id, step.output, data["output"]))
        for released in self.graph.finish(node, status):
            self._make_ready(released)
