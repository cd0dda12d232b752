"""spec/openapi.json against the app: every /api/v1 route is documented and every documented
operation is a route; the document is OpenAPI 3.1-shaped; real answers match its schemas."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any, Iterator

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.web.conftest import POST

API = "/api/v1"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads((resources.files("dagu.spec") / "openapi.json").read_text(encoding="utf-8"))


def routes(app) -> set[tuple[str, str]]:
    """(method, path with {var}) of every /api/v1 rule, the path relative to /api/v1."""
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule[len(API):])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((method.lower(), path))
    return out


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def test_every_route_is_documented_and_every_operation_is_a_route(app, doc) -> None:
    documented = {(m, p) for m, p, _op in operations(doc)}
    served = routes(app)
    assert served - documented == set(), "routes missing from spec/openapi.json"
    assert documented - served == set(), "operations in spec/openapi.json that no route serves"
    assert ("get", "/openapi.json") in served and ("get", "/runs/{dag}/{run_id}/steps/{step}/log") in served


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_openapi_3_1_shaped(doc) -> None:
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    ids = []
    for method, path, op in operations(doc):
        assert path.startswith("/"), path
        assert op["responses"], f"{method} {path} has no responses"
        assert all(re.fullmatch(r"[1-5]\d\d|default", code) for code in op["responses"]), (method, path)
        ids.append(op["operationId"])
        params = [resolve(doc, p["$ref"]) if "$ref" in p else p for p in op.get("parameters", [])]
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == set(re.findall(r"{([^}]+)}", path)), f"{method} {path}: path parameters"
        assert all(p["required"] for p in params if p["in"] == "path")
    assert len(ids) == len(set(ids)), "operationIds are unique"
    for ref in refs(doc):
        resolve(doc, ref)  # a KeyError is a $ref that does not resolve
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)  # 3.1 schemas are JSON Schema 2020-12


def test_errors_share_one_shape(doc) -> None:
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    assert "diagnostics" in error["properties"]["error"]["properties"]
    for method, path, op in operations(doc):
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                target = resolve(doc, response["$ref"]) if "$ref" in response else response
                assert target["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, \
                    (method, path, code)


def validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator for one component schema, its $refs resolved against the document."""
    registry = Registry().with_resource("urn:openapi", Resource.from_contents(doc, default_specification=DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{name}"}, registry=registry)


def test_real_answers_match_the_documented_schemas(client, doc) -> None:
    validator(doc, "DagSummary")  # builds
    dags = json.loads(client.get(f"{API}/dags").data)["dags"]
    for dag in dags:
        validator(doc, "DagSummary").validate(dag)
    validator(doc, "DagDetail").validate(json.loads(client.get(f"{API}/dags/hello").data))
    validator(doc, "Run").validate(json.loads(client.get(f"{API}/runs/hello/h1").data))
    validator(doc, "RunPage").validate(json.loads(client.get(f"{API}/runs?dag=hello&limit=1").data))
    validator(doc, "LogChunk").validate(json.loads(client.get(f"{API}/runs/hello/h1/steps/greet/log?tail=10").data))
    missing = client.get(f"{API}/runs/hello/nope")
    assert missing.status_code == 404
    validator(doc, "Error").validate(json.loads(missing.data))
    rejected = client.put(f"{API}/dags/hello/spec", json={"text": "steps:\n  - id: a\n    comand: x\n"}, **POST)
    assert rejected.status_code == 422
    validator(doc, "Error").validate(json.loads(rejected.data))
    with pytest.raises(jsonschema.ValidationError):
        validator(doc, "Error").validate({"error": {"message": "no code"}})


def test_the_document_is_served(client, doc) -> None:
    res = client.get(f"{API}/openapi.json")
    assert res.status_code == 200 and res.mimetype == "application/json"
    assert json.loads(res.data) == doc
