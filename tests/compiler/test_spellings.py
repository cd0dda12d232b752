"""Both v2 spellings compile to one plan; 1.x spellings are errors with their fix.

Upstream's newest spelling (`run:`, `action:` + `with:`, `consts:`, `secrets:`
as names) is rewritten into this project's spelling before the checks, so a
workflow written either way gives the same plan.  The pairs under
corpus/pairs/ are whole workflows; the table below is one step per action.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
import pytest
from plan_compare import (
    IgnoringLegacyAndUnsupported, IgnoringUnsupported, comparable, messages, unsupported,
)

from dagu.compiler.actions import ACTIONS, supported_actions
from dagu.compiler.diagnostics import Reporter
from dagu.compiler.pipeline import CompileResult, compile_file

PAIRS = Path(__file__).parent / "corpus" / "pairs"


def compile_text(tmp_path: Path, text: str, name: str = "flow.yaml", reporter: Reporter | None = None) -> CompileResult:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return compile_file(str(path), reporter)


@pytest.mark.parametrize("pair", sorted(p.name for p in PAIRS.iterdir() if p.is_dir()))
def test_both_v2_spellings_compile_to_the_same_plan(pair: str) -> None:
    """Both spellings refuse the same steps in this build, and mean the same plan once every type runs."""
    refused = [len(unsupported(compile_file(str(PAIRS / pair / f"{s}.yaml")))) for s in ("newest", "ours")]
    assert refused[0] == refused[1] > 0
    newest = compile_file(str(PAIRS / pair / "newest.yaml"), IgnoringUnsupported())
    ours = compile_file(str(PAIRS / pair / "ours.yaml"), IgnoringUnsupported())
    assert newest.ok and ours.ok, messages(newest) + messages(ours)
    assert not newest.diagnostics and not ours.diagnostics
    assert comparable(newest.plan) == comparable(ours.plan)


def test_the_pairs_use_every_built_in_action() -> None:
    used = set()
    for path in PAIRS.glob("*/newest.yaml"):
        used.update(line.split("action:", 1)[1].strip() for line in path.read_text().splitlines()
                    if line.strip().startswith("action:"))
    missing = set(ACTIONS) - used - {"k8s.run", "s3.delete", "s3.download", "sftp.download", "archive.extract",
                                     "archive.list", "postgres.query", "sqlite.import", "noop", "kubernetes.run"}
    assert not missing


# One step in upstream's newest spelling, and the same step in ours.
STEPS = {
    "run_string": ("run: echo hi", "command: echo hi"),
    "run_list": ("run: [make, make test]", "command: [make, make test]"),
    "run_multiline": ("run: |\n  set -e\n  echo a", "command: |\n  set -e\n  echo a"),
    "run_with_shell": ("run: echo hi\nwith: {shell: bash -e, shell_args: [-x]}",
                       "command: echo hi\nshell: bash -e\nshell_args: [-x]"),
    "http": ("action: http.request\nwith: {method: GET, url: 'https://x'}",
             "type: http\nwith: {method: GET, url: 'https://x'}"),
    "ssh": ("action: ssh.run\nwith: {host: h, command: uptime}", "type: ssh\ncommand: uptime\nwith: {host: h}"),
    "docker_no_command": ("action: docker.run\nwith: {image: a}", "type: docker\nwith: {image: a}"),
    "kubernetes": ("action: kubernetes.run\nwith: {image: a}", "type: kubernetes\nwith: {image: a}"),
    "postgres": ("action: postgres.query\nwith: {dsn: d, query: SELECT 1}", "type: postgres\ncommand: SELECT 1\nwith: {dsn: d}"),
    "sqlite_import": ("action: sqlite.import\nwith: {dsn: d, import: {input_file: f.csv, table: t}}",
                      "type: sqlite\nwith: {dsn: d, import: {input_file: f.csv, table: t}}"),
    "jq_string_data": ("action: jq.filter\nwith: {filter: .a, data: '{\"a\": 1}'}",
                       "type: jq\ncommand: .a\nscript: '{\"a\": 1}'"),
    "jq_input": ("action: jq.filter\nwith: {filter: .a, input: /tmp/in.json}",
                 "type: jq\ncommand: .a\nwith: {input: /tmp/in.json}"),
    "s3_delete": ("action: s3.delete\nwith: {bucket: b}", "type: s3\ncommand: delete\nwith: {bucket: b}"),
    "s3_download": ("action: s3.download\nwith: {bucket: b}", "type: s3\ncommand: download\nwith: {bucket: b}"),
    "sftp_download": ("action: sftp.download\nwith: {host: h, source: a, destination: b}",
                      "type: sftp\nwith: {host: h, source: a, destination: b, direction: download}"),
    "archive_extract": ("action: archive.extract\nwith: {source: a}", "type: archive\ncommand: extract\nwith: {source: a}"),
    "redis_get": ("action: redis.get\nwith: {key: k}", "type: redis\nwith: {key: k, command: GET}"),
    "noop": ("action: noop", "type: noop"),
    "chat_prompt_only": ("action: chat.completion\nwith: {prompt: hi}",
                         "type: chat\nmessages: [{role: user, content: hi}]"),
    "agent_prompt": ("action: agent.run\nwith: {prompt: go}", "type: agent\nmessages: [{role: user, content: go}]"),
    "step_type_name": ("action: ssh\nwith: {host: h}", "type: ssh\nwith: {host: h}"),
    "call": ("action: dag.run\nwith: {dag: child}", "call: child"),
    "call_params_string": ("action: dag.run\nwith: {dag: child, params: 'A=1 B=2'}", "call: child\nparams: 'A=1 B=2'"),
}


def _flow(step: str) -> str:
    body = textwrap.indent(step, "    ")[4:]
    return f"name: flow\ntype: graph\nsteps:\n  - id: s\n    {body}\n---\nname: child\nparams: A=0 B=0\nsteps:\n  - echo child\n"


@pytest.mark.parametrize("case", sorted(STEPS))
def test_each_action_is_the_step_our_spelling_writes(tmp_path: Path, case: str) -> None:
    newest, ours = STEPS[case]
    a = compile_text(tmp_path, _flow(newest), "newest.yaml", IgnoringUnsupported())
    b = compile_text(tmp_path, _flow(ours), "ours.yaml", IgnoringUnsupported())
    assert a.ok and b.ok, messages(a) + messages(b)
    assert not a.diagnostics and not b.diagnostics, messages(a) + messages(b)
    assert comparable(a.plan) == comparable(b.plan)


def test_unknown_action_names_itself_its_place_and_the_supported_ones(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        steps:
          - id: w
            action: wait.http
            with: {url: 'https://x'}
        """)
    (diag,) = result.diagnostics
    assert (diag.line, diag.col, diag.code) == (3, 13, "unknown-action")
    assert diag.message == "unknown action 'wait.http'"
    assert any("http.request" in n and "dag.run" in n for n in diag.notes)
    assert all("valid under" not in n and "{" not in n for n in diag.notes)  # never a schema dump


