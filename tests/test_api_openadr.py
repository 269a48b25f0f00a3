"""The OpenADR VEN's events through the web API (``/api/v1/grid/openadr``), on SQLite and
PostgreSQL.

The day of :mod:`tests.api_helpers` (sites ``depot`` and ``mall``), now 12:00, with the
store written as the VEN writes it (:meth:`Store.apply_vtn_event`) by VEN ``ven-a``:

- ``dr-1``, a LOAD_DISPATCH at depot 14:00-15:00, opted in: modification 0 (10:00, one
  interval) then modification 1 (10:30, two intervals), which cancels the first one's row;
- ``dr-2``, a LOAD_DISPATCH at mall 13:00-14:00, opted out of (11:00) with its reason;
- ``price-1``, an ELECTRICITY_PRICE at depot and mall 18:00-19:00 (11:30), opted in.

A site limit made by the grid token (not OpenADR) comes first: grid event 1.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.api_helpers import TestClient, bearer, client, fill, local
from v2ghub.store.openadr_events import EventLimit, EventPrice, VtnEventView
from v2ghub.store.records import Event, EventKind
from v2ghub.store.repository import Store

SOURCE = "openadr:ven-a"
BASE = "/api/v1/grid/openadr/events"
OPT_OUT_REASON = "mall cannot take 30 kW less for 1 h (the fleet can give 12 kW)"


def _view(
    event_id: str,
    modification: int,
    signal_name: str,
    sites: tuple[str, ...],
    window: tuple[datetime, datetime],
    *,
    opt: tuple[str, str],
    status: str,
    received_at: datetime,
    updated_at: datetime,
) -> VtnEventView:
    return VtnEventView(
        source=SOURCE,
        vtn_event_id=event_id,
        modification_number=modification,
        signal_name=signal_name,
        site_ids=sites,
        starts_at=window[0],
        ends_at=window[1],
        opt_state=opt[0],
        opt_reason=opt[1],
        status=status,
        received_at=received_at,
        updated_at=updated_at,
    )


def _limit(external_id: str, start: datetime, end: datetime, limit_kw: float) -> EventLimit:
    return EventLimit("depot", start, end, limit_kw, external_id, f"OpenADR {external_id}")


def fill_openadr(store: Store) -> Store:
    fill(store)
    store.add_site_limit(
        "depot",
        import_limit_kw=40.0,
        export_limit_kw=None,
        starts_at=local(9),
        reason="transformer",
        at=local(9),
        source="api:grid",
    )
    opted_in = ("optIn", "within the fleet's flexibility")

    def dispatch(modification: int, updated_at: datetime) -> VtnEventView:
        return _view(
            "dr-1",
            modification,
            "LOAD_DISPATCH",
            ("depot",),
            (local(14), local(15)),
            opt=opted_in,
            status="far",
            received_at=local(10),
            updated_at=updated_at,
        )

    store.apply_vtn_event(
        dispatch(0, local(10)),
        limits=[_limit("dr-1/0/0", local(14), local(15), 25.0)],
        at=local(10),
    )
    store.apply_vtn_event(
        dispatch(1, local(10, 30)),
        limits=[
            _limit("dr-1/1/0", local(14), local(14, 30), 20.0),
            _limit("dr-1/1/1", local(14, 30), local(15), 15.0),
        ],
        at=local(10, 30),
    )
    store.apply_vtn_event(
        _view(
            "dr-2",
            0,
            "LOAD_DISPATCH",
            ("mall",),
            (local(13), local(14)),
            opt=("optOut", OPT_OUT_REASON),
            status="near",
            received_at=local(11),
            updated_at=local(11),
        ),
        at=local(11),
    )
    store.record_event(
        Event(
            at=local(11),
            kind=EventKind.OPENADR_OPT_OUT,
            detail=f"OpenADR event dr-2 modification 0: opted out: {OPT_OUT_REASON}",
        )
    )
    store.apply_vtn_event(
        _view(
            "price-1",
            0,
            "ELECTRICITY_PRICE",
            ("depot", "mall"),
            (local(18), local(19)),
            opt=opted_in,
            status="far",
            received_at=local(11, 30),
            updated_at=local(11, 30),
        ),
        prices=[
            EventPrice(site, local(18), local(19), 1.25, "price-1/0/0")
            for site in ("depot", "mall")
        ],
        at=local(11, 30),
    )
    return store


@pytest.fixture
def api(store: Store) -> TestClient:
    return client(fill_openadr(store), now=local(12))


def _event(
    event_id: str,
    modification: int,
    signal_name: str,
    sites: list[str],
    window: tuple[str, str],
    **rest: Any,
) -> dict[str, Any]:
    return {
        "source": SOURCE,
        "vtn_event_id": event_id,
        "modification_number": modification,
        "signal_name": signal_name,
        "site_ids": sites,
        "starts_at": window[0],
        "ends_at": window[1],
        **rest,
    }


DR_1 = _event(
    "dr-1",
    1,
    "LOAD_DISPATCH",
    ["depot"],
    ("2026-03-10T14:00:00+08:00", "2026-03-10T15:00:00+08:00"),
    status="far",
    opt_state="optIn",
    opt_reason="within the fleet's flexibility",
    received_at="2026-03-10T10:00:00+08:00",
    updated_at="2026-03-10T10:30:00+08:00",
    grid_event_ids=[3, 4],
    price_event_ids=[],
)
"""Modification 1's two limits (grid event 2, modification 0's, is cancelled)."""
DR_2 = _event(
    "dr-2",
    0,
    "LOAD_DISPATCH",
    ["mall"],
    ("2026-03-10T13:00:00+08:00", "2026-03-10T14:00:00+08:00"),
    status="near",
    opt_state="optOut",
    opt_reason=OPT_OUT_REASON,
    received_at="2026-03-10T11:00:00+08:00",
    updated_at="2026-03-10T11:00:00+08:00",
    grid_event_ids=[],
    price_event_ids=[],
)
PRICE_1 = _event(
    "price-1",
    0,
    "ELECTRICITY_PRICE",
    ["depot", "mall"],
    ("2026-03-10T18:00:00+08:00", "2026-03-10T19:00:00+08:00"),
    status="far",
    opt_state="optIn",
    opt_reason="within the fleet's flexibility",
    received_at="2026-03-10T11:30:00+08:00",
    updated_at="2026-03-10T11:30:00+08:00",
    grid_event_ids=[],
    price_event_ids=[1, 2],
)


@pytest.mark.parametrize("role", ["grid", "admin"])
def test_the_grid_and_admin_see_every_event_newest_first(api: TestClient, role: str) -> None:
    response = api.get(BASE, headers=bearer(role))
    assert response.status_code == 200
    assert response.json() == [PRICE_1, DR_2, DR_1]


def test_the_rows_listed_are_the_vens_as_the_grid_events_show_them(api: TestClient) -> None:
    grid_events = api.get("/api/v1/grid-events", headers=bearer("grid")).json()
    by_id = {event["event_id"]: event for event in grid_events}
    assert [by_id[event_id]["external_id"] for event_id in DR_1["grid_event_ids"]] == [
        "dr-1/1/0",
        "dr-1/1/1",
    ]
    assert {by_id[event_id]["source"] for event_id in DR_1["grid_event_ids"]} == {SOURCE}
    assert by_id[2]["cancelled_by"] == SOURCE
    assert by_id[1]["source"] == "api:grid"


def test_one_event_by_its_source_and_id(api: TestClient) -> None:
    for event in (DR_1, DR_2, PRICE_1):
        response = api.get(f"{BASE}/{SOURCE}/{event['vtn_event_id']}", headers=bearer("grid"))
        assert response.status_code == 200
        assert response.json() == event


def test_an_unknown_event_is_404(api: TestClient) -> None:
    for path in (f"{BASE}/{SOURCE}/dr-9", f"{BASE}/openadr:ven-b/dr-1"):
        response = api.get(path, headers=bearer("admin"))
        assert response.status_code == 404
        assert response.json()["field"] == "event_id"
    assert api.get(f"{BASE}/{SOURCE}/dr-9", headers=bearer("admin")).json()["detail"] == (
        "no OpenADR event 'dr-9' from 'openadr:ven-a'"
    )


def test_an_operator_sees_only_events_at_its_sites_and_their_rows(api: TestClient) -> None:
    depot = api.get(BASE, headers=bearer("depot")).json()
    assert depot == [{**PRICE_1, "site_ids": ["depot"], "price_event_ids": [1]}, DR_1]
    mall = api.get(BASE, headers=bearer("mall")).json()
    assert mall == [{**PRICE_1, "site_ids": ["mall"], "price_event_ids": [2]}, DR_2]
    hidden = api.get(f"{BASE}/{SOURCE}/dr-2", headers=bearer("depot"))
    assert hidden.status_code == 404
    assert hidden.json() == {
        "detail": "no OpenADR event 'dr-2' from 'openadr:ven-a'",
        "field": "event_id",
    }
    assert api.get(f"{BASE}/{SOURCE}/dr-1", headers=bearer("depot")).json() == DR_1


def test_since_and_status_filter_the_list(api: TestClient) -> None:
    def ids(**params: str) -> list[str]:
        response = api.get(BASE, params=params, headers=bearer("grid"))
        assert response.status_code == 200, response.text
        return [event["vtn_event_id"] for event in response.json()]

    assert ids(since="2026-03-10T14:30:00+08:00") == ["price-1", "dr-1"]
    assert ids(since="2026-03-10T06:00:00Z") == ["price-1", "dr-1"]  # 14:00 in Shanghai
    assert ids(since="2026-03-10T19:00:00+08:00") == []
    assert ids(status="near") == ["dr-2"]
    assert ids(status="far") == ["price-1", "dr-1"]
    assert ids(status="far", since="2026-03-10T15:00:00+08:00") == ["price-1"]
    assert ids(status="cancelled") == []


def test_bad_filters_are_refused_naming_the_field(api: TestClient) -> None:
    naive = api.get(BASE, params={"since": "2026-03-10T14:30:00"}, headers=bearer("grid"))
    assert naive.status_code == 422
    assert naive.json() == {"detail": "since must have a UTC offset", "field": "since"}
    unknown = api.get(BASE, params={"status": "done"}, headers=bearer("grid"))
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "status"
    assert unknown.json()["detail"].startswith("status: Input should be 'none', 'far'")


@pytest.mark.parametrize("path", [BASE, f"{BASE}/{SOURCE}/dr-1"])
def test_owners_are_refused_and_strangers_asked_for_a_token(api: TestClient, path: str) -> None:
    owner = api.get(path, headers=bearer("alice"))
    assert owner.status_code == 403
    assert owner.json() == {
        "detail": "the owner role may not do this (only admin, grid, operator)",
        "field": None,
    }
    anonymous = api.get(path)
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"] == (
        "a bearer token is needed (v2ghub token add NAME --role ROLE)"
    )


def test_without_a_ven_the_list_is_empty(store: Store) -> None:
    api = client(fill(store), now=local(12))
    response = api.get(BASE, headers=bearer("grid"))
    assert response.status_code == 200
    assert response.json() == []
