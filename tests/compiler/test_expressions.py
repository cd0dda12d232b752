"""Tests for compiler/expressions.py: the template language of workflow values."""

from __future__ import annotations

import dataclasses
import json
import random
from importlib.resources import files

import pytest

from dagu.compiler import expressions
from dagu.compiler.expressions import ExprProblem, Template, is_plain, parse_template


def var(name: str, *path: str | int) -> dict:
    return {"var": name, "path": list(path)}


ESC = {"esc": "$"}


def cmd(*parts: object) -> dict:
    return {"cmd": list(parts)}


def parts(text: str) -> list:
    return parse_template(text).parts


def render_braced(items: list) -> str:
    """Write parts back in the canonical spelling: ${NAME.path}, \\$, `cmd`."""
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif "esc" in item:
            out.append("\\$")
        elif "cmd" in item:
            out.append("`" + render_braced(item["cmd"]) + "`")
        else:
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["path"])
            out.append("${" + item["var"] + path + "}")
    return "".join(out)


def render_exact(template: Template, source: str) -> str:
    """Write parts back using each reference's own source span from ``refs``."""
    spans = {id(node): (offset, length) for offset, length, node in template.refs}

    def walk(items: list) -> str:
        out = []
        for item in items:
            if isinstance(item, str):
                out.append(item)
            elif "esc" in item:
                out.append("\\$")
            elif "cmd" in item:
                out.append("`" + walk(item["cmd"]) + "`")
            else:
                offset, length = spans[id(item)]
                out.append(source[offset:offset + length])
        return "".join(out)

    return walk(template.parts)


# --- the fast path ---------------------------------------------------------------


@pytest.mark.parametrize("text, plain", [
    ("", True), ("echo hello >> trace.txt", True), ('say "hi" {x}', True),
    ("$X", False), ("`date`", False), ("a\\b", False), ("don't", False),
])
def test_is_plain(text: str, plain: bool) -> None:
    assert is_plain(text) is plain


def test_plain_text_never_touches_lark(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise AssertionError("lark used for a plain string")

    monkeypatch.setattr(expressions, "_parser", boom)
    monkeypatch.setattr(expressions, "_reference_scanner", boom)
    assert parse_template("echo done >> trace.txt") == Template(["echo done >> trace.txt"], (), ())
    assert parse_template("") == Template([], (), ())
    # quotes and backslashes without $ or ` cannot change anything either
    assert parts("echo 'it''s' \\n") == ["echo 'it''s' \\n"]


def test_parser_is_built_once_from_package_data() -> None:
    assert (files("dagu.spec") / "expr.lark").is_file()
    assert expressions._parser() is expressions._parser()


def test_dataclasses_are_frozen() -> None:
    template = parse_template("x ${A")
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.parts = []  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.problems[0].offset = 3  # type: ignore[misc]


# --- references --------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("${NAME}", [var("NAME")]),
    ("$NAME", [var("NAME")]),
    ("$_x1 y", [var("_x1"), " y"]),
    ("${A}${B}", [var("A"), var("B")]),
    ("$A$B", [var("A"), var("B")]),
    ("$A.b", [var("A"), ".b"]),  # a path needs braces
    ("${LOG_BASE}.out.log", [var("LOG_BASE"), ".out.log"]),
    ("$1 $9", [var("1"), " ", var("9")]),
    ("$10", [var("1"), "0"]),  # one digit, as in the shell
    ("${1}", [var("1")]),
    ("${12}", [var("12")]),
    ("${DATA.user.name}", [var("DATA", "user", "name")]),
    ("${A.b[0].c}", [var("A", "b", 0, "c")]),
    ("${A[0][12]}", [var("A", 0, 12)]),
    ("${step_id.output}", [var("step_id", "output")]),
    ("${build.exit_code}", [var("build", "exit_code")]),
    ("${X.my-key}", [var("X", "my-key")]),
    ("${CHILD.outputs.ANSWER}", [var("CHILD", "outputs", "ANSWER")]),
    ("${X.2024}", [var("X", "2024")]),  # a dotted segment is always a field
])
def test_references(text: str, expected: list) -> None:
    assert parts(text) == expected


