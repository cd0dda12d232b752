"""JSON of the DAG list, encoded again only for the DAGs whose summary changed.

Encoding 100 DAG summaries with their 20 recent runs each (~270 kB, 4,000 floats) costs 5 ms,
half of the list's budget.  `overview.dag_summaries` returns the very same dict for a DAG
while nothing it shows changed, so its encoded text can be kept by the dict's identity; the
dict itself is held here too, so its id cannot be reused by another object meanwhile.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import Flask, Response, current_app


class FragmentCache:
    """Encoded JSON per item (by identity), for one app; safe to share between request threads."""

    def __init__(self, ensure_ascii: bool = True) -> None:
        self._kept: dict[int, tuple[Any, bytes]] = {}
        self._lock = threading.Lock()
        self.ensure_ascii = ensure_ascii

    def encode(self, item: Any) -> bytes:
        with self._lock:
            hit = self._kept.get(id(item))
        if hit is not None and hit[0] is item:
            return hit[1]
        text = json.dumps(item, separators=(",", ":"), ensure_ascii=self.ensure_ascii).encode("utf-8")
        with self._lock:
            self._kept[id(item)] = (item, text)
        return text

    def response(self, key: str, items: list[Any]) -> Response:
        """`{key: [items...]}` as a JSON response; entries of items no longer listed are dropped."""
        parts = [self.encode(item) for item in items]
        with self._lock:
            if len(self._kept) > 2 * len(items) + 16:
                wanted = {id(item) for item in items}
                self._kept = {k: v for k, v in self._kept.items() if k in wanted}
        body = b"{" + json.dumps(key).encode() + b":[" + b",".join(parts) + b"]}\n"
        return current_app.response_class(body, mimetype="application/json")


def init_app(app: Flask) -> None:
    app.extensions["dagu.json"] = FragmentCache(ensure_ascii=bool(getattr(app.json, "ensure_ascii", True)))


def fragments() -> FragmentCache:
    return current_app.extensions["dagu.json"]
