"""Distributed execution: runs sent to `dagu worker` processes through Celery with a Redis broker.

Nothing here imports celery at module level: `routing.py` and `records.py` are plain Python,
and `app.py` imports celery inside its functions, which only run when a broker is configured
(DAGU_BROKER) and a run is actually routed to a worker.  See spec/distributed.md.
"""
