"""Live updates: one server-sent-events stream per browser tab, multiplexed by topic, and a
stateless polling endpoint as the fallback.

    GET /api/v1/events?topics=dags,run:etl/RUN_ID      text/event-stream
    GET /api/v1/events/poll?topics=dags,run:etl/RUN_ID {"fingerprints": {topic: text}}

One watcher thread per app looks at the topics that open streams asked for, every
WATCH_INTERVAL_SEC, with `stat` calls only (service/changes.py), and wakes the streams whose
topics changed; with no stream open it sleeps.  A stream holds one of the WSGI server's threads,
so at most `max_streams` are open at once: the next gets 503 and the page polls instead.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Iterator

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from dagu.service.changes import BadTopic, check_topics, fingerprint
from dagu.web.context import web_context
from dagu.web.errors import ApiError

WATCH_INTERVAL_SEC = 0.25  # a change reaches the browser well within 1 s
KEEPALIVE_SEC = 15.0  # a comment line, so a closed tab is noticed and proxies keep the stream
MAX_STREAMS = 64  # 50 tabs at once (tests/bench/web_bench.py); an idle stream costs a parked thread

bp = Blueprint("events", __name__)


class Watcher:
    """Fingerprints of the topics open streams watch; `wait_change` blocks until one of a
    stream's topics changes (or the timeout)."""

    def __init__(self, home: str, dags_dir: str, max_streams: int) -> None:
        self.home, self.dags_dir = home, dags_dir
        self.slots = threading.BoundedSemaphore(max_streams)
        self._cond = threading.Condition()
        self._watched: Counter[str] = Counter()
        self._prints: dict[str, str] = {}
        self._version: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._memo: dict = {}  # service/changes.py's, so a look at `dags` stats the newest runs only

    def subscribe(self, topics: list[str]) -> dict[str, int]:
        with self._cond:
            for topic in topics:
                self._watched[topic] += 1
                if topic not in self._prints:
                    self._prints[topic] = self._safe_print(topic)
                    self._version.setdefault(topic, 0)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dagu-web-watcher", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return {t: self._version[t] for t in topics}

    def unsubscribe(self, topics: list[str]) -> None:
        with self._cond:
            for topic in topics:
                self._watched[topic] -= 1
                if self._watched[topic] <= 0:
                    del self._watched[topic]
                    self._prints.pop(topic, None)

    def wait_change(self, seen: dict[str, int], timeout: float) -> list[str]:
        """The topics whose version moved past `seen` (updated in place), after waiting up to `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: self._changed(seen) or self._stopping, timeout)
            changed = self._changed(seen)
            for topic in changed:
                seen[topic] = self._version[topic]
            return changed

    def _changed(self, seen: dict[str, int]) -> list[str]:
        return [t for t, v in seen.items() if self._version.get(t, v) != v]

    def _safe_print(self, topic: str) -> str:
        try:
            return fingerprint(self.home, self.dags_dir, topic, self._memo)
        except (OSError, ValueError):
            return ""

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._watched) or self._stopping)
                if self._stopping:
                    return
                topics = list(self._watched)
            fresh = {t: self._safe_print(t) for t in topics}  # outside the lock: stats may be slow
            with self._cond:
                moved = False
                for topic, print_ in fresh.items():
                    if topic in self._prints and self._prints[topic] != print_:
                        self._prints[topic] = print_
                        self._version[topic] = self._version.get(topic, 0) + 1
                        moved = True
                if moved:
                    self._cond.notify_all()
                self._cond.wait(WATCH_INTERVAL_SEC)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


def init_app(app: Flask, max_streams: int = MAX_STREAMS) -> None:
    ctx = app.extensions["dagu"]
    app.extensions["dagu.events"] = Watcher(ctx.home, ctx.dags_dir, max_streams)


def _watcher() -> Watcher:
    return current_app.extensions["dagu.events"]


def _topics() -> list[str]:
    raw = request.args.get("topics", "")
    topics = [t.strip() for t in raw.split(",") if t.strip()]
    if not topics:
        raise ApiError(400, "bad_request", "give ?topics=dags,run:DAG/RUN_ID,...")
    try:
        return check_topics(dict.fromkeys(topics))
    except BadTopic as exc:
        raise ApiError(400, "bad_topic", str(exc)) from None


def _frame(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@bp.get("")
def stream() -> Response:
    topics = _topics()
    watcher = _watcher()
    if not watcher.slots.acquire(blocking=False):
        raise ApiError(503, "too_many_streams", "too many live streams are open: poll /api/v1/events/poll instead")
    seen = watcher.subscribe(topics)
    context = web_context()
    released = threading.Event()

    def release() -> None:  # once, whether or not the stream ever started
        if not released.is_set():
            released.set()
            watcher.unsubscribe(topics)
            watcher.slots.release()

    def frames() -> Iterator[bytes]:
        try:
            yield b"retry: 1000\n\n" + _frame("hello", {"topics": topics})
            while True:
                changed = watcher.wait_change(seen, KEEPALIVE_SEC)
                context.reap()
                yield _frame("change", {"topics": changed}) if changed else b": keepalive\n\n"
        finally:
            release()

    response = Response(frames(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(release)
    return response


@bp.get("/poll")
def poll():
    ctx = web_context()
    topics = _topics()
    return jsonify({"fingerprints": {t: fingerprint(ctx.home, ctx.dags_dir, t) for t in topics}})
