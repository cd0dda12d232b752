"""The schema fast path may skip jsonschema only for steps jsonschema would accept."""

from __future__ import annotations

import itertools

from jsonschema import Draft202012Validator

from dagu.compiler.schema_check import is_simple_document, is_simple_step, load_schema

VALUES = ["x", "", ["a", "b"], [], 3, None, True, {"k": "v"}, ["a", 1]]
KEYS = ["id", "name", "description", "command", "script", "output", "working_dir", "depends", "comand", "timeout_sec"]


def test_every_step_the_fast_path_accepts_is_valid_by_the_schema() -> None:
    validator = Draft202012Validator(load_schema())
    accepted = rejected = 0
    for keys in itertools.chain(itertools.combinations(KEYS, 1), itertools.combinations(KEYS, 2)):
        for values in itertools.product(VALUES, repeat=len(keys)):
            step = dict(zip(keys, values))
            doc = {"steps": [step]}
            if is_simple_step(step):
                accepted += 1
                assert validator.is_valid(doc), step
            else:
                rejected += 1
    assert accepted > 100 and rejected > 100  # both sides were exercised


DOC_VALUES = ["x", "chain", "graph", "", 3, None, True, ["a"], {"k": "v"}]
DOC_KEYS = ["name", "description", "group", "type", "tags", "nmae"]
STEPS = [[], ["echo hi"], [{"command": "x"}], [["a", "b"]], {"a": {"command": "x"}}, {"a": "x"}, {}, "x", None,
         [{"comand": "x"}]]


def test_every_document_the_fast_path_accepts_is_valid_by_the_schema() -> None:
    validator = Draft202012Validator(load_schema())
    accepted = rejected = 0
    for steps in STEPS:
        for keys in itertools.chain([()], itertools.combinations(DOC_KEYS, 1), itertools.combinations(DOC_KEYS, 2)):
            for values in itertools.product(DOC_VALUES, repeat=len(keys)):
                doc = {**dict(zip(keys, values)), "steps": steps}
                if is_simple_document(doc):
                    accepted += 1
                    assert validator.is_valid(doc), doc
                else:
                    rejected += 1
    assert not is_simple_document({"name": "x"})  # steps are required
    assert accepted > 50 and rejected > 200
