"""An independent client, given only ``/openapi.json`` and a token per role: it finds every
read, fills the required parameters from the schema, and gets either the data or a refusal
with a JSON error and no data, as the role allows (SQLite and PostgreSQL).

A secured read the matrix below does not know fails the test: a new route must say who
may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import TestClient, bearer, client, fill, local, post_ledger
from v2ghub.store.repository import Store

ROLES = ("admin", "depot", "grid", "alice")
"""A token of each role: admin, operator (site depot), grid, owner."""
MAY_READ: dict[str, set[str]] = {
    "/api/v1/fleet/now": {"admin", "depot", "grid"},
    "/api/v1/fleet/envelope": {"admin", "grid"},
    "/api/v1/grid-events": {"admin", "depot", "grid"},
    "/api/v1/grid/openadr/events": {"admin", "depot", "grid"},
    "/api/v1/grid/regulation": {"admin", "depot", "grid"},
    "/api/v1/grid/regulation/commitments": {"admin", "depot", "grid"},
    "/api/v1/grid/regulation/response": {"admin", "depot", "grid"},
    "/api/v1/history": {"admin", "depot", "grid"},
    "/api/v1/stations": {"admin", "depot"},
    "/api/v1/sessions": {"admin", "depot", "alice"},
    "/api/v1/today": {"admin", "depot", "grid", "alice"},
}
"""Who gets a 200 from each read without path parameters; everyone else a 403."""
ELSEWHERE = {
    "/api/v1/feed": "a stream: tests/test_dashboard.py",
    "/api/v1/run": "only with serve --show-run: tests/test_dashboard.py",
    "/api/v1/statements": "its parameters depend on the role: tests/test_api_reads.py",
}
EXAMPLES = {"date-time": "2026-03-10T10:00:00+08:00"}
"""A value for a required parameter of each format."""


@pytest.fixture
def api(store: Store, tmp_path: Path) -> TestClient:
    return client(fill(store), now=local(12), ledger_path=post_ledger(tmp_path / "l.sqlite"))


def _required_query(operation: dict[str, Any]) -> dict[str, str]:
    query: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query" and parameter.get("required"):
            schema = parameter["schema"]
            value = EXAMPLES[schema["format"]]
            if parameter["name"] == "end":
                value = "2026-03-10T11:00:00+08:00"
            query[parameter["name"]] = value
    return query


def test_every_read_is_allowed_or_refused_as_the_role_says(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    reads = {
        path: item["get"]
        for path, item in document["paths"].items()
        if "get" in item and "security" in item["get"] and "{" not in path
    }
    assert set(reads) == set(MAY_READ) | set(ELSEWHERE)
    for path, operation in reads.items():
        if path in ELSEWHERE:
            continue
        query = _required_query(operation)
        anonymous = api.get(path, params=query)
        assert anonymous.status_code == 401, path
        for role in ROLES:
            response = api.get(path, params=query, headers=bearer(role))
            if role in MAY_READ[path]:
                assert response.status_code == 200, (path, role, response.text)
            else:
                assert response.status_code == 403, (path, role, response.text)
                assert set(response.json()) == {"detail", "field"}
                assert response.json()["detail"]


def test_every_write_names_its_body_and_needs_a_token(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    writes = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("post", "delete") and path.startswith("/api/v1/")
    ]
    assert sorted((path, method) for path, method, _ in writes) == [
        ("/api/v1/grid-events/demand-response", "post"),
        ("/api/v1/grid-events/site-limits", "post"),
        ("/api/v1/grid-events/{event_id}", "delete"),
        ("/api/v1/grid/regulation/commitments", "post"),
        ("/api/v1/grid/regulation/commitments/{commitment_id}", "delete"),
        ("/api/v1/grid/regulation/signal", "post"),
    ]
    for path, method, operation in writes:
        assert operation["security"] == [{"token": []}]
        if method == "post":
            assert "requestBody" in operation
        concrete = path.replace("{event_id}", "1").replace("{commitment_id}", "1")
        response = api.request(method.upper(), concrete, json={})
        assert response.status_code == 401
