"""Tests for spec/dag.schema.json, the JSON Schema of the workflow file.

The compiler turns jsonschema errors into user-facing diagnostics, so besides
"accepts good files, rejects bad ones" these tests pin the shape rules that make
those diagnostics precise: unknown keys are caught, every property explains
itself, and the branches of every anyOf differ by JSON type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from jsonschema.exceptions import best_match

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "spec" / "dag.schema.json"
CASES_DIR = Path("/work/shared/conformance/cases")

# Cases whose shape is invalid on purpose, with the unknown key the schema must report.
# The other validate_* cases (bad cron, cycles, unknown or chain `depends`, duplicate
# ids) are well-shaped: later compiler passes reject them, so the schema accepts them.
INVALID_CASES = {"validate_unknown_key.yaml": "comand"}

# Objects whose keys are open on purpose (extra keys are passed through).
OPEN_OBJECTS = {"#/$defs/harness"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


def _flatten(errors) -> Iterator[jsonschema.ValidationError]:
    for error in errors:
        yield error
        yield from _flatten(error.context or [])


def _load(text: str) -> Any:
    return yaml.safe_load(text)


# --------------------------------------------------------------------------- the schema itself


def test_schema_is_valid_draft_2020_12(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://dagu.dev/schemas/dag.schema.json"
    assert schema["title"] and schema["description"]


def test_schema_file_is_indented_with_two_spaces(schema: dict[str, Any]) -> None:
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    assert text == json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _walk(node: Any, pointer: str, in_condition: bool = False) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Yield (pointer, subschema, inside-an-`if`) for every subschema."""
    if isinstance(node, dict):
        yield pointer, node, in_condition
        for key, value in node.items():
            if key in ("properties", "$defs", "patternProperties"):
                for name, sub in value.items():
                    yield from _walk(sub, f"{pointer}/{key}/{name}", in_condition)
            elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
                for index, sub in enumerate(value):
                    yield from _walk(sub, f"{pointer}/{key}/{index}", in_condition)
            elif key in ("items", "additionalProperties", "then", "else", "not", "contains"):
                yield from _walk(value, f"{pointer}/{key}", in_condition)
            elif key == "if":
                yield from _walk(value, f"{pointer}/if", True)


def test_every_ref_resolves(schema: dict[str, Any]) -> None:
    for pointer, node, _ in _walk(schema, "#"):
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            assert name in schema["$defs"], f"{pointer}: dangling $ref {node['$ref']}"


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    missing = []
    for pointer, node, in_condition in _walk(schema, "#"):
        if in_condition:
            continue
        for name, sub in node.get("properties", {}).items():
            if not isinstance(sub, dict) or not sub.get("description"):
                missing.append(f"{pointer}/properties/{name}")
    for name, sub in schema["$defs"].items():
        if not sub.get("description"):
            missing.append(f"#/$defs/{name}")
    assert not missing


def test_fixed_key_objects_reject_unknown_keys(schema: dict[str, Any]) -> None:
    open_objects = []
    for pointer, node, in_condition in _walk(schema, "#"):
        if in_condition or "properties" not in node or pointer in OPEN_OBJECTS:
            continue
        if node.get("additionalProperties") is not False:
            open_objects.append(pointer)
    assert not open_objects


def test_alternatives_differ_by_json_type(schema: dict[str, Any]) -> None:
    assert '"oneOf"' not in json.dumps(schema), "use anyOf (or if/then/else), not oneOf"
    for pointer, node, in_condition in _walk(schema, "#"):
        if "anyOf" not in node or in_condition:
            continue  # inside an `if`, anyOf combines key tests rather than choosing a type
        seen: set[str] = set()
        for index, branch in enumerate(node["anyOf"]):
            assert "type" in branch, f"{pointer}/anyOf/{index} has no top-level type"
            types = branch["type"] if isinstance(branch["type"], list) else [branch["type"]]
            assert not seen.intersection(types), f"{pointer}/anyOf/{index} repeats type {types}"
            seen.update(types)


# --------------------------------------------------------------------------- conformance cases