def test_supported_actions_are_documented_in_the_schema() -> None:
    schema = json.loads((Path(__file__).parents[2] / "spec" / "dag.schema.json").read_text(encoding="utf-8"))
    described = schema["$defs"]["step"]["properties"]["action"]["description"]
    for name in supported_actions():
        assert name in described, name
    assert "run" in schema["$defs"]["step"]["properties"]
    assert "consts" in schema["properties"]


def test_action_input_problems_are_located(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        type: graph
        steps:
          - id: a
            action: dag.run
            with: {dag: child, retries: 2}
          - id: b
            action: router.route
            with:
              routes: {x: [a]}
          - id: c
            action: jq.filter
            with: {filter: ., data: x, input: y}
          - id: d
            action: noop
            with: {x: 1}
          - id: e
            action: redis.get
            with: {command: SET}
        """)
    found = {(d.line, d.code) for d in result.diagnostics}
    assert {(5, "unknown-key"), (9, "missing-key"), (12, "conflicting-keys"), (15, "unknown-key"),
            (18, "invalid-value")} <= found, messages(result)


def test_run_and_action_conflict_with_our_execution_keys(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        steps:
          - id: a
            run: echo a
            script: echo b
          - id: b
            action: http.request
            type: http
            with: {method: GET, url: x}
          - id: c
            run: echo c
            action: noop
        """)
    assert [(d.line, d.code) for d in result.diagnostics] == [
        (4, "conflicting-keys"), (7, "conflicting-keys"), (11, "conflicting-keys")], messages(result)


def test_consts_are_inlined_and_unknown_ones_are_errors(tmp_path: Path) -> None:
    result = compile_text(tmp_path, r"""
        consts:
          - host: db.internal
          - port: 5432
          - on: true
          - url: postgres://${consts.host}:${consts.port}
        steps:
          - id: a
            run: psql ${consts.url} --flag=${consts.on} \${consts.host} $consts.host
          - id: b
            action: http.request
            with: {method: GET, url: "https://${consts.host}/x"}
        """, reporter=IgnoringUnsupported())
    assert result.ok, messages(result)
    dag = result.plan.main
    assert dag.steps[0].command == (["psql postgres://db.internal:5432 --flag=true ", {"esc": "$"},
                                     "{consts.host} ", {"var": "consts", "path": []}, ".host"],)
    assert dag.steps[1].config["url"] == "https://db.internal/x"
    assert "consts" not in dag.settings
    bad = compile_text(tmp_path, """\
        consts:
          - host: x
        steps:
          - run: echo ${consts.hots}
        """, "bad.yaml")
    (diag,) = bad.diagnostics
    assert (diag.line, diag.col, diag.code, diag.notes) == (4, 15, "unknown-const", ("did you mean 'host'?",))


