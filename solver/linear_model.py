"""The MILP as plain data: a ``LinearModel`` (variables with bounds and integrality, named rows) and the
``Problem`` maps from candidate rows and pools to its variables. ``milp.py`` and ``milp_hourly.py`` fill it,
``backends.py`` solves it, ``extract.py`` reads a solution back through it."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class HourlyVars:
    """Variable indices of the hourly model: x[i, h] (-1 where f = 0), base[p], burst[p, h] (online pools only;
    -1 rows for offline pools), the hourly rate factors f[i, h] and each pool's commitment price (NaN: none)."""

    x: np.ndarray
    base: np.ndarray
    burst: np.ndarray
    factor: np.ndarray
    reserved_usd_per_hour: np.ndarray


Row = tuple[str, np.ndarray, np.ndarray, float, float]  # name, variable indices, coefficients, lo, hi


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0) + 1
        seen[name] = k
        out.append(name if k == 1 else f"{name}_{k}")
    return out


@dataclass
class LinearModel:
    """A MILP as plain arrays: variables with bounds and integrality, named rows lo <= a.x <= hi."""

    names: list[str] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def add_vars(self, prefix: str, keys: list[str], lower: float, upper: np.ndarray | float, integer: bool,
                 cost: np.ndarray | float = 0.0) -> np.ndarray:
        start = len(self.names)
        n = len(keys)
        self.names.extend(f"{prefix}[{k}]" for k in keys)
        self.lower.extend([lower] * n)
        self.upper.extend(np.broadcast_to(np.asarray(upper, float), (n,)).tolist())
        self.integer.extend([integer] * n)
        self.cost.extend(np.broadcast_to(np.asarray(cost, float), (n,)).tolist())
        return np.arange(start, start + n)

    def add_row(self, name: str, index: np.ndarray, coef: np.ndarray, lo: float, hi: float) -> None:
        self.rows.append((name, np.asarray(index, int), np.asarray(coef, float), lo, hi))

    def safe_names(self) -> tuple[list[str], list[str]]:
        """Variable and row names every back end and LP/MPS writer accepts: characters other than letters,
        digits, ``_`` and ``.`` become ``_``; a name that collides after that gets ``_2``, ``_3``, ..."""
        return _unique([_safe(n) for n in self.names]), _unique([_safe(r[0]) for r in self.rows])

    @property
    def n_integer(self) -> int:
        return int(sum(self.integer))


@dataclass
class Problem:
    """The model plus the maps from table rows and pools to variable indices."""

    model: LinearModel
    rows: pd.DataFrame
    pools: pd.DataFrame
    x: np.ndarray
    n: np.ndarray
    t: np.ndarray  # -1 for online pools
    z: dict[str, int] = field(default_factory=dict)
    hourly: HourlyVars | None = None  # the hourly extension (milp_hourly.py) when a workload has a rate profile