@pytest.mark.parametrize("text", [
    "$$", "$?", "$!", "$#", "$@", "$*", "$-", "$0", "${0}", "end $", "$ x",
    "$(cmd)", "n=$((n+1))", "$((2 ** 10))", "${VAR:-default}", "${VAR:=x}", "${#arr}",
    "${#arr[@]}", "${arr[@]}", "${ x }", "${}", "${A.}", "${A..b}", "${A[x]}", "${1.x}",
    "${X foo}", "a\\b", "C:\\temp\\new", "`unmatched", "a ` b", "don't", "it's fine",
    "re:^v[0-9]+[.][0-9]+$", "re:^code=[0-9]+$", "a}b{c", "$ {A}", "${-x}", "${A-b}",
])
def test_shell_syntax_stays_literal(text: str) -> None:
    template = parse_template(text)
    assert template.parts == [text]
    assert template.problems == ()
    assert template.refs == ()


def test_references_inside_shell_syntax_are_still_references() -> None:
    assert parts("$(echo $X)") == ["$(echo ", var("X"), ")"]
    assert parts("${VAR:-$D}") == ["${VAR:-", var("D"), "}"]


# --- escapes and quoting -----------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("\\$X", [ESC, "X"]),
    ("\\${X}", [ESC, "{X}"]),
    ("cost \\$AMOUNT and $B", ["cost ", ESC, "AMOUNT and ", var("B")]),
    ("\\$\\$", [ESC, ESC]),
    ("a\\\\$X", ["a\\\\", var("X")]),  # \\ is a literal backslash, as in the shell
    ("a\\`date` $X", ["a\\`date` ", var("X")]),  # \` opens nothing
    ("a\\$", ["a", ESC]),
    ("end\\", ["end\\"]),
])
def test_escapes(text: str, expected: list) -> None:
    assert parts(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("echo '$PRICE'", ["echo '$PRICE'"]),
    ("'${A.b}' `x` '`date`'", ["'${A.b}' ", cmd("x"), " '`date`'"]),
    ("'\\$X'", ["'\\$X'"]),  # a backslash inside '...' is literal too
    ("don't ${X}", ["don't ", var("X")]),  # an unmatched quote
    ("it's $X and 'y'", ["it's $X and 'y'"]),  # the shell pairs these quotes too
    ("don\\'t $X 'y'", ["don\\'t ", var("X"), " 'y'"]),  # \' opens nothing
    ("''$X", ["''", var("X")]),
    # inside "...", a ' is an ordinary character, as in the shell
    ('echo "it\'s ${X}" && echo \'$Y\'', ['echo "it\'s ', var("X"), "\" && echo '$Y'"]),
    ("\"'$X'\"", ["\"'", var("X"), "'\""]),
    ('"a \\" it\'s $X"', ['"a \\" it\'s ', var("X"), '"']),
    ('unclosed " it\'s $X \'y\'', ["unclosed \" it's $X 'y'"]),
])
def test_quoting(text: str, expected: list) -> None:
    assert parts(text) == expected


# --- command substitution -----------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("`date`", [cmd("date")]),
    ("``", [cmd()]),
    ("a `b` c `d`", ["a ", cmd("b"), " c ", cmd("d")]),
    ("`echo ${X}`", [cmd("echo ", var("X"))]),
    ("`cat ${A.b[1]}/$F` x", [cmd("cat ", var("A", "b", 1), "/", var("F")), " x"]),
    ("`echo '$X' \\$Y $Z`", [cmd("echo '$X' ", ESC, "Y ", var("Z"))]),
    ('echo "sum=`expr 2 + 3`" >> trace.txt', ['echo "sum=', cmd("expr 2 + 3"), '" >> trace.txt']),
    ('"`echo "$X"`"', ['"', cmd('echo "', var("X"), '"'), '"']),
    ("`a` `b", [cmd("a"), " `b"]),  # the last one is unmatched
    ("`echo \\` x", ["`echo \\` x"]),  # an escaped backtick does not close
    ("`echo 'a`b'", [cmd("echo 'a"), "b'"]),  # a backtick closes even inside '
])
def test_backticks(text: str, expected: list) -> None:
    assert parts(text) == expected


