"""The candidate table's contract: its declared columns, and the rules every stage reads from it.

One row of the candidate table is a demand on a pool configuration (see ``candidates.py``). The columns are
declared once here (``CANDIDATE_COLUMNS``, with defaults a producer may leave to ``complete``) and checked where the MILP receives a table (``check_table``), so the
Mélange adapter and the scenario builder produce the same shape. The rules a row is kept or rejected by also
live here, once: KV offload at or above the minimum that fits (``offload_fits``), the SLO bounds
(``SLO_RULES``), and the structured ``Rejection`` a rejected row carries (a code plus the value and bound,
never a sentence to parse back). ``verify.py`` keeps its own, deliberately independent copy of these rules.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .schema import Quota

REQUIRED = None


@dataclass(frozen=True)
class Column:
    """A declared column: its kind (``str``, ``int``, ``float`` (NaN allowed), ``bool``) and the default a
    producer may leave to ``complete`` (``REQUIRED``: none)."""

    kind: str
    default: object = REQUIRED


_PREDICTED = {c: Column("float", 0.0) for c in ("min_offload_ratio", "gpu_mem_gib", "gpu_mem_usable_gib",
                                                 "host_kv_gib_per_vm", "ttft_s", "tpot_s", "e2e_s", "tokens_per_s")}
_BOUNDS = {c: Column("float", math.nan) for c in ("max_ttft_s", "max_tpot_s", "max_e2e_s", "min_tokens_per_s")}
CANDIDATE_COLUMNS: dict[str, Column] = {
    # the demand (workload x size bucket) and its sharing group
    "demand": Column("str"), "workload": Column("str"), "model": Column("str"), "mode": Column("str"),
    "group": Column("str"), "fraction": Column("float", 1.0), "rate_per_s": Column("float"),
    "num_requests": Column("float"), "deadline_hours": Column("float"),
    # request lengths in tokens (0 where a producer has none, e.g. Melange profiles measured per bucket)
    "input_tokens": Column("int", 0), "output_tokens": Column("int", 0),
    # the offering and the pool configuration on it
    "pool": Column("str"), "offer": Column("str"), "cloud": Column("str"), "region": Column("str"),
    "instance_type": Column("str"), "pricing": Column("str"), "gpu": Column("str"), "gpu_count": Column("int"),
    "host_mem_gib": Column("float", 0.0), "constrained": Column("bool", False),
    "unit_usd_per_hour": Column("float"), "tensor_parallel": Column("int"), "batch_size": Column("int"),
    "offload_ratio": Column("float"),
    # predictions for the demand on the configuration, and the demand's SLO bounds (NaN: none)
    "requests_per_s_per_vm": Column("float"), **_PREDICTED, **_BOUNDS,
}
_KIND_CHECK = {"str": pd.api.types.is_string_dtype, "int": pd.api.types.is_integer_dtype,
               "float": pd.api.types.is_numeric_dtype, "bool": pd.api.types.is_bool_dtype}


def complete(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every defaulted column it lacks filled in (a producer gives only what it knows)."""
    fill = {c: col.default for c, col in CANDIDATE_COLUMNS.items()
            if c not in table.columns and col.default is not REQUIRED}
    return table.assign(**fill)


def check_table(table: pd.DataFrame) -> None:
    """Raise ``TypeError`` naming the columns a candidate table lacks or holds with the wrong kind."""
    missing = [c for c in CANDIDATE_COLUMNS if c not in table.columns]
    wrong = [f"{c} ({table[c].dtype}, expected {col.kind})" for c, col in CANDIDATE_COLUMNS.items()
             if c in table.columns and len(table) and not _KIND_CHECK[col.kind](table[c])]
    if missing or wrong:
        raise TypeError(f"not a candidate table: missing {missing}, wrong kind {wrong}")


class Rejection(str, enum.Enum):
    """Why a (demand, configuration) row is not a candidate; the first that applies, in this order."""

    NO_FIT = "no_fit"                        # weights (or one layer's KV) do not fit even with full offload
    OFFLOAD_BELOW_MIN = "offload_below_min"  # this offload level keeps too much KV on the GPU
    HOST_MEMORY = "host_memory"              # the offloaded KV does not fit usable host RAM
    TTFT = "ttft"
    TPOT = "tpot"
    E2E = "e2e"
    TPS = "tps"


@dataclass(frozen=True)
class SloRule:
    """One SLO bound: ``value`` must be <= ``bound`` (sense +1) or >= it (sense -1)."""

    code: Rejection
    value: str
    bound: str
    sense: int
    label: str
    scale: float
    unit: str


