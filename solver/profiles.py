"""Hourly rate profiles and commitment prices: the data the hourly plan (``milp_hourly.py``) needs.

``rate_profile_csv`` files hold ``hour,rate_per_s`` rows for hours 0..23 (requests/s); ``read_profile_csvs``
turns them into ``rate_profile`` lists when a scenario file is loaded, naming ``file:line N:column`` on error.
``catalogs/commitments.csv`` holds published 1-year no-upfront commitment discounts per cloud and instance family
(with source URL and date); ``reserved_prices`` turns them into a per-VM commitment price for each pool.
"""
from __future__ import annotations

import csv
import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import CatalogError, ScenarioError
from .field_checks import HOURS_PER_DAY, parse_int, parse_number
from .io import MAX_YAML_BYTES, read_text
from .resources import catalog_dir
from .schema import Scenario

COMMITMENT_COLUMNS = ("cloud", "family", "discount", "term", "payment", "source", "retrieved")


def read_profile_csv(path: Path) -> list[float]:
    """The 24 hourly rates (requests/s) of a ``hour,rate_per_s`` CSV.

    Raises:
        ScenarioError: missing file or column, a bad or repeated hour, a bad rate, or hours missing.
    """
    rates: dict[int, float] = {}
    # 24 rows fit far below the YAML limit (read_text drops a spreadsheet's byte-order mark)
    text = read_text(path, MAX_YAML_BYTES, ScenarioError, "rate profile CSV")
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None or not {"hour", "rate_per_s"} <= set(header):
        raise ScenarioError("expected the header hour,rate_per_s", path=str(path), where="line 1")
    for line, cells in enumerate(rows, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise ScenarioError(f"has {len(cells)} cells, the header has {len(header)}", path=str(path),
                                where=f"line {line}")
        row = dict(zip(header, cells))
        try:
            hour = parse_int(row["hour"])
        except ValueError:
            raise ScenarioError(f"{row['hour']!r} is not an hour 0..23", path=str(path), where=f"line {line}",
                                field="hour") from None
        if not 0 <= hour < HOURS_PER_DAY or hour in rates:
            why = "repeated" if hour in rates else "outside 0..23"
            raise ScenarioError(f"hour {hour} is {why}", path=str(path), where=f"line {line}", field="hour")
        try:
            rate = parse_number(row["rate_per_s"])
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and rate >= 0):
            raise ScenarioError(f"{row['rate_per_s']!r} is not a non-negative finite rate (requests/s)",
                                path=str(path), where=f"line {line}", field="rate_per_s")
        rates[hour] = rate
    missing = [h for h in range(HOURS_PER_DAY) if h not in rates]
    if missing:
        raise ScenarioError(f"hours {missing} have no rate (give every hour 0..23)", path=str(path))
    return [rates[h] for h in range(HOURS_PER_DAY)]


def read_profile_csvs(data: Any, path: str, base: Path) -> Any:
    """``data`` (a scenario mapping) with each workload's ``rate_profile_csv`` read into ``rate_profile``."""
    if not isinstance(data, dict) or not isinstance(data.get("workloads"), list):
        return data
    workloads = []
    for i, w in enumerate(data["workloads"]):
        if isinstance(w, dict) and isinstance(w.get("rate_profile_csv"), str):
            if w.get("rate_profile") is not None:
                raise ScenarioError("give rate_profile or rate_profile_csv, not both", path=path,
                                    field=f"workloads.{i}.rate_profile_csv")
            csv_path = Path(w["rate_profile_csv"])
            w = {**w, "rate_profile": read_profile_csv(csv_path if csv_path.is_absolute() else base / csv_path)}
        workloads.append(w)
    return {**data, "workloads": workloads}


@lru_cache(maxsize=4)
def load_commitments(path: Path | None = None) -> pd.DataFrame:
    """The commitment table (``catalogs/commitments.csv``): one row per cloud and instance family.

    Raises:
        CatalogError: a missing column or a discount outside [0, 1).
    """
    path = path or catalog_dir() / "commitments.csv"
    frame = pd.read_csv(path, dtype=str).fillna("")
    missing = [c for c in COMMITMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(f"missing columns {missing}", path=str(path))
    discount = pd.to_numeric(frame["discount"], errors="coerce")
    bad = np.flatnonzero(~((discount >= 0) & (discount < 1)).to_numpy())
    if len(bad):
        raise CatalogError("discount must lie in [0, 1)", path=str(path), where=f"row {bad[0] + 2}", field="discount")
    return frame.assign(discount=discount.astype(float))


def _in_family(instance_type: str, family: str) -> bool:
    """g6e matches g6e.xlarge, a2-highgpu matches a2-highgpu-1g, Standard_NC matches Standard_NC24ads_A100_v4."""
    return instance_type == family or (instance_type.startswith(family) and
                                       (family.endswith("_") or instance_type[len(family)] in ".-_0123456789"))


def commitment_discount(cloud: str, instance_type: str, scenario: Scenario) -> float | None:
    """The 1-year commitment discount of an offering: the longest matching family row of the commitment table,
    else the scenario's ``commitment_discount``, else None (no commitment offered)."""
    table = load_commitments()
    match = np.array([_in_family(instance_type, f) for f in table["family"]], bool)
    rows = table[(table["cloud"] == cloud).to_numpy() & match]
    if len(rows):
        return float(rows.loc[rows["family"].str.len().idxmax(), "discount"])
    return scenario.commitment_discount


def reserved_prices(pools: pd.DataFrame, scenario: Scenario) -> np.ndarray:
    """USD/h of one committed VM per pool (scaled by ``commitment_price_scale``); NaN where the pool is spot
    (spot capacity cannot be committed) or its offering has no commitment discount."""
    out = np.full(len(pools), math.nan)
    for k, p in enumerate(pools.itertuples(index=False)):
        d = commitment_discount(str(p.cloud), str(p.instance_type), scenario)
        if p.pricing == "on_demand" and d is not None:
            out[k] = float(p.unit_usd_per_hour) * (1.0 - d) * scenario.commitment_price_scale
    return out