# --- offsets, refs and problems ------------------------------------------------------


def test_ref_offsets_and_lengths_nested_and_in_source_order() -> None:
    text = 'echo "${A}" `cat $B ${C.d[0]}` \\$E $1 ${F}'
    template = parse_template(text)
    spans = [(offset, length, node["var"]) for offset, length, node in template.refs]
    assert spans == [(6, 4, "A"), (17, 2, "B"), (20, 9, "C"), (35, 2, "1"), (38, 4, "F")]
    for offset, length, node in template.refs:
        assert text[offset:offset + length] in (f"${node['var']}", render_braced([node]))
    # the nodes in refs are the nodes in parts, so a later pass can annotate them
    assert template.refs[1][2] is template.parts[3]["cmd"][1]


def test_ref_offsets_in_multiline_text() -> None:
    text = "echo one\necho '$NO'\necho ${YES}\n"
    (offset, length, node), = parse_template(text).refs
    assert (offset, length, node) == (text.index("${YES}"), 6, var("YES"))


@pytest.mark.parametrize("text, offset, length", [
    ("${NAME", 0, 6),
    ("echo ${A.b", 5, 5),
    ("echo ${A.b.", 5, 6),
    ("x ${A[1", 2, 5),
    ("x ${A[", 2, 4),
    ("x ${", 2, 2),
    ("x ${3", 2, 3),
    ("echo ${X\n", 5, 3),  # block scalars end with a newline
    ("echo ${X  ", 5, 3),
    ("`echo ${X", 6, 3),
    ("\"${X", 1, 3),
])
def test_unterminated_reference(text: str, offset: int, length: int) -> None:
    template = parse_template(text)
    assert template.problems == (ExprProblem(
        offset=offset, length=length, code="unterminated-reference",
        message="'${' opened here is never closed",
        hint="close it with '}' or write '\\$' for a literal dollar",
    ),)
    assert template.parts == [text]
    assert template.refs == ()


@pytest.mark.parametrize("text", ["${X foo", "${X:-a", "echo ${X\necho done", "\\${X", "'${X'"])
def test_not_unterminated(text: str) -> None:
    assert parse_template(text).problems == ()


def test_unterminated_after_good_references() -> None:
    template = parse_template("$A ${B} ${C")
    assert template.parts == [var("A"), " ", var("B"), " ${C"]
    assert [p.offset for p in template.problems] == [8]
    assert [r[0] for r in template.refs] == [0, 3]


# --- round trips, JSON and robustness -------------------------------------------------


@pytest.mark.parametrize("text", [
    "echo ${A} and ${B.c[2].d-e} `cat ${F}` done",
    'echo "${DATA.user.name} ${DATA.count}" >> trace.txt',
    "'${NOT}' ${YES} $$ $? $((1+2)) ${V:-x} ${#a} `x` don't ` ${",
    "`a ${B} '${C}'` `",
])
def test_round_trip_braced(text: str) -> None:
    assert render_braced(parts(text)) == text


ALPHABET = list("$`{}'\"\\ aZ1_.[]-:#(\n")


def random_strings(seed: int, count: int, alphabet: list[str]) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def test_any_string_parses_and_round_trips_exactly() -> None:
    for text in random_strings(1, 4000, ALPHABET):
        template = parse_template(text)
        assert render_exact(template, text) == text, text
        assert all(not (isinstance(a, str) and isinstance(b, str))
                   for a, b in zip(template.parts, template.parts[1:])), text
        assert "" not in template.parts
        offsets = [offset for offset, _, _ in template.refs]
        assert offsets == sorted(offsets)


def test_fast_lane_agrees_with_the_parser() -> None:
    # without ` \ and ' parse_template uses a regex made from the grammar's terminals
    for text in random_strings(2, 4000, [c for c in ALPHABET if c not in "`\\'"]):
        assert expressions._parse_fast(text) == expressions._parse_full(text), text


