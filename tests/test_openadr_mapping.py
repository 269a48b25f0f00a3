"""OpenADR events as store rows, the opt-in rule, the resources file and the price hook."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2ghub.errors import InputError
from v2ghub.live.clock import SystemClock
from v2ghub.live.live_problem import ControlSettings, LiveSite, build_problem
from v2ghub.live.live_state import LiveStatus, PlanSnapshot, SitePlan
from v2ghub.live.openadr_mapping import OPT_IN, OPT_OUT, Flexibility, SiteNow, decide
from v2ghub.live.openadr_resources import Resource, Resources, load_resources
from v2ghub.live.openadr_ven import OpenAdrVen, VenSettings
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.store.openadr_events import EventPrice, VtnEventView
from v2ghub.store.records import EventKind, OcppVersion, PluggedSession
from v2ghub.store.repository import Store

START = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
RESOURCES = Resources(
    {
        "r1": Resource("r1", "depot", (30.0, 20.0, 10.0)),
        "r2": Resource("r2", "yard"),
    }
)
SOURCE = "openadr:ven"


def event(
    name: str,
    kind: str,
    payloads: list[float],
    *,
    resources: list[str] | None = None,
    status: str = "active",
    modification: int = 0,
) -> dict[str, Any]:
    intervals = [
        {
            "dtstart": START + timedelta(minutes=15 * k),
            "duration": timedelta(minutes=15),
            "uid": k,
            "signal_payload": value,
        }
        for k, value in enumerate(payloads)
    ]
    return {
        "event_descriptor": {
            "event_id": "ev-1",
            "modification_number": modification,
            "event_status": status,
        },
        "active_period": {"dtstart": START, "duration": timedelta(minutes=15 * len(payloads))},
        "event_signals": [{"signal_name": name, "signal_type": kind, "intervals": intervals}],
        "targets_by_type": {"resource_id": resources or ["r1"]},
    }


SITES = {"depot": SiteNow("depot", 40.0, 50.0), "yard": SiteNow("yard", 10.0)}
ROOMY = Flexibility((0.25, 1.0, 4.0), (60.0, 50.0, 30.0))


def test_a_dispatch_target_is_an_import_limit_per_interval() -> None:
    decision = decide(
        event("LOAD_DISPATCH", "setpoint", [25.0, 15.0]),
        resources=RESOURCES,
        sites=SITES,
        flexibility=ROOMY,
        source=SOURCE,
    )
    assert decision.opt == OPT_IN
    assert [(r.site_id, r.import_limit_kw, r.requested_reduction_kw) for r in decision.limits] == [
        ("depot", 25.0, 15.0),
        ("depot", 15.0, 25.0),
    ]
    assert [r.external_id for r in decision.limits] == ["ev-1/0/0", "ev-1/0/1"]
    assert decision.limits[1].starts_at == START + timedelta(minutes=15)


def test_a_negative_dispatch_target_is_opted_out_of() -> None:
    decision = decide(
        event("LOAD_DISPATCH", "setpoint", [-5.0]),
        resources=RESOURCES,
        sites=SITES,
        flexibility=ROOMY,
        source=SOURCE,
    )
    assert decision.opt == OPT_OUT
    assert "asks for export" in decision.reason
    assert decision.limits == ()


def test_a_reduction_beyond_the_envelope_is_opted_out_of() -> None:
    tight = Flexibility((0.25, 1.0, 4.0), (20.0, 10.0, 5.0))
    decision = decide(
        event("LOAD_DISPATCH", "setpoint", [10.0, 10.0]),  # 30 kW less for half an hour
        resources=RESOURCES,
        sites=SITES,
        flexibility=tight,
        source=SOURCE,
    )
    assert decision.opt == OPT_OUT
    assert decision.reason == "30 kW less asked for 0.5 h, the fleet can lower 10 kW for 1 h"


def test_without_a_plan_a_target_asks_no_reduction_and_says_so() -> None:
    decision = decide(
        event("LOAD_DISPATCH", "setpoint", [5.0]),
        resources=RESOURCES,
        sites={"depot": SiteNow("depot", None)},
        flexibility=None,
        source=SOURCE,
    )
    assert decision.opt == OPT_IN
    assert "no plan yet" in decision.reason
    assert decision.limits[0].requested_reduction_kw is None


def test_load_control_capacity_and_offset() -> None:
    capacity = decide(
        event("LOAD_CONTROL", "x-loadControlCapacity", [0.5]),
        resources=RESOURCES,
        sites=SITES,
        flexibility=ROOMY,
        source=SOURCE,
    )
    assert capacity.limits[0].import_limit_kw == 25.0  # half of the depot's 50 kW
    offset = decide(
        event("LOAD_CONTROL", "x-loadControlLevelOffset", [12.0]),
        resources=RESOURCES,
        sites=SITES,
        flexibility=ROOMY,
        source=SOURCE,
    )
    assert offset.limits[0].import_limit_kw == 28.0  # 40 kW planned, 12 kW less
    unknown_limit = decide(
        event("LOAD_CONTROL", "x-loadControlCapacity", [0.5], resources=["r2"]),
        resources=RESOURCES,
        sites=SITES,
        flexibility=ROOMY,
        source=SOURCE,
    )
    assert unknown_limit.opt == OPT_OUT
    assert "no configured import limit" in unknown_limit.reason


def test_simple_levels_are_the_resources_caps() -> None:
    decision = decide(
        event("SIMPLE", "level", [0, 1, 3]),
        resources=RESOURCES,
        sites=SITES,
        flexibility=ROOMY,
        source=SOURCE,
    )
    assert [(r.import_limit_kw, r.external_id) for r in decision.limits] == [
        (30.0, "ev-1/0/1"),
        (10.0, "ev-1/0/2"),
    ]


def test_prices_become_price_rows_and_unknown_resources_are_never_dispatched() -> None:
    decision = decide(
        event("ELECTRICITY_PRICE", "price", [2.0], resources=["r1", "elsewhere"]),
        resources=RESOURCES,
        sites=SITES,
        flexibility=ROOMY,
        source=SOURCE,
    )
    assert [(p.site_id, p.import_price_cny_per_kwh) for p in decision.prices] == [("depot", 2.0)]
    nobody = decide(
        event("LOAD_DISPATCH", "setpoint", [5.0], resources=["elsewhere"]),
        resources=RESOURCES,
        sites=SITES,
        flexibility=ROOMY,
        source=SOURCE,
    )
    assert nobody.opt == OPT_OUT
    assert "names no resource of ours" in nobody.reason


def test_the_resources_file(tmp_path: Path) -> None:
    path = tmp_path / "resources.csv"
    path.write_text("resource_id,site_id,level_1_kw,level_2_kw,level_3_kw\nr1,depot,30,,10\n")
    loaded = load_resources(path)
    assert loaded.by_id["r1"].level_caps_kw == (30.0, None, 10.0)
    path.write_text("resource_id,site_id,level_1_kw\nr1,depot,-3\n")
    with pytest.raises(InputError, match=r"resources.csv: row 2, field level_1_kw: must be"):
        load_resources(path)
    path.write_text("resource_id,site_id\nr1,depot\nr1,yard\n")
    with pytest.raises(InputError, match=r"row 3, field resource_id: resource 'r1' is listed"):
        load_resources(path)
    path.write_text("resource,site_id\nr1,depot\n")
    with pytest.raises(InputError, match=r"field resource_id: missing column"):
        load_resources(path)


def test_signing_is_required_off_loopback() -> None:
    with pytest.raises(ValueError, match=r"off loopback, messages must be signed"):
        VenSettings(vtn_url="https://vtn.example.com/oadr", ven_name="v", resources=RESOURCES)


def test_a_signing_ven_needs_the_authority_that_checks_the_vtn(tmp_path: Path) -> None:
    signed = {
        "vtn_url": "https://vtn.example.com/oadr",
        "ven_name": "v",
        "resources": RESOURCES,
        "cert": tmp_path / "ven.pem",
        "key": tmp_path / "ven.key",
        "vtn_fingerprint": "AA:BB",
    }
    with pytest.raises(ValueError, match=r"--openadr-cert needs --openadr-ca-file"):
        VenSettings(**signed)  # type: ignore[arg-type]
    settings = VenSettings(**signed, ca_file=tmp_path / "ca.pem")  # type: ignore[arg-type]
    assert settings.ca_file == tmp_path / "ca.pem"


def _snapshot(lower_kw: float) -> PlanSnapshot:
    return PlanSnapshot(
        at=START,
        planner="fast",
        fallback_reason=None,
        plan_time_s=0.0,
        step=timedelta(minutes=15),
        sites=(SitePlan("depot", 50.0, 0.0, 40.0, (40.0,), 4),),
        vehicles=(),
        envelope=EnvelopeHour(
            start=START,
            planned_kw=40.0,
            durations_h=(0.25, 1.0, 4.0),
            raise_kw=np.zeros(3),
            lower_kw=np.full(3, lower_kw),
            plugged=4,
        ),
    )


async def test_an_opt_out_is_recorded_with_its_reason_and_writes_no_limit(store: Store) -> None:
    status = LiveStatus()
    status.publish(_snapshot(lower_kw=8.0))
    ven = OpenAdrVen(
        VenSettings(vtn_url="http://127.0.0.1:9/oadr", ven_name="ven", resources=RESOURCES),
        store=store,
        clock=SystemClock(),
        status=status,
    )
    answer = await ven.on_event(event("LOAD_DISPATCH", "setpoint", [10.0]))
    assert answer == OPT_OUT
    (logged,) = store.events(kind=EventKind.OPENADR_OPT_OUT)
    assert "30 kW less asked for 0.25 h, the fleet can lower 8 kW" in logged.detail
    assert store.grid_events() == []
    (view,) = store.vtn_events()
    assert (view.opt_state, view.site_ids) == (OPT_OUT, ("depot",))
    # A modification within the envelope replaces the answer and writes the limit...
    answer = await ven.on_event(event("LOAD_DISPATCH", "setpoint", [35.0], modification=1))
    assert answer == OPT_IN
    (row,) = store.grid_events()
    assert (row.import_limit_kw, row.external_id) == (35.0, "ev-1/1/0")
    # ...and a cancel cancels it.
    await ven.on_event(
        event("LOAD_DISPATCH", "setpoint", [35.0], status="cancelled", modification=2)
    )
    (row,) = store.grid_events()
    assert row.cancelled_by == "openadr:ven"
    if ven.client.client_session is not None:
        await ven.client.client_session.close()


def test_price_events_price_the_plan_only_where_every_plugged_site_has_one(store: Store) -> None:
    settings = ControlSettings(city="Shenzhen", sites=(LiveSite("depot", 50.0),))
    session = PluggedSession(
        station_id="S1",
        evse_id=1,
        transaction_id="t1",
        site_id="depot",
        ocpp_version=OcppVersion.V21,
        started_at=START,
        departure_at=START + timedelta(hours=4),
        battery_kwh=60.0,
        energy_kwh=30.0,
        target_energy_kwh=48.0,
        min_energy_kwh=12.0,
        max_charge_kw=11.0,
        max_discharge_kw=11.0,
        import_register_wh=0,
        export_register_wh=0,
        last_meter_at=None,
    )
    view = VtnEventView(
        SOURCE,
        "p1",
        0,
        "ELECTRICITY_PRICE",
        ("depot",),
        START,
        START + timedelta(hours=1),
        OPT_IN,
        "",
        "active",
        START,
        START,
    )
    store.apply_vtn_event(
        view,
        prices=[EventPrice("depot", START, START + timedelta(hours=1), 9.5, "p1/0/0")],
        at=START,
    )
    prices = store.prices_overlapping(START, START + timedelta(hours=24))
    live = build_problem([session], now=START, settings=settings, prices=prices)
    import_price = live.problem.import_price_cny_per_kwh
    assert import_price[:4].tolist() == [9.5] * 4
    assert import_price[4] != 9.5
    other = build_problem(
        [session, replace_site(session, "yard")], now=START, settings=settings, prices=prices
    )
    assert 9.5 not in other.problem.import_price_cny_per_kwh.tolist()
    assert any("price events not applied" in note for note in other.notes)


def replace_site(session: PluggedSession, site_id: str) -> PluggedSession:
    return replace(session, site_id=site_id, station_id="S2", transaction_id="t2")
