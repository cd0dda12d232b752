"""How the `dagu` command prints runs: durations, sizes, the run summary, status and history tables.

Only text for a terminal lives here; what is printed comes from the service
(service/reading.py), so a web page shows the same facts without this module.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def fmt_bytes(n: int | None) -> str:
    if not n:
        return "0"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    import datetime  # here only: most commands print no time
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def run_summary(status: Any) -> str:
    """The lines `dagu start`/`retry` print to stderr when a run ends."""
    steps = list(status.steps.values())
    counts: dict[str, int] = {}
    for s in steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    took = (status.finished_at or time.time()) - (status.started_at or time.time())
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    lines = [f"dagu: run {status.run_id} of {status.dag!r} {status.status} in {fmt_duration(took)}"
             + (f" ({parts})" if parts else "")]
    if status.error:
        lines.append(f"  {status.error}")
    for s in [*steps, *status.handlers.values()]:
        if s.status in ("failed", "aborted"):
            where = s.last.stderr if s.last and s.last.stderr else ""
            label = f"handler {s.handler}" if s.handler else f"step {s.id!r}"
            lines.append(f"  {label} {s.status}: {s.reason or ''}" + (f"  (stderr: {where})" if where else ""))
    return "\n".join(lines) + "\n"


def _tree_lines(runs: Sequence[Any], indent: str = "  ") -> list[str]:
    lines = []
    for r in runs:
        lines.append(f"{indent}{r.step} -> {r.dag} run {r.run_id}: {r.status}")
        lines += _tree_lines(r.runs, indent + "    ")
    return lines


def status_text(report: Any) -> str:
    """`dagu status`: the run's header, one row per step and handler, the sub-run tree."""
    view = report.view
    st = view.status
    took = ((st.finished_at or time.time()) - st.started_at) if st.started_at else None
    out = [f"dag:      {st.dag}",
           f"run:      {st.run_id}",
           f"status:   {st.status}" + ("  (interrupted)" if st.interrupted else ""),
           f"started:  {fmt_time(st.started_at)}   duration: {fmt_duration(took)}   pid: {st.pid}  host: {st.host}"
           + (f"  worker: {report.worker}" if getattr(report, "worker", None) else "")]
    if st.params:
        out.append(f"params:   {' '.join(st.params)}")
    if st.parent:
        out.append(f"parent:   {st.parent}")
    if st.error:
        out.append(f"error:    {st.error}")
    for retry in st.retries:  # a lost worker's run, retried by the DAG's retry_policy
        state = (f"started {fmt_time(retry['started_at'])}" if retry.get("started_at")
                 else f"refused: {retry['refused']}" if retry.get("refused") else f"due {fmt_time(retry.get('due_at'))}")
        out.append(f"retried:  {fmt_time(retry.get('at'))} ({state}): {retry.get('reason')}")
    out.append(f"path:     {view.path}")
    rows = [("STEP", "STATUS", "TRIES", "EXIT", "WALL", "CPU", "PEAK RSS", "READ", "WRITTEN", "NOTE")]
    for s in [*st.steps.values(), *st.handlers.values()]:
        last = s.last
        usage = (last.usage or {}) if last else {}
        exit_text = "-"
        if last is not None:
            exit_text = last.signal or ("-" if last.exit_code is None else str(last.exit_code))
        cpu = (usage.get("user_sec", 0) + usage.get("sys_sec", 0)) if usage else None
        label = f"<{s.handler}>" if s.handler else s.id
        rows.append((label, s.status, str(len(s.attempts)), exit_text,
                     fmt_duration(usage.get("wall_sec")) if usage else "-",
                     fmt_duration(cpu) if usage else "-",
                     fmt_bytes(usage.get("peak_rss_bytes")) if usage else "-",
                     fmt_bytes(usage.get("read_bytes")) if usage else "-",
                     fmt_bytes(usage.get("write_bytes")) if usage else "-",
                     (last.error if last and last.error else s.reason) or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    out.append("")
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    tree = _tree_lines(report.sub_runs)
    if tree:
        out += ["", "sub-DAG runs:", *tree]
    return "\n".join(line.rstrip() for line in out) + "\n"


def one_line(text: str) -> str:
    """Text for one table cell: control characters (a newline in a param) shown escaped, as `\\n`."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def history_text(rows: Sequence[Any]) -> str:
    """`dagu history`: one line per run or tick row (a tick row has `note()`); '' when none."""
    table = [("RUN ID", "STATUS", "STARTED", "DURATION", "PARAMS")]
    for row in rows:
        if not hasattr(row, "view"):  # a tick that did not become a run: its note where params go
            table.append((row.run_id or "-", row.status, fmt_time(row.tick), "-", one_line(row.note())))
            continue
        st = row.view.status
        took = (st.finished_at or time.time()) - st.started_at if st.started_at else None
        label = st.status + (" (interrupted)" if st.interrupted else "") + (" (damaged)" if row.view.problems else "")
        table.append((st.run_id, label, fmt_time(st.started_at), fmt_duration(took),
                      one_line(" ".join(st.params))))
    if len(table) == 1:
        return ""
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] + "\n"
                   for r in table).replace("  \n", "\n")


def workers_text(rows: Sequence[Any]) -> str:
    """`dagu workers`: one line per worker; '' when none."""
    table = [("ID", "HEALTH", "LAST HEARTBEAT", "RUNNING", "LABELS")]
    now = time.time()
    for w in rows:
        running = f"{len(w.running)}/{w.max_active_runs}" + (f" ({', '.join(w.running)})" if w.running else "")
        labels = ",".join(f"{k}={v}" for k, v in sorted(w.labels.items())) or "-"
        table.append((w.id, w.health, f"{fmt_time(w.last_heartbeat)} ({fmt_duration(now - w.last_heartbeat)} ago)",
                      running, labels))
    if len(table) == 1:
        return ""
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] + "\n" for r in table)
