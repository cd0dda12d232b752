"""Upstream's `action: NAME` + `with:` steps, rewritten into our v2 step keys.

Upstream Dagu's newest spelling names what a step does with `action:` and
gives its input under `with:`; our v2 spelling (and the plan) use `type:`
plus `command`/`script`/`call`/`value`/`routes`/... and `with:` for the rest.
Each built-in action below says how its `with:` is split, following upstream's
own loader (internal/core/spec/step_v2.go), so both spellings compile to the
same plan.  A name that is one of our step types (`action: docker`) or a
`step_types:` entry is that type, with `with:` as its input.
"""

from __future__ import annotations

import json
from dataclasses import field
from collections.abc import Callable

from dagu.spec.records import dataclass
from dagu.compiler.step_types import is_known

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
else:
    Any = object  # the aliases below are built at run time; for type checkers this is typing.Any

Rel = tuple[Any, ...]  # a place inside the step, e.g. ("with", "url")
Entry = tuple[str, Any, Rel]  # (step key, value, where the value is in the file)


@dataclass
class ActionProblem(Exception):
    """An action step that cannot be rewritten: a catalogue code, its place, its fields."""

    code: str
    rel: Rel
    fields: dict[str, Any] = field(default_factory=dict)


def _need(with_: dict[str, Any], key: str, text: bool = False) -> Any:
    value = with_.get(key)
    if key not in with_ or (text and (not isinstance(value, str) or not value.strip())):
        if key in with_:
            raise ActionProblem("wrong-type", ("with", key), {"expected": "a non-empty string", "key": key})
        raise ActionProblem("missing-key", ("with",), {"key": key})
    return value


def _rest(with_: dict[str, Any], *taken: str) -> list[Entry]:
    rest = {k: v for k, v in with_.items() if k not in taken}
    return [("with", rest, ("with",))] if rest else []


def _only(with_: dict[str, Any], action: str, allowed: tuple[str, ...]) -> None:
    for key in with_:
        if key not in allowed:
            raise ActionProblem("unknown-key", ("with", key), {
                "key": key, "notes": [f"{action} takes only {', '.join(allowed)} under with"]})


def _typed(step_type: str) -> Callable[[dict[str, Any], str], list[Entry]]:
    def normalize(with_: dict[str, Any], action: str) -> list[Entry]:
        return [("type", step_type, ("action",)), *_rest(with_)]
    return normalize


def _command_from(step_type: str, key: str, required: bool) -> Callable[[dict[str, Any], str], list[Entry]]:
    def normalize(with_: dict[str, Any], action: str) -> list[Entry]:
        entries: list[Entry] = [("type", step_type, ("action",))]
        if required:
            _need(with_, key)
        if key in with_:
            entries.append(("command", with_[key], ("with", key)))
        return entries + _rest(with_, key)
    return normalize


def _operation(step_type: str, operation: str) -> Callable[[dict[str, Any], str], list[Entry]]:
    def normalize(with_: dict[str, Any], action: str) -> list[Entry]:
        return [("type", step_type, ("action",)), ("command", operation, ("action",)), *_rest(with_)]
    return normalize


def _importing(step_type: str) -> Callable[[dict[str, Any], str], list[Entry]]:
    def normalize(with_: dict[str, Any], action: str) -> list[Entry]:
        _need(with_, "import")
        return [("type", step_type, ("action",)), *_rest(with_)]
    return normalize


def _direction(direction: str) -> Callable[[dict[str, Any], str], list[Entry]]:
    def normalize(with_: dict[str, Any], action: str) -> list[Entry]:
        given = with_.get("direction", direction)
        if given != direction:
            raise ActionProblem("invalid-value", ("with", "direction"), {
                "allowed": json.dumps(direction), "value": json.dumps(given)})
        return [("type", "sftp", ("action",)), ("with", {**with_, "direction": direction}, ("with",))]
    return normalize


def _http(with_: dict[str, Any], action: str) -> list[Entry]:
    _need(with_, "method", text=True)
    _need(with_, "url", text=True)
    return [("type", "http", ("action",)), *_rest(with_)]