def test_parts_are_json() -> None:
    template = parse_template('a ${B.c[0]} `d $E` \\$ "$1"')
    assert json.loads(json.dumps(template.parts)) == template.parts


# --- strings from the conformance cases ----------------------------------------------


@pytest.mark.parametrize("text, expected", [
    (  # escape_dollar
        'echo "cost \\$AMOUNT" >> trace.txt\necho \'$PRICE\' >> trace.txt\n'
        'echo "real ${PRICE}" >> trace.txt\n',
        ['echo "cost ', ESC, 'AMOUNT" >> trace.txt\necho \'$PRICE\' >> trace.txt\necho "real ',
         var("PRICE"), '" >> trace.txt\n'],
    ),
    (  # output_json_path
        "echo '{\"user\": {\"name\": \"ada\", \"langs\": [\"go\", \"py\"]}, \"count\": 3}'\n",
        ["echo '{\"user\": {\"name\": \"ada\", \"langs\": [\"go\", \"py\"]}, \"count\": 3}'\n"],
    ),
    (
        'echo "${DATA.user.name} ${DATA.count}" >> trace.txt',
        ['echo "', var("DATA", "user", "name"), " ", var("DATA", "count"), '" >> trace.txt'],
    ),
    (  # subdag_output
        'echo "child said ${CHILD.outputs.ANSWER}" >> trace.txt',
        ['echo "child said ', var("CHILD", "outputs", "ANSWER"), '" >> trace.txt'],
    ),
    ("`echo 2024-01-02`", [cmd("echo 2024-01-02")]),  # env_command_substitution
    ("`cat count.txt`", [cmd("cat count.txt")]),
    (  # backtick_in_command
        'echo "sum=`expr 2 + 3`" >> trace.txt',
        ['echo "sum=', cmd("expr 2 + 3"), '" >> trace.txt'],
    ),
    ("${VERSION}", [var("VERSION")]),  # precondition_regex
    ("re:^v[0-9]+[.][0-9]+$", ["re:^v[0-9]+[.][0-9]+$"]),
    ('echo "$1 $2" >> trace.txt', ['echo "', var("1"), " ", var("2"), '" >> trace.txt']),
    (
        "n=$(cat attempts 2>/dev/null || echo 0); n=$((n+1)); echo $n > attempts",
        ["n=$(cat attempts 2>/dev/null || echo 0); n=$((n+1)); echo ", var("n"), " > attempts"],
    ),
    (
        'echo "$((2 ** 10))" >> trace.txt; [[ -n "$BASH_VERSION" ]] && echo isbash >> trace.txt',
        ['echo "$((2 ** 10))" >> trace.txt; [[ -n "', var("BASH_VERSION"),
         '" ]] && echo isbash >> trace.txt'],
    ),
    (  # shell_step_bash: ${arr[1]} has the shape of a path; the runtime decides
        'arr=(a b c)\nif [[ ${#arr[@]} -eq 3 ]]; then echo "bash ${arr[1]}" >> trace.txt; fi\n',
        ['arr=(a b c)\nif [[ ${#arr[@]} -eq 3 ]]; then echo "bash ', var("arr", 1),
         '" >> trace.txt; fi\n'],
    ),
    ('          f.write("from python %d\\n" % (6 * 7))', ['          f.write("from python %d\\n" % (6 * 7))']),
    ("${BASE}/logs", [var("BASE"), "/logs"]),
    ("COLOR=${ITEM}", ["COLOR=", var("ITEM")]),
    ('basename "$PWD" > where.txt', ['basename "', var("PWD"), '" > where.txt']),
])
def test_conformance_strings(text: str, expected: list) -> None:
    template = parse_template(text)
    assert template.parts == expected
    assert template.problems == ()


def test_fast_scanner_is_the_grammars_own_terminals() -> None:
    """The lark-free regex path must find references exactly as spec/expr.lark defines them."""
    from dagu.compiler import expressions

    assert expressions._reference_scanner().pattern == expressions.grammar_reference_scanner().pattern