def _case_documents() -> list[tuple[str, int, Any]]:
    documents = []
    for path in sorted(CASES_DIR.glob("*.y*ml")):
        with path.open(encoding="utf-8") as handle:
            for index, document in enumerate(yaml.safe_load_all(handle)):
                documents.append((path.name, index, document))
    return documents


CASE_DOCUMENTS = _case_documents()


def test_conformance_cases_were_found() -> None:
    assert len({name for name, _, _ in CASE_DOCUMENTS}) > 50


@pytest.mark.parametrize(
    ("name", "index", "document"),
    [case for case in CASE_DOCUMENTS if case[0] not in INVALID_CASES],
    ids=[f"{name}#{index}" for name, index, _ in CASE_DOCUMENTS if name not in INVALID_CASES],
)
def test_conformance_case_is_valid(validator, name: str, index: int, document: Any) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors


@pytest.mark.parametrize("name", sorted(INVALID_CASES))
def test_invalid_conformance_case_reports_the_bad_key(validator, name: str) -> None:
    bad_key = INVALID_CASES[name]
    documents = [doc for case, _, doc in CASE_DOCUMENTS if case == name]
    assert documents, f"{name} not found"
    errors = list(validator.iter_errors(documents[0]))
    assert errors
    flagged = [
        e for e in _flatten(errors) if e.validator == "additionalProperties" and repr(bad_key) in e.message
    ]
    assert flagged, [e.message for e in _flatten(errors)]
    top = best_match(errors)
    assert top.validator == "additionalProperties" and repr(bad_key) in top.message


# --------------------------------------------------------------------------- hand-written snippets