def _dag_run(with_: dict[str, Any], action: str) -> list[Entry]:
    _need(with_, "dag", text=True)
    _only(with_, action, ("dag", "params"))
    entries: list[Entry] = [("call", with_["dag"].strip(), ("with", "dag"))]
    if "params" in with_:
        entries.append(("params", with_["params"], ("with", "params")))
    return entries


def _exec(with_: dict[str, Any], action: str) -> list[Entry]:
    _need(with_, "command", text=True)
    _only(with_, action, ("command", "args"))
    return [("exec", dict(with_), ("with",))]


def _jq(with_: dict[str, Any], action: str) -> list[Entry]:
    _need(with_, "filter")
    entries: list[Entry] = [("type", "jq", ("action",)), ("command", with_["filter"], ("with", "filter"))]
    if "data" in with_:
        if "input" in with_:
            raise ActionProblem("conflicting-keys", ("with",), {"first": "data", "second": "input"})
        data = with_["data"]
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        entries.append(("script", text, ("with", "data")))
    return entries + _rest(with_, "filter", "data")


def _router(with_: dict[str, Any], action: str) -> list[Entry]:
    _need(with_, "value", text=True)
    _need(with_, "routes")
    _only(with_, action, ("value", "routes"))
    return [("type", "router", ("action",)), ("value", with_["value"], ("with", "value")),
            ("routes", with_["routes"], ("with", "routes"))]


def _messages(with_: dict[str, Any]) -> tuple[Entry | None, tuple[str, ...]]:
    if "prompt" in with_:
        _need(with_, "prompt", text=True)
        return ("messages", [{"role": "user", "content": with_["prompt"]}], ("with", "prompt")), ("prompt",)
    if "messages" in with_:
        messages = with_["messages"]
        if not isinstance(messages, list) or not messages:
            raise ActionProblem("wrong-type", ("with", "messages"), {"expected": "a non-empty list", "key": "messages"})
        return ("messages", messages, ("with", "messages")), ("messages",)
    return None, ()


def _chat(with_: dict[str, Any], action: str) -> list[Entry]:
    messages, taken = _messages(with_)
    if messages is None:
        raise ActionProblem("missing-key", ("with",), {
            "key": "prompt", "notes": [f"{action} needs with.prompt (one user message) or with.messages"]})
    rest = {k: v for k, v in with_.items() if k not in taken}
    return [("type", "chat", ("action",)), messages] + ([("llm", rest, ("with",))] if rest else [])


def _agent(with_: dict[str, Any], action: str) -> list[Entry]:
    messages, taken = _messages(with_)
    if messages is None:
        if "task" not in with_:
            raise ActionProblem("missing-key", ("with",), {
                "key": "task", "notes": [f"{action} needs with.task, with.prompt or with.messages"]})
        _need(with_, "task", text=True)
        messages, taken = ("messages", [{"role": "user", "content": with_["task"]}], ("with", "task")), ("task",)
    rest = {k: v for k, v in with_.items() if k not in taken}
    return [("type", "agent", ("action",)), messages] + ([("agent", rest, ("with",))] if rest else [])


def _harness(with_: dict[str, Any], action: str) -> list[Entry]:
    _need(with_, "prompt")
    entries: list[Entry] = [("type", "harness", ("action",)), ("command", with_["prompt"], ("with", "prompt"))]
    if "stdin" in with_:
        if not isinstance(with_["stdin"], str):
            raise ActionProblem("wrong-type", ("with", "stdin"), {"expected": "a string", "key": "stdin"})
        entries.append(("script", with_["stdin"], ("with", "stdin")))
    return entries + _rest(with_, "prompt", "stdin")


def _template(with_: dict[str, Any], action: str) -> list[Entry]:
    _need(with_, "template", text=True)
    return [("type", "template", ("action",)), ("script", with_["template"], ("with", "template")),
            *_rest(with_, "template")]


