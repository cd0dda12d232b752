"""Run queues: enqueue, dequeue, and the dispatcher that admits queued runs."""
