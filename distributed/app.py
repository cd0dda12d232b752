"""The Celery app: built only when a broker is configured and a run goes to, or a worker takes
from, the broker.  celery is imported inside `make_app`, never at module level.

The settings are the "nothing lost, nothing doubled" contract (spec/distributed.md):

- `task_acks_late=False`: a message is acknowledged when its run is taken, so the broker never
  hands a running run to another worker, however long it runs (acks-late with a visibility
  timeout re-delivers long runs: measured upstream of this design);
- `worker_prefetch_multiplier=1` and `worker_disable_prefetch=True`: a worker fetches a message
  only when it has a free slot, so waiting work stays in the broker, where any worker (or this
  one, restarted) finds it; a worker that dies holds nothing it has not started;
- a short visibility timeout: a message fetched by a worker that died in the instant before it
  acknowledged it comes back to the queue within this bound.  A message delivered twice is
  harmless: the claim file (records.claim) drops the second delivery.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

TASK = "dagu.run"
ENV_BROKER = "DAGU_BROKER"
ENV_VISIBILITY = "DAGU_BROKER_VISIBILITY_SEC"
DEFAULT_VISIBILITY_SEC = 60.0


def broker_url(environ: Mapping[str, str]) -> str | None:
    """The configured broker (DAGU_BROKER, e.g. redis://127.0.0.1:6379/0), or None: run locally."""
    return environ.get(ENV_BROKER) or None


def safe_url(url: str) -> str:
    """The broker URL without its password, for logs and messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


class BrokerMissing(RuntimeError):
    """Celery is not installed: the message says how to install it."""


def make_app(broker: str, environ: Mapping[str, str] = os.environ) -> Any:
    """A Celery app on `broker` with the delivery settings above (no result backend: the runs'
    own records in the data dir are the results)."""
    try:
        from celery import Celery
    except ImportError:
        raise BrokerMissing("distributed runs need Celery: pip install 'dagu[distributed]'") from None
    visibility = float(environ.get(ENV_VISIBILITY) or DEFAULT_VISIBILITY_SEC)
    app = Celery("dagu", broker=broker, set_as_current=False)
    app.conf.update(
        task_acks_late=False,
        task_acks_on_failure_or_timeout=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="dagu.any",
        task_create_missing_queues=True,
        broker_transport_options={"visibility_timeout": visibility},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_enable_remote_control=True,
    )
    return app


def send(app: Any, queue: str, message: dict[str, Any]) -> None:
    """Publish one run message to one queue (it waits there until a matching worker takes it)."""
    app.send_task(TASK, args=[message], queue=queue, routing_key=queue, ignore_result=True)
