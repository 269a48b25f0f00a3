"""Connection limits of sites (a station, a feeder or a transformer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SiteLimits:
    """Import and export limits per site, in kW at the connection point.

    ``np.inf`` means no limit. A vehicle's ``site_index`` points into these arrays.
    """

    site_ids: tuple[str, ...]
    import_limit_kw: npt.NDArray[np.float64]
    export_limit_kw: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        n = len(self.site_ids)
        for name in ("import_limit_kw", "export_limit_kw"):
            values = getattr(self, name)
            if values.shape != (n,):
                raise ValueError(f"SiteLimits.{name} must have shape ({n},), got {values.shape}")
            bad = np.flatnonzero(~(values >= 0))
            if bad.size:
                raise ValueError(
                    f"SiteLimits.{name} must be >= 0: site {self.site_ids[bad[0]]!r} "
                    f"has {values[bad[0]]}"
                )
        if len(set(self.site_ids)) != n:
            raise ValueError("SiteLimits.site_ids must be unique")

    @property
    def n_sites(self) -> int:
        """Number of sites."""
        return len(self.site_ids)

    @staticmethod
    def unlimited(site_ids: tuple[str, ...]) -> SiteLimits:
        """Sites with no import or export limit."""
        n = len(site_ids)
        return SiteLimits(site_ids, np.full(n, np.inf), np.full(n, np.inf))
