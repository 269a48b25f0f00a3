"""v2ghub: vehicle-to-grid aggregation, as a digital twin and (later) a live aggregator.

Sign convention everywhere: positive power charges the vehicle (import from the grid),
negative power discharges it (vehicle-to-grid export). See :mod:`v2ghub.units`.
"""

__version__ = "0.1.0"