GOOD = {
    "steps_as_map": """
type: graph
steps:
  build:
    command: make
  test:
    depends: build
    command: make test
""",
    "schedule_start_stop": """
schedule:
  start: ["0 1 * * *"]
  stop: "0 2 * * *"
steps: [echo hi]
""",
    "schedule_restart_typed": """
schedule:
  start: "0 8 * * *"
  restart:
    - expression: "0 12 * * *"
      profile: prod
restart_wait_sec: 30
steps: [echo hi]
""",
    "schedule_typed_entries": """
schedule:
  - "0 9 * * MON-FRI"
  - at: "2026-03-29T09:30:00+09:00"
steps: [echo hi]
""",
    "params_every_list_form": """
params:
  - MODE: slow
  - "COUNT=3"
  - positional
  - name: region
    type: string
    default: us-east-1
    enum: [us-east-1, us-west-2]
    required: true
    description: Where to deploy
  - name: batch
    type: integer
    default: 25
    minimum: 1
steps: [echo hi]
""",
    "params_string_and_map": """
params: "A=1 B=2"
steps:
  - id: child_call
    call: child
    params:
      WHO: parent
      COUNT: 3
""",
    "params_json_schema_forms": """
params:
  type: object
  properties:
    region: {type: string, default: us-east-1}
steps:
  - id: a
    call: child
    params:
      schema: ./params.schema.json
      values: {region: eu}
""",
    "env_forms": """
env:
  - FRUIT: apple
  - "COUNT=3"
  - EMPTY:
steps:
  - id: a
    env: {LEVEL: step, N: 2, ON: true}
    command: echo "$LEVEL"
""",
    "parallel_group_and_shorthand": """
steps:
  - echo setup
  - - echo left
    - id: right
      command: echo right
  - id: teardown
    command: [echo one, echo two]
""",
    "continue_on_and_policies": """
steps:
  - id: a
    command: exit 3
    continue_on: failure
  - id: b
    command: exit 3
    continue_on:
      exit_code: 3
      output: "re:^WARN"
      mark_success: true
    retry_policy:
      limit: 2
      interval_sec: 1
      exit_code: [1, 42]
      backoff: 1.5
      max_interval_sec: 30
    repeat_policy:
      repeat: until
      condition: "`cat state`"
      expected: done
      limit: 5
      backoff: true
""",
    "preconditions_every_form": """
preconditions:
  - condition: "${TARGET}"
    expected: prod
steps:
  - id: a
    preconditions: test -f flag
    command: echo a
  - id: b
    preconditions:
      - test -f flag
      - condition: "`date +%u`"
        expected: "re:[1-5]"
        negate: true
    command: echo b
""",
    "router_step": """
type: graph
steps:
  - id: route
    type: router
    value: ${MODE}
    routes:
      fast: fast_path
      "re:^slow": [slow_path, audit]
  - {id: fast_path, command: echo fast}
  - {id: slow_path, command: echo slow}
  - {id: audit, command: echo audit}
""",
    "custom_step_type": """
step_types:
  greet:
    type: command
    description: Print a greeting
    input_schema:
      type: object
      required: [message]
      properties:
        message: {type: string}
    template:
      command: echo {{ .input.message }}
steps:
  - id: hello
    type: greet
    with:
      message: hello
""",
    "outputs_and_executors": """
steps:
  - id: fetch
    type: http
    with:
      method: GET
      url: https://example.com
    output:
      name: BODY
      key: body
      omit: false
  - id: inspect
    script: echo '{"v":"1.2"}'
    output:
      version:
        from: stdout
        decode: json
        select: .v
      label: "release"
  - id: remote
    type: ssh
    config: {host: example.com, user: deploy}
    command: uptime
    signal_on_stop: SIGINT
    timeout_sec: 60
""",
    "dag_level_integrations": """
name: full
group: ops
labels: {env: prod, tier: 1}
tags: [etl, daily]
type: chain
catchup_window: 1h30m
overlap_policy: latest
skip_if_successful: true
dotenv: [.env.prod]
shell: [bash, -e]
working_dir: /srv
worker_selector: local
max_active_steps: 2
max_active_runs: 1
max_clean_up_time_sec: 10
max_output_size: 2048
queue: batch
retry_policy: {limit: 2, interval_sec: 60, backoff: true}
hist_retention_days: 7
log_output: merged
secrets:
  - {name: DB_PASSWORD, provider: env, key: PROD_DB_PASSWORD}
smtp: {host: smtp.example.com, port: "587", username: u, password: p}
mail_on: {failure: true, success: false}
error_mail: {from: a@example.com, to: [b@example.com, c@example.com], prefix: "[ERR]", attach_logs: true}
info_mail: {from: a@example.com, to: b@example.com}
ssh: {user: deploy, host: example.com, port: 22, key: ~/.ssh/id_ed25519}
s3: {region: us-east-1, bucket: reports}
redis: {host: localhost, port: 6379}
container: {image: "python:3.12", volumes: ["./data:/data"], env: {A: "1"}, pull_policy: true}
llm: {provider: openai, model: gpt-4o, temperature: 0.2}
otel: {enabled: true, endpoint: "http://localhost:4318", timeout: 30s, resource: {service.name: dagu}}
run_config: {disable_param_edit: true}
registry_auths: {ghcr.io: {username: u, password: p}}
handler_on:
  init: {command: echo init}
  wait: {command: echo waiting}
  exit: {command: echo bye}
defaults:
  retry_policy: {limit: 1}
  env: {LOG_LEVEL: info}
steps:
  - id: deploy
    command: ./deploy.sh
    approval:
      prompt: Ship it?
      input: [APPROVED_BY]
      required: [APPROVED_BY]
      rewind_to: deploy
  - id: fan_out
    call: worker
    parallel:
      items: [a, {name: b}]
      max_concurrent: 2
  - id: chat
    type: chat
    messages:
      - {role: user, content: hi}
""",
}

GOOD["upstream_newest_spelling"] = """
consts:
  - region: eu-west-1
  - endpoint: https://${consts.region}.example.com
secrets:
  - API_TOKEN
  - {name: DB_PASSWORD, provider: env, key: PROD_DB_PASSWORD}
steps:
  - id: build
    run: make build
  - id: test
    run: [make test, make lint]
    with: {shell: bash -e}
  - id: ping
    action: http.request
    with: {method: GET, url: "${consts.endpoint}/health"}
  - id: child
    action: dag.run
    with: {dag: child, params: {A: 1}}
handler_on:
  failure:
    run: echo failed
"""