def _human_task(with_: dict[str, Any], action: str) -> list[Entry]:
    """A person's decision: the approval step (prompt, input, required), checked by its schema."""
    _need(with_, "prompt", text=True)
    return [("type", "approval", ("action",)), ("with", dict(with_), ("with",))]


def _noop(with_: dict[str, Any], action: str) -> list[Entry]:
    if with_:
        raise ActionProblem("unknown-key", ("with", next(iter(with_))), {
            "key": next(iter(with_)), "notes": ["noop takes no input: remove with:"]})
    return [("type", "noop", ("action",))]


def _redis(operation: str) -> Callable[[dict[str, Any], str], list[Entry]]:
    def normalize(with_: dict[str, Any], action: str) -> list[Entry]:
        given = with_.get("command")
        if given is not None and str(given).upper() != operation.upper():
            raise ActionProblem("invalid-value", ("with", "command"), {
                "allowed": json.dumps(operation.upper()), "value": json.dumps(given)})
        return [("type", "redis", ("action",)), ("with", {**with_, "command": operation.upper()}, ("with",))]
    return normalize


ACTIONS: dict[str, Callable[[dict[str, Any], str], list[Entry]]] = {
    "agent.run": _agent,
    "archive.create": _operation("archive", "create"),
    "archive.extract": _operation("archive", "extract"),
    "archive.list": _operation("archive", "list"),
    "chat.completion": _chat,
    "container.run": _command_from("container", "command", required=False),
    "dag.run": _dag_run,
    "docker.run": _command_from("docker", "command", required=False),
    "exec": _exec,
    "harness.run": _harness,
    "http.request": _http,
    "human.task": _human_task,
    "jq.filter": _jq,
    "k8s.run": _command_from("kubernetes", "command", required=False),
    "kubernetes.run": _command_from("kubernetes", "command", required=False),
    "mail.send": _typed("mail"),
    "noop": _noop,
    "postgres.import": _importing("postgres"),
    "postgres.query": _command_from("postgres", "query", required=True),
    "router.route": _router,
    "s3.delete": _operation("s3", "delete"),
    "s3.download": _operation("s3", "download"),
    "s3.list": _operation("s3", "list"),
    "s3.upload": _operation("s3", "upload"),
    "sftp.download": _direction("download"),
    "sftp.upload": _direction("upload"),
    "sqlite.import": _importing("sqlite"),
    "sqlite.query": _command_from("sqlite", "query", required=True),
    "ssh.run": _command_from("ssh", "command", required=True),
    "template.render": _template,
}

# Upstream's built-in actions this dagu has no step type for yet: named in the error.
UPSTREAM_ONLY = frozenset({
    "artifact.list", "artifact.read", "artifact.write", "dag.enqueue", "data.convert", "data.pick",
    "decision.evaluate", "file.copy", "file.delete", "file.list", "file.mkdir", "file.move", "file.read",
    "file.stat", "file.write", "git.checkout", "js.run", "log.write", "outputs.write", "state.delete",
    "state.diff", "state.get", "state.list", "state.set", "wait.duration", "wait.file", "wait.http",
    "wait.until",
})

# Step types that need keys of their own (call, routes, ...) and so are not actions by themselves.
_NOT_ACTIONS = frozenset({"command", "shell", "call", "dag", "subworkflow", "parallel", "router"})


def supported_actions() -> list[str]:
    return sorted(ACTIONS) + ["redis.<operation>"]


def normalize_action(action: str, with_: dict[str, Any], custom_types: frozenset[str]) -> list[Entry] | None:
    """Step keys for `action: NAME` with input `with_`; None when the action is unknown."""
    if action in custom_types:
        return [("type", action, ("action",)), *_rest(with_)]
    if action in ACTIONS:
        return ACTIONS[action](with_, action)
    if action.startswith("redis.") and len(action) > 6:
        return _redis(action[6:])(with_, action)
    if is_known(action.lower()) and action.lower() not in _NOT_ACTIONS:
        return [("type", action.lower(), ("action",)), *_rest(with_)]
    return None
