"""A password, token or key written into a workflow file is refused at its line (it would sit in
the plan and every copy of it); the same field given as `${NAME}` from `secrets:` compiles."""

from __future__ import annotations

from pathlib import Path

from tests.compiler.test_step_types import compile_text, located


def test_a_literal_secret_is_refused_at_its_line(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        smtp:
          host: localhost
          password: hunter2
        steps:
          - id: get
            type: http
            with: {url: "http://x", token: abc123}
          - id: db
            type: postgres
            with: {dsn: "postgres://app:s3cret@db/app"}
            command: SELECT 1
        """)
    found = [r for r in located(result) if r[3] == "literal-secret"]
    assert [(line, col) for _f, line, col, _c, _m in found] == [(3, 13), (7, 36), (10, 17)]
    assert "'password' of the DAG's smtp: block" in found[0][4]
    assert "'token' of step 'get'" in found[1][4]
    assert not result.ok


def test_secrets_by_reference_and_a_dsn_without_password_compile(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        secrets:
          - name: TOKEN
            provider: env
            key: API_TOKEN
        steps:
          - id: get
            type: http
            with: {url: "http://x", token: "${TOKEN}"}
          - id: db
            type: postgres
            with: {dsn: "postgres://app@db/app"}
            command: SELECT 1
        """)
    assert not [r for r in located(result) if r[3] == "literal-secret"]
    assert result.ok, located(result)
