"""What a record read from disk must look like, checked field by field before it is used.

Run files are plain JSON that people, crashes and other tools can change: a
`status.json` with `"seq": null` or a journal line whose `seq` is a string
must be reported as *that record* being wrong (`path:line: field 'seq': ...`)
and skipped or rebuilt, never reach the fold (`state.apply`) or a sort as a
wrong-typed value that raises far away and hides every other run.

One small explicit validator per record kind, standard library only (the
runtime must not load jsonschema): a table of fields and the types they take.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dagu.store.state import Attempt, RunStatus, StepState

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any


class RecordError(ValueError):
    """One record is not what the state format says; the message names the field."""


Check = Callable[[object], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _opt(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _list_of(check: Check) -> Check:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)


def _str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())


INT, NUM, STR, BOOL, DICT = _is_int, _is_num, _is_str, _is_bool, _is_dict
OPT_INT, OPT_NUM, OPT_STR, OPT_DICT = _opt(_is_int), _opt(_is_num), _opt(_is_str), _opt(_is_dict)
STRS, PAIRS, DICTS = _list_of(_is_str), _list_of(_pair), _list_of(_is_dict)
OPT_PAIRS, STR_MAP = _opt(PAIRS), _str_map
ANY: Check = lambda v: True  # noqa: E731 - kept as is (e.g. a captured output's JSON value)

_EXPECTED = {INT: "an integer", NUM: "a number", STR: "a string", BOOL: "true or false", DICT: "an object",
             OPT_INT: "an integer or null", OPT_NUM: "a number or null", OPT_STR: "a string or null",
             OPT_DICT: "an object or null", STRS: "a list of strings", PAIRS: "a list of [string, string] pairs",
             OPT_PAIRS: "a list of [string, string] pairs or null", DICTS: "a list of objects",
             STR_MAP: "an object of strings"}


def _describe(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_fields(record: Mapping[str, Any], required: Mapping[str, Check], optional: Mapping[str, Check],
                 where: str = "") -> None:
    """Raise RecordError for the first field that is missing or has the wrong type."""
    for name, check in (*required.items(), *optional.items()):
        if name not in record:
            if name in required:
                raise RecordError(f"{where}field {name!r} is missing")
        elif not check(record[name]):
            expected = _EXPECTED.get(check, "another type")
            raise RecordError(f"{where}field {name!r}: expected {expected}, got {_describe(record[name])}")


# -- journal events (spec/state-format.md, "Journal") -------------------------

_STEP = {"step": STR}
_STEP_OPT = {"name": STR, "handler": OPT_STR}
_EVENT_FIELDS: dict[str, tuple[dict[str, Check], dict[str, Check]]] = {
    "queued": ({}, {"queue": OPT_STR, "params": STRS}),
    "run_started": ({}, {"pid": OPT_INT, "host": OPT_STR, "params": STRS, "parent": OPT_STR, "retry": BOOL,
                         "resume": BOOL, "steps": PAIRS}),
    "step_reset": (_STEP, _STEP_OPT),
    "step_started": ({**_STEP, "attempt": INT}, {**_STEP_OPT, "pid": OPT_INT, "stdout": OPT_STR,
                                                 "stderr": OPT_STR}),
    "step_finished": ({**_STEP, "status": STR}, {**_STEP_OPT, "attempt": OPT_INT, "reason": OPT_STR,
                                                 "exit_code": OPT_INT, "signal": OPT_STR, "error": OPT_STR,
                                                 "usage": OPT_DICT, "output": ANY, "output_name": OPT_STR,
                                                 "outputs": OPT_DICT, "tolerated": BOOL,
                                                 "children": OPT_PAIRS}),
    "step_skipped": (_STEP, {**_STEP_OPT, "reason": OPT_STR, "tolerated": BOOL}),
    "approved": (_STEP, {**_STEP_OPT, "by": OPT_STR, "inputs": OPT_DICT, "reason": OPT_STR}),
    "rejected": (_STEP, {**_STEP_OPT, "by": OPT_STR, "inputs": OPT_DICT, "reason": OPT_STR}),
    "pushed_back": ({**_STEP, "iteration": INT, "rewind_to": STR, "reset": STRS},
                    {"by": OPT_STR, "inputs": OPT_DICT, "reason": OPT_STR}),
    "output": ({"name": STR, "value": STR}, {"step": OPT_STR}),
    "run_finished": ({"status": STR}, {"error": OPT_STR}),
    "interrupted": ({}, {"reason": OPT_STR}),
    "retry_scheduled": ({"attempt": INT}, {"due_at": OPT_NUM, "reason": OPT_STR}),
    "retry_refused": ({"attempt": INT}, {"reason": OPT_STR}),
}


def check_event(event: Any) -> dict[str, Any]:
    """The event if every field the fold reads has its type; RecordError otherwise.

    Kinds this version does not know are kept (a newer dagu wrote them; the fold ignores them)."""
    if not isinstance(event, dict):
        raise RecordError(f"not a JSON object but {type(event).__name__}")
    check_fields(event, {"ev": STR, "seq": INT, "at": NUM}, {})
    if event["seq"] < 0:
        raise RecordError(f"field 'seq': expected a positive integer, got {event['seq']}")
    required, optional = _EVENT_FIELDS.get(event["ev"], ({}, {}))
    check_fields(event, required, optional)
    return event


# -- the status snapshot (spec/state-format.md, "Snapshot") --------------------

_ATTEMPT = ({"number": INT, "started_at": NUM},
            {"pid": OPT_INT, "finished_at": OPT_NUM, "exit_code": OPT_INT, "signal": OPT_STR, "error": OPT_STR,
             "stdout": OPT_STR, "stderr": OPT_STR, "usage": OPT_DICT, "children": OPT_PAIRS})
_STEP_STATE = ({"id": STR, "name": STR},
               {"status": STR, "attempts": DICTS, "output": ANY, "output_name": OPT_STR,
                "outputs": OPT_DICT, "reason": OPT_STR, "handler": OPT_STR, "tolerated": BOOL,
                "approval": OPT_DICT})
_RUN = ({"dag": STR, "run_id": STR},
        {"status": STR, "started_at": OPT_NUM, "finished_at": OPT_NUM, "params": STRS, "pid": OPT_INT,
         "host": OPT_STR, "parent": OPT_STR, "error": OPT_STR, "interrupted": BOOL, "steps": DICT,
         "handlers": DICT, "outputs": STR_MAP, "pushback": OPT_DICT, "retries": DICTS, "seq": INT})


def _known_only(record: Mapping[str, Any], fields: tuple[dict, dict], where: str) -> dict[str, Any]:
    unknown = sorted(set(record) - set(fields[0]) - set(fields[1]))
    if unknown:
        raise RecordError(f"{where}unknown field {unknown[0]!r}")
    return dict(record)


def _step_state(key: str, data: Any, where: str) -> StepState:
    where = f"{where}{key!r}: "
    if not isinstance(data, dict):
        raise RecordError(f"{where}expected an object, got {_describe(data)}")
    check_fields(data, *_STEP_STATE, where=where)
    attempts = []
    for n, raw in enumerate(data.get("attempts", [])):
        check_fields(raw, *_ATTEMPT, where=f"{where}attempt {n + 1}: ")
        attempts.append(Attempt(**_known_only(raw, _ATTEMPT, f"{where}attempt {n + 1}: ")))
    fields = _known_only(data, _STEP_STATE, where)
    fields["attempts"] = attempts
    return StepState(**fields)


def status_from_record(data: Any) -> RunStatus:
    """A RunStatus from a snapshot's JSON (without its `format`), every field checked; RecordError
    names the first one that is wrong."""
    if not isinstance(data, dict):
        raise RecordError(f"not a JSON object but {type(data).__name__}")
    check_fields(data, *_RUN)
    fields = _known_only(data, _RUN, "")
    fields["steps"] = {k: _step_state(k, v, "step ") for k, v in data.get("steps", {}).items()}
    fields["handlers"] = {k: _step_state(k, v, "handler ") for k, v in data.get("handlers", {}).items()}
    fields["params"] = list(data.get("params", []))
    fields["outputs"] = dict(data.get("outputs", {}))
    return RunStatus(**fields)
