"""How much regulation a fleet can promise: per-vehicle headroom that lasts.

The arithmetic lives in :mod:`v2ghub.model.headroom` (the planners use it too); this
module is where the regulation service finds it.
"""

from v2ghub.model.headroom import Headroom, fit_sites, headroom, site_share

__all__ = ["Headroom", "fit_sites", "headroom", "site_share"]
