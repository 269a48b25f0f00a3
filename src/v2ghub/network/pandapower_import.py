"""pandapower, imported once without the environment it leaves behind.

pandapower imports pandera, whose import sets ``PYARROW_IGNORE_TIMEZONE=1`` and
``SPARK_LOCAL_IP`` in the process's environment (for pyspark, installed or not). With the
first set, pyarrow converts a time-zone-aware datetime as if its wall time were UTC: 09:00
in Shanghai became 09:00 UTC, eight hours off, in every table built from such datetimes
later in the process. The variables this import sets are removed again.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType

_SET_ON_IMPORT = ("PYARROW_IGNORE_TIMEZONE", "SPARK_LOCAL_IP")
_lock = threading.Lock()


def pandapower() -> ModuleType:
    """The ``pandapower`` package (with ``pandapower.networks`` loaded)."""
    with _lock:
        before = {name: os.environ.get(name) for name in _SET_ON_IMPORT}
        try:
            import pandapower  # noqa: PLC0415 - heavy: only where feeders are asked for
            import pandapower.networks  # noqa: PLC0415
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    module: ModuleType = pandapower
    return module
