"""GET /api/openapi.json describes exactly the app's routes: a route added without a description fails here."""
from __future__ import annotations

import pytest

from modules import openapi
from server import Config, create_app
from tests.full_app import full_app


@pytest.fixture
def app(fake_engine):
    return full_app(fake_engine)


def described(doc: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item}


def test_document_describes_every_route_of_the_url_map_and_nothing_else(app):
    routes = set(openapi.operations_of(app))
    doc = described(openapi.full_document())
    assert routes - doc == set(), "routes without a description in modules/openapi.py"
    assert doc - routes == set(), "described routes the app does not have"


def test_served_document_has_the_enabled_modules_routes_only(app):
    full = app.test_client().get("/api/openapi.json")
    assert full.status_code == 200 and full.get_json()["openapi"].startswith("3.")
    assert described(full.get_json()) == described(openapi.full_document())
    bare = create_app(Config(modules=[])).test_client().get("/api/openapi.json").get_json()
    assert described(bare) == {("/api/modules", "get"), ("/api/openapi.json", "get")}


def test_every_operation_documents_its_answers(app):
    for path, item in openapi.full_document()["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert codes & {"200", "201"}, (path, method)  # 201: made (POST /api/talkinghead/avatars)
            if op.get("security") != []:
                assert "401" in codes, f"{method} {path}: --secure answers 401"
            if "requestBody" in op:
                assert "413" in codes, f"{method} {path} takes a body: 413 over the limit"
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                assert {"400", "415"} <= codes, (path, method)
            for code, answer in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == openapi.ERROR


def test_document_loads_in_schemathesis(app):
    from conftest import need_module

    schemathesis = need_module("schemathesis", "pip install -r requirements-test.txt")
    schema = schemathesis.openapi.from_dict(openapi.document_for(app))
    assert len(list(schema.get_all_operations())) == len(described(openapi.full_document()))


def test_docs_api_md_names_every_route():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    for path in openapi.full_document()["paths"]:
        shown = path.replace("{name}", "<emotion>").replace("/{filename}", "").rstrip("/")
        assert f"`{shown}" in text or f" `{shown}" in text, f"docs/api.md does not mention {path}"