BAD = {
    # name: (yaml, json path of the best-matching error, text the message must contain)
    "camel_case_root_key": (
        "maxActiveSteps: 2\nsteps: [echo hi]\n",
        "$",
        "'maxActiveSteps' was unexpected",
    ),
    "retry_limit_not_integer": (
        "steps:\n  - id: a\n    command: x\n    retry_policy: {limit: \"x\"}\n",
        "$.steps[0].retry_policy.limit",
        "is not of type 'integer'",
    ),
    "unknown_dag_type": ("type: parallel\nsteps: [echo hi]\n", "$.type", "is not one of"),
    "unknown_continue_on_shorthand": (
        "steps:\n  - id: a\n    command: x\n    continue_on: sometimes\n",
        "$.steps[0].continue_on",
        "is not one of",
    ),
    "env_string_without_equals": ("env: [NOVALUE]\nsteps: [echo hi]\n", "$.env[0]", "does not match"),
    "env_entry_with_two_keys": ("env:\n  - {A: 1, B: 2}\nsteps: [echo hi]\n", "$.env[0]", "has too many properties"),
    "unknown_handler": (
        "handler_on:\n  finally: {command: x}\nsteps: [echo hi]\n",
        "$.handler_on",
        "'finally' was unexpected",
    ),
    "unknown_schedule_key": (
        "schedule: {begin: \"0 1 * * *\"}\nsteps: [echo hi]\n",
        "$.schedule",
        "'begin' was unexpected",
    ),
    "bad_duration": ("catchup_window: six hours\nsteps: [echo hi]\n", "$.catchup_window", "does not match"),
    "secret_without_provider": (
        "secrets:\n  - {name: A, key: b}\nsteps: [echo hi]\n",
        "$.secrets[0]",
        "'provider' is a required property",
    ),
    "negative_timeout": ("timeout_sec: -1\nsteps: [echo hi]\n", "$.timeout_sec", "less than the minimum"),
    "precondition_without_condition": (
        "steps:\n  - id: a\n    command: x\n    preconditions:\n      - expected: x\n",
        "$.steps[0].preconditions[0]",
        "'condition' is a required property",
    ),
    "rich_param_with_unknown_key": (
        "params:\n  - name: x\n    typo: 1\nsteps: [echo hi]\n",
        "$.params[0]",
        "'typo' was unexpected",
    ),
    "repeat_mode_unknown": (
        "steps:\n  - id: a\n    command: x\n    repeat_policy: {repeat: sometimes}\n",
        "$.steps[0].repeat_policy.repeat",
        "is not one of",
    ),
    "step_camel_case_key": (
        "steps:\n  - id: a\n    command: x\n    continueOn: {failure: true}\n",
        "$.steps[0]",
        "'continueOn' was unexpected",
    ),
    "approval_unknown_key": (
        "steps:\n  - id: a\n    command: x\n    approval: {prompt: ok, approvers: [me]}\n",
        "$.steps[0].approval",
        "'approvers' was unexpected",
    ),
    "steps_missing": ("name: nothing\n", "$", "'steps' is a required property"),
    "steps_as_string": ("steps: echo hi\n", "$.steps", "is not valid under any of the given schemas"),
    "run_as_object": ("steps:\n  - run: {type: shell}\n", "$.steps[0].run", "is not valid under any of the given schemas"),
    "consts_as_mapping": ("consts: {a: 1}\nsteps: [echo hi]\n", "$.consts", "is not of type 'array'"),
    "const_with_two_names": ("consts: [{a: 1, b: 2}]\nsteps: [echo hi]\n", "$.consts[0]", "has too many properties"),
    "secret_name_with_dash": ("secrets: [API-TOKEN]\nsteps: [echo hi]\n", "$.secrets[0]", "does not match"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_snippet_is_accepted(validator, name: str) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(_load(GOOD[name]))]
    assert not errors


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_snippet_is_rejected_at_the_right_place(validator, name: str) -> None:
    text, path, fragment = BAD[name]
    errors = list(validator.iter_errors(_load(text)))
    assert errors, "expected the snippet to be rejected"
    top = best_match(errors)
    assert (top.json_path, fragment in top.message) == (path, True), top.message
