"""Cron scheduling: fire times, the DAGs directory, tick journal and the scheduler loop."""