def test_env_and_params_namespaces_name_the_plain_variable(tmp_path: Path) -> None:
    newest = compile_text(tmp_path, """\
        name: flow
        params: [{name: who, default: you}]
        env: [{GREETING: hello}]
        steps:
          - run: echo "${env.GREETING} ${params.who}"
        """, "newest.yaml")
    ours = compile_text(tmp_path, """\
        name: flow
        params: [{name: who, default: you}]
        env: [{GREETING: hello}]
        steps:
          - command: echo "${GREETING} ${who}"
        """, "ours.yaml")
    assert newest.ok and not newest.diagnostics, messages(newest)
    assert comparable(newest.plan) == comparable(ours.plan)


def test_secrets_may_be_names(tmp_path: Path) -> None:
    names = compile_text(tmp_path, "secrets: [API_TOKEN]\nsteps:\n  - run: echo $API_TOKEN\n", "a.yaml")
    objects = compile_text(tmp_path, "secrets:\n  - {name: API_TOKEN, ref: API_TOKEN}\nsteps:\n  - command: echo $API_TOKEN\n",
                           "b.yaml")
    assert names.ok and objects.ok and not names.diagnostics
    assert names.plan.main.settings["secrets"] == objects.plan.main.settings["secrets"]
    bad = compile_text(tmp_path, "secrets: [API-TOKEN, {name: X}]\nsteps: [echo]\n", "c.yaml")
    assert [(d.line, d.code) for d in bad.diagnostics] == [(1, "invalid-format"), (1, "missing-key"), (1, "missing-key")]


# --------------------------------------------------------------------------- Dagu 1.x


def test_run_of_a_dag_name_is_a_1x_call(tmp_path: Path) -> None:
    (tmp_path / "beside.yaml").write_text("steps: [echo beside]\n", encoding="utf-8")
    result = compile_text(tmp_path, """\
        type: graph
        steps:
          - id: same_file
            run: inner
          - id: file_beside
            run: beside
          - id: yaml_name
            run: other.yaml
          - id: with_params
            run: unknown_dag
            params: A=1
          - id: a_command
            run: make
          - id: another_command
            run: echo inner
        ---
        name: inner
        steps: [echo inner]
        """)
    calls = [(d.line, d.code) for d in result.diagnostics if d.code == "legacy-run-call"]
    assert calls == [(4, "legacy-run-call"), (6, "legacy-run-call"), (8, "legacy-run-call"), (10, "legacy-run-call")]
    first = next(d for d in result.diagnostics if d.code == "legacy-run-call")
    assert first.notes[0] == "write 'call: inner' to call it ('inner' is the name of a DAG in this file)"
    # the calls are checked as calls: the missing DAGs are reported too
    assert {d.line for d in result.diagnostics if d.code == "unknown-call-target"} == {8, 10}


def test_1x_spellings_are_all_reported_with_their_fix(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        handlerOn:
          Failure:
            executor: {type: mail, config: {to: a@b.c, from: d@b.c}}
        steps:
          - name: a
            executor:
              type: docker
              config: {image: alpine}
            command: echo
            continueOn: {exitCode: [2]}
        """)
    got = [(d.line, d.col, d.code, d.message) for d in result.diagnostics if d.code != "unsupported-step-type"]
    assert unsupported(result) == []  # mail and docker both run in this build
    assert got == [
        (1, 1, "camel-case-key", "'handlerOn' is the Dagu 1.x spelling of 'handler_on': v2 spells keys in snake_case"),
        (2, 3, "legacy-key", "'Failure' is the Dagu 1.x spelling of 'failure'"),
        (3, 5, "legacy-executor",
         "'executor' is the Dagu 1.x spelling of the step type: v2 writes `type: mail` and `config:` on the step"),
        (6, 5, "legacy-executor",
         "'executor' is the Dagu 1.x spelling of the step type: v2 writes `type: docker` and `config:` on the step"),
        (10, 5, "camel-case-key", "'continueOn' is the Dagu 1.x spelling of 'continue_on': v2 spells keys in snake_case"),
        (10, 18, "camel-case-key", "'exitCode' is the Dagu 1.x spelling of 'exit_code': v2 spells keys in snake_case"),
    ]


def test_a_1x_file_means_what_its_v2_spelling_means(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text(textwrap.dedent("""\
        name: flow
        type: graph
        maxActiveSteps: 1
        steps:
          - name: a
            dir: /tmp
            executor: {type: docker, config: {image: alpine}}
            command: echo a
            retryPolicy: {limit: 2, intervalSec: 3}
          - name: b
            run: c
            depends: a
        ---
        name: c
        steps: [echo c]
        """), encoding="utf-8")
    v2 = tmp_path / "v2.yaml"
    v2.write_text(textwrap.dedent("""\
        name: flow
        type: graph
        max_active_steps: 1
        steps:
          - name: a
            working_dir: /tmp
            type: docker
            config: {image: alpine}
            command: echo a
            retry_policy: {limit: 2, interval_sec: 3}
          - name: b
            call: c
            depends: a
        ---
        name: c
        steps: [echo c]
        """), encoding="utf-8")
    meant = compile_file(str(legacy), IgnoringLegacyAndUnsupported())
    written = compile_file(str(v2), IgnoringUnsupported())
    assert meant.ok and written.ok, messages(meant) + messages(written)
    assert comparable(meant.plan) == comparable(written.plan)
