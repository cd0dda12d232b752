"""GET /metrics: Prometheus' text exposition format (version 0.0.4), written by hand.

    dagu_up 1
    dagu_runs{dag,status}                      runs kept in the data dir (retention removes some)
    dagu_step_duration_seconds{dag,le}         histogram of step attempts of each DAG's 50 newest runs
    dagu_scheduler_up, dagu_scheduler_stalled  its flock is held / its loop is late
    dagu_scheduler_heartbeat_age_seconds       seconds since its last loop: the lag (absent: never beat)
    dagu_scheduler_missed_ticks{dag}           ticks due while no scheduler ran
    dagu_queue_length{queue}                   runs waiting

A scrape reads through the service layer (service/metrics.py) and is cached on the app for
CACHE_SEC, so scrapes from several Prometheus servers cost one read of the data dir.  Who may
read it follows web/auth.py's rule for a GET: the viewer role, or a bearer token.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

from flask import Blueprint, Flask, Response, current_app

from dagu.service.metrics import BUCKETS, Snapshot, collect
from dagu.web.context import web_context

CACHE_SEC = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

bp = Blueprint("metrics", __name__)


class MetricsCache:
    """The last rendered scrape and when it was made (one per app)."""

    def __init__(self, ttl: float = CACHE_SEC, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._text: str | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self, make: Callable[[], str]) -> str:
        with self._lock:  # one scrape reads at a time; the others wait for its text
            if self._text is None or self.clock() - self._at >= self.ttl:
                self._text = make()
                self._at = self.clock()
            return self._text


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(snap: Snapshot) -> str:
    """The snapshot as exposition text: HELP and TYPE once per family, then its samples."""
    out: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        out.append(f"# HELP {name} {text}")
        out.append(f"# TYPE {name} {kind}")

    family("dagu_up", "gauge", "1 while this server answers.")
    out.append("dagu_up 1")
    family("dagu_runs", "gauge", "Runs kept in the data dir, by DAG and status.")
    for (dag, status), count in sorted(snap.runs.items()):
        out.append(f'dagu_runs{{dag="{_label(dag)}",status="{_label(status)}"}} {count}')
    family("dagu_step_duration_seconds", "histogram",
           "Wall time of step attempts in each DAG's 50 newest runs.")
    for dag, hist in sorted(snap.step_seconds.items()):
        name = _label(dag)
        for bound, count in zip((*BUCKETS, math.inf), hist.buckets):
            out.append(f'dagu_step_duration_seconds_bucket{{dag="{name}",le="{_number(bound)}"}} {count}')
        out.append(f'dagu_step_duration_seconds_sum{{dag="{name}"}} {_number(round(hist.total, 6))}')
        out.append(f'dagu_step_duration_seconds_count{{dag="{name}"}} {hist.count}')
    family("dagu_scheduler_up", "gauge", "1 while a scheduler holds its leader lock.")
    out.append(f"dagu_scheduler_up {int(snap.scheduler_alive)}")
    family("dagu_scheduler_stalled", "gauge", "1 when the scheduler lives but its loop is late.")
    out.append(f"dagu_scheduler_stalled {int(snap.scheduler_stalled)}")
    family("dagu_scheduler_heartbeat_interval_seconds", "gauge", "How often the scheduler loops.")
    out.append(f"dagu_scheduler_heartbeat_interval_seconds {_number(snap.heartbeat_interval)}")
    if snap.heartbeat_age is not None:
        family("dagu_scheduler_heartbeat_age_seconds", "gauge", "Seconds since the scheduler's last loop (its lag).")
        out.append(f"dagu_scheduler_heartbeat_age_seconds {_number(round(snap.heartbeat_age, 3))}")
    family("dagu_scheduler_missed_ticks", "gauge", "Scheduled ticks that came due while no scheduler ran.")
    for dag, count in sorted(snap.missed_ticks.items()):
        out.append(f'dagu_scheduler_missed_ticks{{dag="{_label(dag)}"}} {count}')
    family("dagu_queue_length", "gauge", "Runs waiting in each queue.")
    for queue, count in sorted(snap.queues.items()):
        out.append(f'dagu_queue_length{{queue="{_label(queue)}"}} {count}')
    return "\n".join(out) + "\n"


def init_app(app: Flask) -> None:
    app.extensions["dagu.metrics"] = MetricsCache(float(app.config.get("METRICS_CACHE_SEC", CACHE_SEC)))


@bp.get("/metrics")
def metrics() -> Response:
    ctx = web_context()
    cache: MetricsCache = current_app.extensions["dagu.metrics"]
    text = cache.get(lambda: render(collect(ctx.home, ctx.runs)))
    return Response(text, content_type=CONTENT_TYPE)
