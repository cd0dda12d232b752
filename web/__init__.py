"""The web UI and its JSON API (`dagu server`): Flask blueprints over the service layer.

Importing this package loads nothing heavy; Flask is imported by `web.app` and the WSGI server
by `web.server`, both only on the way to `dagu server`, so `dagu compile` never pays for them.
"""
