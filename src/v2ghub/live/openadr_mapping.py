"""What an OpenADR 2.0b event asks of our sites, and whether we opt in: pure functions
from the event (as ``openleadr`` parses it) to store rows.

Each interval of each signal becomes, at each of our sites the event names, one row:

- ``LOAD_DISPATCH`` (``setpoint``: a target for the site's net power, kW; ``delta``: a
  reduction from the site's planned power, kW): a target ``T >= 0`` is an import limit of
  ``T`` kW. A negative target asks the site to export, which site limits cannot force
  (they only cap): the VEN opts out and says so.
- ``LOAD_CONTROL``: ``x-loadControlCapacity`` (a fraction 0-1 of the site's configured
  import limit), ``x-loadControlLevelOffset`` or ``delta`` (kW less than the site's planned
  import, never below 0) and ``x-loadControlSetpoint`` (kW): an import limit.
- ``SIMPLE`` (``level`` 0-3): the site's cap at that level from the resources file
  (:mod:`v2ghub.live.openadr_resources`); level 0, or a level without a cap, writes no row.
- ``ELECTRICITY_PRICE`` (``price``): the site's import price, CNY/kWh, instead of its
  tariff (:mod:`v2ghub.store.grid_prices`). Relative prices are opted out of.

Limits are grid events of kind ``demand-response`` with ``requested_reduction_kw`` (the
site's planned import minus the limit) where the plan is known.

Opting in: the reduction asked (summed over the event's sites, the largest of its
intervals) must be within the fleet's flexibility envelope
(:func:`v2ghub.regulation.envelope.fleet_envelope`, from the control loop's latest plan)
for the event's duration: the envelope's shortest duration at least as long as the
event (its longest, and the reason says so, for a longer event). The envelope is the
fleet's, not a site's: for an event naming some sites, it is an upper bound. With no plan
yet, the sites are taken as planned at 0 kW (nothing plugged is planned), so a target
``>= 0`` asks no reduction and is opted in to, and the reason says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from v2ghub.live.openadr_resources import Resources
from v2ghub.store.openadr_events import EventLimit, EventPrice

OPT_IN = "optIn"
OPT_OUT = "optOut"
ENDED = ("cancelled", "completed")
EVENT_ID_LENGTH = 96
TOLERANCE_KW = 1e-6


@dataclass(frozen=True)
class SiteNow:
    """What the VEN knows of one of our sites when an event arrives.

    ``planned_kw`` is the site's planned net power now (kW, + import), None with no plan
    yet; ``import_limit_kw`` its configured import limit (``inf``: none).
    """

    site_id: str
    planned_kw: float | None
    import_limit_kw: float = math.inf


@dataclass(frozen=True)
class Flexibility:
    """The fleet's envelope: how far it can lower its power (kW) and hold it, per duration
    (h); None when the control loop has not planned yet."""

    durations_h: tuple[float, ...]
    lower_kw: tuple[float, ...]

    def lower_for(self, duration_h: float) -> tuple[float, float]:
        """(kW, the duration it holds for, h) for a hold of ``duration_h``."""
        for hold_h, lower_kw in zip(self.durations_h, self.lower_kw, strict=True):
            if hold_h >= duration_h - 1e-9:
                return lower_kw, hold_h
        return self.lower_kw[-1], self.durations_h[-1]


@dataclass(frozen=True)
class Decision:
    """What one modification of a VTN event becomes."""

    event_id: str
    modification_number: int
    status: str
    signal_name: str
    site_ids: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    opt: str
    reason: str
    limits: tuple[EventLimit, ...] = ()
    prices: tuple[EventPrice, ...] = ()
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class _Interval:
    starts_at: datetime
    ends_at: datetime
    payload: float
    label: str


class _OptOutError(Exception):
    """The event cannot be delivered: the message is the reason."""


def _intervals(signal: Mapping[str, Any], label: str) -> list[_Interval]:
    intervals = []
    for k, interval in enumerate(signal.get("intervals") or []):
        starts_at = interval.get("dtstart")
        duration = interval.get("duration")
        payload = interval.get("signal_payload")
        if not isinstance(starts_at, datetime) or starts_at.tzinfo is None:
            raise _OptOutError(f"interval {k} has no timezone-aware start")
        if not isinstance(duration, timedelta) or duration <= timedelta(0):
            raise _OptOutError(f"interval {k} has no positive duration")
        try:
            value = float(payload)
        except (TypeError, ValueError):
            raise _OptOutError(
                f"interval {k} has a payload that is not a number: {payload!r}"
            ) from None
        if not math.isfinite(value):
            raise _OptOutError(f"interval {k} has a payload that is not finite: {payload!r}")
        uid = interval.get("uid", k)
        intervals.append(_Interval(starts_at, starts_at + duration, value, f"{label}{uid}"))
    if not intervals:
        raise _OptOutError("a signal without intervals")
    return intervals


def _sites(
    event: Mapping[str, Any], resources: Resources
) -> tuple[list[str], dict[str, list[str]]]:
    """Our sites the event names (all of ours when it names no resource), and for each
    the resources named there."""
    named = (event.get("targets_by_type") or {}).get("resource_id")
    if named is None:
        ids = list(resources.by_id)
    else:
        ids = [named] if isinstance(named, str) else list(named)
    chosen: dict[str, list[str]] = {}
    for resource_id in ids:
        resource = resources.by_id.get(resource_id)
        if resource is not None:
            chosen.setdefault(resource.site_id, []).append(resource_id)
    return list(chosen), chosen


def _limit_kw(
    name: str, kind: str, payload: float, site: SiteNow, levels: Sequence[float | None]
) -> float | None:
    """The import limit of one interval at one site (None: no row)."""
    planned = site.planned_kw
    if name == "LOAD_DISPATCH":
        if kind == "setpoint":
            target = payload
        elif kind == "delta":
            if planned is None:
                raise _OptOutError("a dispatch delta needs the site's plan, and there is none yet")
            target = planned - payload
        else:
            raise _OptOutError(f"LOAD_DISPATCH signal type {kind!r} is not supported")
        if target < 0:
            raise _OptOutError(
                f"site {site.site_id}: target {target:g} kW asks for export, which site limits "
                "cannot force (they only cap import)"
            )
        return target
    if name == "LOAD_CONTROL":
        if kind == "x-loadControlCapacity":
            if not 0 <= payload <= 1:
                raise _OptOutError(f"x-loadControlCapacity must be within 0-1, got {payload:g}")
            if math.isinf(site.import_limit_kw):
                raise _OptOutError(
                    f"site {site.site_id} has no configured import limit to take a capacity of"
                )
            return payload * site.import_limit_kw
        if kind in ("x-loadControlLevelOffset", "delta"):
            if planned is None:
                raise _OptOutError(
                    "a load control offset needs the site's plan, and there is none yet"
                )
            return max(0.0, planned - payload)
        if kind == "x-loadControlSetpoint":
            if payload < 0:
                raise _OptOutError(f"x-loadControlSetpoint {payload:g} kW asks for export")
            return payload
        raise _OptOutError(f"LOAD_CONTROL signal type {kind!r} is not supported")
    if name == "SIMPLE":
        level = round(payload)
        if level != payload or not 0 <= level <= 3:
            raise _OptOutError(f"SIMPLE level must be 0, 1, 2 or 3, got {payload:g}")
        return None if level == 0 else levels[level - 1]
    raise _OptOutError(f"signal {name!r} is not supported")


def _level_caps(site_id: str, named: Sequence[str], resources: Resources) -> list[float | None]:
    """The site's cap per SIMPLE level: the lowest of its named resources' caps."""
    caps: list[float | None] = []
    for level in range(3):
        values = [
            cap
            for resource_id in named
            if (cap := resources.by_id[resource_id].level_caps_kw[level]) is not None
        ]
        caps.append(min(values) if values else None)
    return caps


def decide(
    event: Mapping[str, Any],
    *,
    resources: Resources,
    sites: Mapping[str, SiteNow],
    flexibility: Flexibility | None,
    source: str,
) -> Decision:
    """The rows and the answer for one modification of a VTN event (see the module)."""
    descriptor = event.get("event_descriptor") or {}
    event_id = str(descriptor.get("event_id", ""))
    modification = int(descriptor.get("modification_number") or 0)
    status = str(descriptor.get("event_status") or "far")
    signals = event.get("event_signals") or []
    if isinstance(signals, Mapping):
        signals = signals.get("event_signals") or []
    signal_name = ",".join(str(s.get("signal_name")) for s in signals) or "none"
    period = event.get("active_period") or {}
    starts_at = period.get("dtstart")
    duration = period.get("duration") or timedelta(0)
    if not isinstance(starts_at, datetime) or starts_at.tzinfo is None:
        starts_at = datetime.fromtimestamp(0).astimezone()
    ends_at = starts_at + duration
    site_ids, named = _sites(event, resources)

    def decision(opt: str, reason: str, **rows: Any) -> Decision:
        return Decision(
            event_id=event_id,
            modification_number=modification,
            status=status,
            signal_name=signal_name,
            site_ids=tuple(site_ids),
            starts_at=starts_at,
            ends_at=ends_at,
            opt=opt,
            reason=reason,
            **rows,
        )

    if status in ENDED:
        return decision(OPT_IN, f"{status} by the VTN")
    try:
        limits, prices, notes = _rows(
            event_id,
            modification,
            signals=signals,
            site_ids=site_ids,
            named=named,
            resources=resources,
            sites=sites,
            flexibility=flexibility,
            source=source,
        )
    except _OptOutError as why:
        return decision(OPT_OUT, str(why))
    reason = "; ".join(notes) if notes else "within the fleet's flexibility"
    return decision(OPT_IN, reason, limits=tuple(limits), prices=tuple(prices), notes=tuple(notes))


def _rows(
    event_id: str,
    modification: int,
    *,
    signals: Sequence[Mapping[str, Any]],
    site_ids: Sequence[str],
    named: Mapping[str, Sequence[str]],
    resources: Resources,
    sites: Mapping[str, SiteNow],
    flexibility: Flexibility | None,
    source: str,
) -> tuple[list[EventLimit], list[EventPrice], list[str]]:
    if not event_id or len(event_id) > EVENT_ID_LENGTH:
        raise _OptOutError(f"event id must be 1-{EVENT_ID_LENGTH} characters, got {event_id!r}")
    if not site_ids:
        raise _OptOutError("the event names no resource of ours (see the resources file)")
    if not signals:
        raise _OptOutError("the event has no signal")
    limits: list[EventLimit] = []
    prices: list[EventPrice] = []
    notes: list[str] = []
    no_plan = all(sites.get(s, SiteNow(s, None)).planned_kw is None for s in site_ids)
    for k, signal in enumerate(signals):
        name = str(signal.get("signal_name"))
        kind = str(signal.get("signal_type"))
        label = f"{k}." if len(signals) > 1 else ""
        for interval in _intervals(signal, label):
            external_id = f"{event_id}/{modification}/{interval.label}"
            for site_id in site_ids:
                site = sites.get(site_id, SiteNow(site_id, None))
                if name == "ELECTRICITY_PRICE":
                    if kind != "price":
                        raise _OptOutError(f"ELECTRICITY_PRICE of type {kind!r} is not supported")
                    prices.append(
                        EventPrice(
                            site_id,
                            interval.starts_at,
                            interval.ends_at,
                            interval.payload,
                            external_id,
                        )
                    )
                    continue
                caps = _level_caps(site_id, named[site_id], resources)
                limit_kw = _limit_kw(name, kind, interval.payload, site, caps)
                if limit_kw is None:
                    continue
                planned = site.planned_kw
                limits.append(
                    EventLimit(
                        site_id=site_id,
                        starts_at=interval.starts_at,
                        ends_at=interval.ends_at,
                        import_limit_kw=limit_kw,
                        external_id=external_id,
                        reason=(
                            f"OpenADR {name} {event_id} (modification {modification}, "
                            f"{source}): {interval.payload:g} -> import limit {limit_kw:g} kW"
                        ),
                        requested_reduction_kw=(
                            None if planned is None else max(0.0, planned - limit_kw)
                        ),
                    )
                )
    if limits:
        notes.extend(_check_flexibility(limits, sites, flexibility, no_plan=no_plan))
    return limits, prices, notes


def _check_flexibility(
    limits: Sequence[EventLimit],
    sites: Mapping[str, SiteNow],
    flexibility: Flexibility | None,
    *,
    no_plan: bool,
) -> list[str]:
    """Notes for an event the fleet can deliver; ``_OptOutError`` for one it cannot."""
    asked: dict[tuple[datetime, datetime], float] = {}
    for limit in limits:
        planned = sites.get(limit.site_id, SiteNow(limit.site_id, None)).planned_kw
        reduction = max(0.0, (planned or 0.0) - (limit.import_limit_kw or 0.0))
        key = (limit.starts_at, limit.ends_at)
        asked[key] = asked.get(key, 0.0) + reduction
    most_kw = max(asked.values())
    first = min(start for start, _ in asked)
    last = max(end for _, end in asked)
    duration_h = (last - first).total_seconds() / 3600
    if no_plan:
        if most_kw > TOLERANCE_KW:  # cannot happen: no plan is 0 kW planned
            raise _OptOutError(f"no plan yet, and {most_kw:g} kW less is asked")
        return ["no plan yet: the sites are taken as planned at 0 kW, so no reduction is asked"]
    if most_kw <= TOLERANCE_KW:
        return [f"asks no reduction of the planned power ({duration_h:g} h)"]
    if flexibility is None:
        raise _OptOutError(
            f"{most_kw:g} kW less is asked and the fleet's envelope is not known yet"
        )
    lower_kw, hold_h = flexibility.lower_for(duration_h)
    held = "" if hold_h >= duration_h - 1e-9 else f" (the envelope looks {hold_h:g} h ahead)"
    if most_kw > lower_kw + TOLERANCE_KW:
        raise _OptOutError(
            f"{most_kw:.3g} kW less asked for {duration_h:g} h, the fleet can lower "
            f"{lower_kw:.3g} kW for {hold_h:g} h{held}"
        )
    return [f"{most_kw:.3g} kW less asked for {duration_h:g} h, within {lower_kw:.3g} kW{held}"]