SLO_RULES = (SloRule(Rejection.TTFT, "ttft_s", "max_ttft_s", 1, "TTFT", 1e3, "ms"),
             SloRule(Rejection.TPOT, "tpot_s", "max_tpot_s", 1, "TPOT", 1e3, "ms"),
             SloRule(Rejection.E2E, "e2e_s", "max_e2e_s", 1, "end-to-end latency", 1.0, "s"),
             SloRule(Rejection.TPS, "tokens_per_s", "min_tokens_per_s", -1, "TPS", 1.0, "tokens/s"))
SLO_RULE = {r.code: r for r in SLO_RULES}
MEMORY_TEXT = {Rejection.NO_FIT: "model does not fit GPU memory even with full KV offload",
               Rejection.OFFLOAD_BELOW_MIN: "KV cache does not fit GPU memory at this offload ratio",
               Rejection.HOST_MEMORY: "offloaded KV does not fit host memory"}


def offload_fits(offload_ratio: Any, min_offload_ratio: Any) -> np.ndarray:
    """The KV offload rule: a minimum exists (the model fits at all) and the ratio is at or above it."""
    ratio = np.asarray(offload_ratio, float)
    minimum = np.asarray(min_offload_ratio, float)
    return np.isfinite(minimum) & (ratio + 1e-9 >= minimum)


def slo_broken(rule: SloRule, rows: pd.DataFrame) -> np.ndarray:
    """Rows whose ``rule.value`` breaks a given (finite) ``rule.bound``."""
    limit = rows[rule.bound].to_numpy(float)
    v = rows[rule.value].to_numpy(float)
    return np.isfinite(limit) & ((v > limit * (1 + 1e-12)) if rule.sense > 0 else (v < limit))


def classify(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row: the ``Rejection`` code ('' when the row is a candidate, host memory aside) and the bound broken
    (NaN for memory codes). Host memory depends on the offering and is checked after the join."""
    code = pd.Series("", index=rows.index, dtype=object)
    bound = pd.Series(np.nan, index=rows.index, dtype=float)
    minimum = rows["min_offload_ratio"].to_numpy(float)
    code[~np.isfinite(minimum)] = Rejection.NO_FIT.value
    code[(code == "") & ~offload_fits(rows["offload_ratio"], minimum)] = Rejection.OFFLOAD_BELOW_MIN.value
    for rule in SLO_RULES:
        hit = (code == "").to_numpy() & slo_broken(rule, rows)
        code[hit] = rule.code.value
        bound[hit] = rows[rule.bound].to_numpy(float)[hit]
    if "requests_per_s_per_vm" in rows and "mode" in rows:
        # an online row whose bounds hold at idle but at no rate the capacity search can resolve carries nothing
        # (the MILP would need infinitely many of it): rejected under its first bound
        idle = ((rows["mode"] == "online").to_numpy() & ~(rows["requests_per_s_per_vm"].to_numpy(float) > 0))
        for rule in SLO_RULES:
            limit = rows[rule.bound].to_numpy(float)
            hit = (code == "").to_numpy() & idle & np.isfinite(limit)
            code[hit] = rule.code.value
            bound[hit] = limit[hit]
    return code, bound


def host_memory_exceeded(rows: pd.DataFrame, host_memory_utilization: float) -> pd.Series:
    """Rows whose offloaded KV per VM exceeds the usable host RAM of their offering."""
    return rows["host_kv_gib_per_vm"] > rows["host_mem_gib"] * host_memory_utilization


def rejection_text(code: str, bound: float) -> str:
    """The one-line reason a report shows for a rejection code ('' for a candidate)."""
    if not code:
        return ""
    rejection = Rejection(code)
    if rejection in MEMORY_TEXT:
        return MEMORY_TEXT[rejection]
    return f"misses {SLO_RULE[rejection].label} bound {bound:g}"


def quota_matches(quota: Quota, offers: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the offerings (or pools) a quota applies to."""
    mask = np.ones(len(offers), dtype=bool)
    for key in ("instance_type", "region", "cloud", "gpu", "pricing"):
        value = getattr(quota, key)
        if value is not None:
            mask &= (offers[key] == value).to_numpy()
    return mask


def demand_load(rows: pd.DataFrame) -> np.ndarray:
    """VMs (online) or VM-hours (offline) a row needs to carry its whole demand (a ``mix_headroom`` column, where
    present, is the share of its solo capacity a pool of mixed request sizes may use: ``promise.mixed_headroom``)."""
    rps = rows["requests_per_s_per_vm"].to_numpy(float)
    if "mix_headroom" in rows:
        rps = rps * rows["mix_headroom"].to_numpy(float)
    online = (rows["mode"] == "online").to_numpy()
    return np.asarray(np.where(online, rows["rate_per_s"].to_numpy(float) / rps,
                               rows["num_requests"].to_numpy(float) / (3600.0 * rps)), float)
