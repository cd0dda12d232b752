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
import selectors
import signal
import time
from collections import deque

from dagu.engine import conditions, policy
from dagu.engine.attempt import Attempt, ended_fields
from dagu.engine.evaluate import EvalError, StepFacts
from dagu.engine.graph import Node, StepGraph
from dagu.engine.hooks import Hooks, JournalHook
from dagu.engine.inprocess import InProcessRunner, Ticket, close_io, open_io
from dagu.engine.request import resolve_request
from dagu.engine.run_context import RunContext
from dagu.engine.process_steps import ProcessSteps
from dagu.engine.preconditions import PreconditionChecker
from dagu.engine.scope import Scopes
from dagu.engine.step_types import ExecutorLookup, known, load_executor, type_of, unsupported
from dagu.executors import catalog
from dagu.executors.base import ExecutorError, StepResult
from dagu.process import limits as limits_mod
from dagu.process.spawn import Children, Reaped, parse_signal
from dagu.store.runs import Journal, hostname
from dagu.store.state import ABORTED, FAILED, MISSED, NOT_STARTED, SKIPPED, SUCCEEDED, WAITING, RunStatus

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

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
        self.hooks = Hooks(JournalHook(journal, status, ctx.masker))
        if ctx.dag.settings.get("error_mail") or ctx.dag.settings.get("info_mail"):
            from dagu.engine import notify  # only a run that may mail imports it (issue 17)
            if notify.wanted(ctx):  # mail_on / mail_on_error: the run's summary by e-mail
                self.hooks.subscribe(notify.NotifyHook(ctx, status))
        self.executors = executors
        self.graph = StepGraph(ctx.dag.steps, ctx.dag.order)
        self.nodes = self.graph.nodes
        self.scopes = Scopes(ctx, self.graph, status)
        self.ready: deque[Node] = deque()
        self.running: dict[str, tuple[Node, Attempt]] = {}  # node key -> its attempt in flight
        self.timed: dict[str, tuple[Node, Attempt]] = {}  # attempts with a deadline
        self.timers: list[tuple[float, Node]] = []
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.grace = float(ctx.dag.settings.get("max_clean_up_time_sec", DEFAULT_GRACE_SEC) or DEFAULT_GRACE_SEC)
        self.children = Children(self.selector, self.wake, ctx.run.path if ctx.run else ctx.run_id, self.grace)
        self.in_process = InProcessRunner(self.wake)
        self.processes = ProcessSteps(ctx, self.children, self.in_process.busy)
        self.checker = PreconditionChecker(self.wake)  # preconditions that run commands
        self.stop_reason: str | None = None  # "signal" | "timeout"
        self.stop_signals = 0
        self.run_deadline = time.monotonic() + ctx.dag.timeout_sec if ctx.dag.timeout_sec else None
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
            self.checker.close()
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
            from dagu.engine.restore import restore  # a retry or resume only
            restore(self.graph, self.scopes, ctx.retry_of, ctx.resume, lambda sid: self.emit("step_reset", step=sid))
        self.flush(force=True)
        if ctx.missed:  # the scheduler missed ticks: say so where runs are read, and notify
            self.error = ctx.missed
            return self._finish(MISSED, handlers=("failure", "exit"))
        missing = self._unsupported()
        if missing:  # refused before any step (or handler) has had a side effect
            self.error = (f"this build cannot run {'; '.join(missing)} (it runs: "
                          f"{', '.join(catalog.runnable_names())}); no step ran")
            return self._refuse(self.error, FAILED, handlers=())
        if not retry and self.dag.preconditions:  # spec 023: unmet aborts the run, an error fails it
            root = self.scopes.scope(None)
            try:
                unmet = conditions.unmet(self.dag.preconditions, root, ctx.cwd, dict(root.env))
            except (EvalError, OSError) as exc:
                self.error = f"the DAG's preconditions could not be checked: {exc}"
                return self._refuse(self.error, FAILED)
            if unmet:
                for node in self.nodes.values():
                    self.emit("step_skipped", step=node.step.id, reason="DAG precondition not met")
                self.error = f"DAG precondition not met: {unmet}"
                return self._finish(ABORTED)
        if "init" in self.dag.handlers and not ctx.resume:  # a failed init aborts the run (as upstream)
            node = Node(self.dag.handlers["init"], handler="init")
            self._loop_with([node])
            if node.status != SUCCEEDED:
                self.error = "the init handler failed; no step ran"
                return self._refuse("init handler failed", ABORTED)
        self._loop_with(self.graph.ready_at_start())
        return self._finish(self._final_status())

    def _unsupported(self) -> list[str]:
        runs = known if self.executors is load_executor else (lambda name: self.executors(name) is not None)
        return unsupported(self.dag, runs)

    def _refuse(self, reason: str, final: str, handlers: tuple[str, ...] | None = None) -> RunStatus:
        for n in self.nodes.values():
            if not n.done:
                self.emit("step_finished", step=n.step.id, status=NOT_STARTED, reason=reason)
        return self._finish(final, handlers)

    def _finish(self, final: str, handlers: tuple[str, ...] | None = None) -> RunStatus:
        if handlers is None:
            handlers = policy.HANDLERS_AFTER[final]
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
        self.children.no_more_processes()
        for step_id, name, value in self.scopes.output_order:
            self.emit("output", step=step_id, name=name, value=value)
        self.emit("run_finished", status=final, error=self.error)
        self.flush(force=True)
        return self.status

    def _final_status(self) -> str:
        final, error = policy.run_outcome(self.stop_reason, self.dag.timeout_sec, self.graph.outcome(), self.ctx.run_id)
        self.error = error or self.error
        return final

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
                    and (not self.checker.pending or self.stop_reason is not None):
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
            child.owner[1].killed_by = child.over or "memory"
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
            if att.deadline is not None and now >= att.deadline:
                att.deadline = None  # due once: an attempt in its grace period must not spin the loop
                if att.killed_by is None:
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
        return sum(1 for key in (*self.running, *self.checker.pending) if not key.startswith("handler:"))

    # ------------------------------------------------------------------ starting a step

    def _begin(self, node: Node) -> None:
        """A step's first run in this run: preconditions (on a thread when they run commands), then launch."""
        node.tries = node.repeats = 0
        step = node.step
        if not step.preconditions:
            self._launch(node)
            return
        try:
            check_scope = self.scopes.step_scope(node, None, None)  # its own env and working directory
            if conditions.runs_commands(step.preconditions):
                self.checker.submit(node, check_scope)
                return
            unmet = conditions.unmet(step.preconditions, check_scope, check_scope.cwd, dict(check_scope.env))
        except (EvalError, OSError) as exc:
            self._fail_without_attempt(node, self._located(node, str(exc)))
            return
        self._after_check(node, unmet)

    def _after_check(self, node: Node, unmet: str | None) -> None:
        if unmet:
            self._conclude(node, SKIPPED, reason=f"precondition not met: {unmet}", event="step_skipped")
        else:
            self._launch(node)

    def _take_checked(self) -> None:
        for node, unmet, exc in self.checker.take():
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
                att.stdout = self.scopes.path(step.stdout, scope)
            if step.stderr is not None:
                att.stderr = self.scopes.path(step.stderr, scope)
            request = resolve_request(step, executor.name, scope, self.ctx, attempt=node.attempt,
                                      stdout=att.stdout, stderr=att.stderr, handler=node.handler,
                                      repeat=node.repeats)
            if executor.in_process:
                att.ticket = Ticket(executor.module.run, request, open_io(att.stdout, att.stderr), (node, att))
            else:
                att.limits = limits_mod.limits_from(self.dag.settings, step.options)
                if att.limits is not None and att.limits.memory_bytes:
                    att.memory_mechanism = self.children.memory.mechanism
                att.job = executor.module.make_job(request)
        except (EvalError, ExecutorError, ValueError, OSError) as exc:
            self._fail_without_attempt(node, self._located(node, str(exc)), stdout=att.stdout, stderr=att.stderr)
            return
        if step.timeout_sec:
            att.deadline = att.started_mono + step.timeout_sec
            self.timed[node.key] = (node, att)
        self.running[node.key] = (node, att)
        if att.ticket is not None:
            self.in_process.submit(att.ticket)
            self.emit("step_started", step=step.id, name=step.name, handler=node.handler, attempt=node.attempt,
                      stdout=att.stdout, stderr=att.stderr)
            return
        self.processes.spawn(node, att)
        # recorded after the spawn so the journal names the process group (a retry after a
        # supervisor crash kills what is left of it); the same flush makes both durable
        self.emit("step_started", step=step.id, name=step.name, handler=node.handler, attempt=node.attempt,
                  stdout=att.stdout, stderr=att.stderr, pid=min(att.pids) if att.pids else None)
        if not att.pids and att.job.done():
            self._attempt_ended(node, att, att.job.result())

    # ------------------------------------------------------------------ attempts ending

    def _reaped(self, reaped: Reaped | None) -> None:
        if reaped is not None:
            node, att, over = self.processes.reaped(reaped, more=self.stop_reason is None)
            if over:
                self._attempt_ended(node, att, att.job.result())

    def _attempt_ended(self, node: Node, att: Attempt, result: StepResult) -> None:
        """The attempt is over (its processes are gone, or its call returned or was abandoned)."""
        self.running.pop(node.key, None)
        self.timed.pop(node.key, None)
        step = node.step
        code, error, output_value, fields = ended_fields(att, step, self.dag, result)
        if step.routes and result.outputs is not None and node.handler is None:
            self.graph.choose(step.id, result.outputs.get("selected", ()))
        self.scopes.facts[step.id] = StepFacts(output=output_value, stdout=att.stdout, stderr=att.stderr,
                                               exit_code=code, outputs=result.outputs)
        end = policy.AttemptEnd(code, error, att.killed_by, self.stop_reason is not None)
        decision = policy.decide(node, end, lambda: self.scopes.repeat_condition_holds(node, att.stdout, att.stderr),
                                 lambda: self.scopes.output_matches(node, att.stdout, att.stderr))
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
        self._conclude(node, decision.status, fields=fields, reason=decision.reason or fields.get("note"))

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
