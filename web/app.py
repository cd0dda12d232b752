"""`create_app(config)`: the Flask application, one blueprint per resource.

The JSON API lives under /api/v1 (dags, runs, queues, system, events) and the pages blueprint
renders HTML over the same service calls.  Everything the app shares between requests (where the
data lives, the launcher, the change watcher) is kept on the app object, never in module globals.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from flask import Flask

from dagu.web.context import WebContext

API_PREFIX = "/api/v1"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app for one data dir.  Config keys: DAGU_HOME, DAGS_DIR (default $DAGU_HOME/dags),
    ENVIRON (the environment runs are launched with), EVENT_STREAMS (concurrent SSE streams),
    LOOPBACK_ONLY (the server listens on this host only: with no user, open local mode; see
    web/auth.py), LOGIN_MAX_FAILURES / LOGIN_WINDOW_SEC (the login rate limit)."""
    from dagu.settings import dagu_home
    from dagu.web import api_dags, api_runs, api_search, api_system, api_workers, auth, errors, events, guard, pages
    from dagu.web import json_cache, metrics, openapi

    app = Flask(__name__)
    app.config.update(DAGU_HOME=None, DAGS_DIR=None, ENVIRON=None, EVENT_STREAMS=events.MAX_STREAMS,
                      LOOPBACK_ONLY=True)
    app.json.sort_keys = False  # steps keep the plan's order (in the API and in pages' embedded data)
    app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    app.config.update(dict(config or {}))
    home = os.path.abspath(app.config["DAGU_HOME"] or dagu_home())
    dags_dir = os.path.abspath(app.config["DAGS_DIR"] or os.path.join(home, "dags"))
    environ = dict(app.config["ENVIRON"] if app.config["ENVIRON"] is not None else os.environ)
    app.extensions["dagu"] = WebContext(home, dags_dir, environ)
    errors.init_app(app)
    guard.init_app(app)
    auth.init_app(app, home, loopback_only=bool(app.config["LOOPBACK_ONLY"]))
    events.init_app(app, max_streams=int(app.config["EVENT_STREAMS"]))
    json_cache.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(api_dags.bp, url_prefix=f"{API_PREFIX}/dags")
    app.register_blueprint(api_runs.bp, url_prefix=f"{API_PREFIX}/runs")
    app.register_blueprint(api_system.queues_bp, url_prefix=f"{API_PREFIX}/queues")
    app.register_blueprint(api_system.system_bp, url_prefix=f"{API_PREFIX}/system")
    app.register_blueprint(events.bp, url_prefix=f"{API_PREFIX}/events")
    app.register_blueprint(api_search.bp, url_prefix=f"{API_PREFIX}/search")
    app.register_blueprint(api_workers.bp, url_prefix=f"{API_PREFIX}/workers")
    app.register_blueprint(openapi.bp, url_prefix=API_PREFIX)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(pages.bp)
    return app
