"""Which broker queue a run goes to, and which queues a worker consumes: upstream's subset match.

A DAG's `worker_selector` matches a worker when every key=value of the selector is among the
worker's labels.  A broker queue cannot test "subset of", so a worker consumes one queue per
non-empty subset of its labels, plus the "any" queue for an empty selector; a run is sent to the
one queue named by its whole selector.  A worker with n labels consumes 2**n queues, so labels
are bounded (MAX_LABELS): 6 labels are 64 queues, which one BRPOP on Redis handles easily.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Mapping

MAX_LABELS = 6
ANY_QUEUE = "dagu.any"
QUEUE_PREFIX = "dagu.l."
LOCAL = "local"
_WORD = re.compile(r"[A-Za-z0-9_.\-/:]+")


class RoutingError(ValueError):
    """A label list or selector that cannot be routed; the message says what to change."""


def _word(text: str, what: str) -> str:
    if not _WORD.fullmatch(text):
        raise RoutingError(f"{what} {text!r}: use letters, digits and _ . - / : only")
    return text


def _value(value: Any) -> str:
    """Selector values are compared as strings; YAML's true/false become "true"/"false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_labels(text: str) -> dict[str, str]:
    """`gpu=true,region=eu` as a mapping; at most MAX_LABELS labels."""
    labels: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise RoutingError(f"label {part!r} has no value: write key=value, e.g. gpu=true")
        key, value = _word(key.strip(), "label name"), _word(value.strip(), "label value")
        if key in labels and labels[key] != value:
            raise RoutingError(f"label {key!r} is given twice ({labels[key]!r} and {value!r})")
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise RoutingError(f"{len(labels)} labels: a worker may have at most {MAX_LABELS} (it consumes one "
                           f"broker queue per subset of its labels, 2**n queues); drop some")
    return labels


def queue_for(selector: Mapping[str, Any]) -> str:
    """The one queue a run with this selector is sent to (an empty selector: any worker)."""
    if not selector:
        return ANY_QUEUE
    pairs = sorted((_word(str(k), "selector key"), _word(_value(v), "selector value")) for k, v in selector.items())
    if len(pairs) > MAX_LABELS:
        raise RoutingError(f"worker_selector has {len(pairs)} labels; no worker can have more than {MAX_LABELS}")
    return QUEUE_PREFIX + ",".join(f"{k}={v}" for k, v in pairs)


def worker_queues(labels: Mapping[str, str]) -> list[str]:
    """Every queue a worker with these labels consumes: the "any" queue and one per non-empty subset."""
    if len(labels) > MAX_LABELS:
        raise RoutingError(f"a worker may have at most {MAX_LABELS} labels, not {len(labels)}")
    items = sorted(labels.items())
    queues = [ANY_QUEUE]
    for size in range(1, len(items) + 1):
        for subset in itertools.combinations(items, size):
            queues.append(queue_for(dict(subset)))
    return queues


def selector_of(settings: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The selector of a DAG's settings or a step's options: None when the run stays local
    (no selector, or `worker_selector: local`), else the mapping (possibly empty: any worker)."""
    raw = (settings or {}).get("worker_selector")
    if raw is None or raw == LOCAL:
        return None
    if not isinstance(raw, Mapping):
        raise RoutingError(f"worker_selector {raw!r}: give a mapping of label: value, or local")
    return raw
