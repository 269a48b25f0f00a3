"""What the grid looks like without the fleet: base load and renewable surplus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class GridSignals:
    """Per-step grid context on a :class:`~v2ghub.model.time_grid.TimeGrid`.

    ``base_load_kw`` is the load of the area without the fleet's charging;
    ``renewable_surplus_kw`` is renewable output the grid would otherwise curtail.
    ``label`` says where they come from (``"synthetic"`` for generated shapes).
    """

    base_load_kw: npt.NDArray[np.float64]
    renewable_surplus_kw: npt.NDArray[np.float64]
    label: str = "synthetic"

    def __post_init__(self) -> None:
        if self.base_load_kw.shape != self.renewable_surplus_kw.shape:
            raise ValueError("base_load_kw and renewable_surplus_kw must have the same shape")
        if np.any(self.renewable_surplus_kw < 0):
            raise ValueError("renewable_surplus_kw must be >= 0")
