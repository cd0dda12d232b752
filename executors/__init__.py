"""Step types: one module per type, listed in executors.catalog.

This package imports nothing on purpose: the compiler reads
`dagu.executors.catalog`, and that must load neither an executor nor the
engine.  The engine imports a type's module (catalog `module`) only when a step
of that type runs, so a run of plain commands never loads an HTTP or SQL client.
"""
