"""The template step type: upstream's Go-template subset rendered as upstream renders it, to the
output or a file, and anything outside the subset refused by `dagu compile` naming the construct.
A template needs no server; the steps run through `dagu` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.runtime.conftest import Env

ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = r"""
    params:
      - WHO: world
    steps:
      - id: render
        action: template.render
        with:
          data:
            name: ann
            users: [{name: a, age: 30}, {name: b, age: 9}]
            tags: [x, y]
            team: ""
            ratio: 2.5
          template: |
            Hello, {{ .name | upper }} from ${WHO}!
            {{- range $i, $u := .users }}
            {{ $i }}: {{ $u.name }} ({{ $u.age }}){{ if ge $u.age 18 }} adult{{ else }} minor{{ end }}
            {{- end }}
            {{ with .team }}team={{ . }}{{ else }}no team{{ end }}
            tags: {{ join ", " .tags }} ({{ len .tags }}) {{ .tags }} {{ .ratio }} {{ add 1 2 }}
            {{ .users }}
            {{ "a,b" | split "," | join "+" }} {{ printf "%s=%d" "n" 3 }} {{ .team | default "none" }}
            {{/* a comment */ -}}
            end
        output: TEXT
      - id: use
        command: echo "${TEXT}" | head -1
        output: FIRST
    """

EXPECTED = ("Hello, ANN from world!\n0: a (30) adult\n1: b (9) minor\nno team\n"
            "tags: x, y (2) [x y] 2.5 3\n[map[age:30 name:a] map[age:9 name:b]]\na+b n=3 none\nend")


def _steps(env: Env, dag: str) -> dict:
    return env.status(dag)["steps"]


def test_the_documented_subset_renders_as_upstream(env: Env) -> None:
    env.write("t.yaml", TEMPLATE)
    res = env.run("start", "t.yaml")
    assert res.returncode == 0, res.stderr
    steps = _steps(env, "t")
    assert steps["render"]["output"] == EXPECTED
    assert steps["use"]["output"] == "Hello, ANN from world!"


def test_rendering_to_a_file_is_atomic_creates_dirs_and_refuses_a_fifo(env: Env) -> None:
    os.mkfifo(env.dir / "pipe.txt")
    env.write("f.yaml", """
        steps:
          - id: to_file
            type: template
            script: "Dear {{ .name }},\\n"
            with: {data: {name: bo}, output: out/deep/letter.txt}
          - id: to_fifo
            type: template
            script: "x"
            with: {output: pipe.txt}
        """)
    started = time.monotonic()
    env.run("start", "f.yaml", timeout=30)
    assert time.monotonic() - started < 20  # the FIFO was not opened (it would block forever)
    steps = _steps(env, "f")
    assert steps["to_file"]["status"] == "succeeded"
    assert (env.dir / "out" / "deep" / "letter.txt").read_text() == "Dear bo,\n"
    assert os.listdir(env.dir / "out" / "deep") == ["letter.txt"]  # no temp file left
    assert steps["to_fifo"]["status"] == "failed"
    assert "not a regular file" in steps["to_fifo"]["attempts"][-1]["error"]


def test_constructs_outside_the_subset_are_compile_errors_naming_them(env: Env) -> None:
    env.write("bad.yaml", """
        steps:
          - id: a
            type: template
            script: 'Hi {{ define "x" }}{{ end }}'
          - id: b
            action: template.render
            with:
              template: "{{ .name | shout }}"
          - id: c
            type: template
            script: "{{ if .x }}never closed"
          - id: d
            type: template
            script: "x"
            with: {dta: {}}
        """)
    res = env.run("compile", "bad.yaml")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "bad.yaml:5:" in out and "{{ define }} (named templates) is not supported" in out
    assert "bad.yaml:9:" in out and 'function "shout" is not supported' in out
    assert "bad.yaml:12:" in out and "{{ if }} has no {{ end }}" in out
    assert "bad.yaml:16:" in out and "did you mean 'data'?" in out
    assert "Traceback" not in out


def test_a_missing_key_fails_at_run_time_and_retry_policy_retries(env: Env) -> None:
    env.write("miss.yaml", """
        steps:
          - id: a
            type: template
            script: "line one\\n{{ .nope }}"
            retry_policy: {limit: 2, interval_sec: 0}
        """)
    res = env.run("start", "miss.yaml")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    step = _steps(env, "miss")["a"]
    assert len(step["attempts"]) == 3
    assert 'line 2, column 4: map has no entry for key "nope"' in step["attempts"][-1]["error"]


def test_a_secret_in_the_data_never_reaches_a_file_of_the_run(env: Env) -> None:
    secret = "tpl-secret-3371"
    env.write("sec.yaml", """
        secrets:
          - name: TOKEN
            provider: env
            key: MY_TOKEN
        steps:
          - id: a
            action: template.render
            with: {data: {t: "${TOKEN}"}, template: "token={{ .t }}"}
            output: T
        """)
    res = env.run("start", "sec.yaml", env={"MY_TOKEN": secret})
    assert res.returncode == 0, res.stderr
    assert _steps(env, "sec")["a"]["output"] == "token=*****"
    for path in env.home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_the_example_compiles_without_loading_any_client(env: Env) -> None:
    example = ROOT / "examples" / "template.yaml"
    res = env.run("compile", str(example))
    assert res.returncode == 0, res.stdout + res.stderr
    probe = ("import sys\nfrom dagu.cli import main\nmain(['compile', sys.argv[1]])\n"  # main: `dagu` itself exits at once
             "print(sorted(m for m in ('requests', 'urllib3', 'jq', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, str(example)], capture_output=True, text=True,
                         env=env.env, cwd=env.dir, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


# Go's rules, checked on the renderer directly (fast): each expectation is what Go's text/template prints.
GO_CASES = [
    ("{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}", "a=1;b=2;"),
    ("{{ .none }}|{{ .m.a }}|{{ index .m \"b\" }}", "<no value>|1|2"),
    ("{{ or .empty \"fallback\" }} {{ and 1 0 2 }} {{ not .empty }}", "fallback 0 true"),
    ("{{ eq .x 1 2 3 }} {{ ne .x 3 }} {{ lt 1 2 }}", "true false true"),
    ('{{ printf "%q|%5d|%-3s|%.2f" "hi" 42 "a" 3.14159 }}', '"hi"|   42|a  |3.14'),
    ("{{ range .l }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}", "1"),
    ("{{ range .l }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", "13"),
    ("{{ with $x := .name }}{{ $x }}{{ end }}{{ with .empty }}no{{ else }}else{{ end }}", "annelse"),
    ("a  {{- 1 -}}  b {{ 1.0 }} {{ 2.50 }}", "a1b 1 2.5"),
    ('{{ len "h\u00e9llo" }} {{ slice .l 1 }} {{ html "<a>" }} {{ .l | len }}', "6 [2 3] &lt;a&gt; 3"),
    ("{{ range .nothing }}x{{ else }}empty{{ end }} {{ range 3 }}{{ . }}{{ end }}", "empty 012"),
    ('{{ $v := 1 }}{{ if true }}{{ $v = 2 }}{{ end }}{{ $v }}', "2"),
    ('{{ "x" | printf "%s-%s" "a" }} {{ (index .l 0) }} {{ print 1 2 "a" "b" 3 }}', "a-x 1 1 2ab3"),
]


def test_go_template_rules_match_go() -> None:
    from dagu.executors.gotemplate_render import render

    data = {"m": {"b": 2, "a": 1}, "none": None, "empty": "", "x": 3, "l": [1, 2, 3], "name": "ann",
            "nothing": []}
    for template, expected in GO_CASES:
        out: list[str] = []
        render(template, data, out.append)
        assert "".join(out) == expected, template
