"""Exact pruning of the candidate table: each step only removes rows that an optimal plan does not need.

1. configurations (``prune_configs``): per sharing group and GPU config, a (tp, batch, offload) setting is dropped
   when a no-offload setting serves every demand of the group at least as fast (it can replace it on any VM);
2. offerings (``prune_offerings``): among offerings with the same GPU, GPU count and pricing kind, one that costs
   at least as much and has no more host memory than another *unconstrained* offering (no quota names it, no
   limit on distinct types) is dominated: any VM of it can be swapped for the other at no extra cost;
3. pools (``prune_pools``): a pool no faster for every demand of its group than a no-dearer pool on the same
   offering, or on an unconstrained one, is dropped.

(The offload-level pruning, keeping per GPU config and batch only the smallest feasible level of some demand,
happens while the table is evaluated, in ``candidates.py``.)

Under ``max_spot_share`` an on-demand pool's billed GPU-hours count in the share's denominator, so billing more of
them can be what lets the online fleet run on spot. Dropping a slower row stays exact there because a VM may be
held, idle, for the hours the slower row would have billed: an online VM of a pool that carries any load, an
offline one up to its deadline (``milp.idle_hours_count``). The faster row on the same VMs, held as long, costs and
counts the same.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .schema import Scenario

Replaceable = Callable[[np.ndarray, int], np.ndarray]


def prune_offerings(offers: pd.DataFrame, scenario: Scenario, host_need_gib: pd.Series) -> pd.DataFrame:
    """Drop offerings dominated by a cheaper-or-equal unconstrained twin with enough host memory.

    ``host_need_gib`` is, per (gpu, gpu_count), the most host memory any evaluated configuration needs for
    offloaded KV: a twin's extra RAM beyond that cannot matter.
    """
    if scenario.max_instance_types is not None or offers.empty:
        return offers
    keep = np.ones(len(offers), dtype=bool)
    util = scenario.settings.host_memory_utilization
    for (gpu, count, _), group in offers.groupby(["gpu", "gpu_count", "pricing"], sort=False):
        idx = group.index.to_numpy()
        price = group["unit_usd_per_hour"].to_numpy()
        need = float(host_need_gib.get((gpu, count), 0.0)) / util
        mem = np.minimum(group["host_mem_gib"].to_numpy(), max(need, 0.0))
        free = ~group["constrained"].to_numpy()
        order = np.arange(len(idx))
        allowed = _allowed_matrix(group, scenario)
        for a in range(len(idx)):
            # b may stand in for a only where every workload allowed on a is allowed on b
            covers = (allowed | ~allowed[a]).all(axis=1)
            better = free & covers & (price <= price[a]) & (mem >= mem[a]) & (order != a)
            # exact ties keep the first by name, so one of two identical offerings survives
            tie = (price == price[a]) & (mem == mem[a])
            better &= ~tie | (order < a)
            if better.any():
                keep[idx[a]] = False
    return offers[keep].reset_index(drop=True)


def _allowed_matrix(offers: pd.DataFrame, scenario: Scenario) -> np.ndarray:
    """offering x workload: may the workload run there (its own ``instance_types``; under a region ``spread``
    an offering is only interchangeable within its region, so the region joins the key)."""
    cols = []  # a workload without its own instance types allows every offering: no column needed
    for types in sorted({tuple(sorted(w.instance_types)) for w in scenario.workloads if w.instance_types}):
        cols.append(offers["instance_type"].isin(types).to_numpy())
    spread = sorted({r for w in scenario.workloads for r in (w.spread or [])})
    for region in spread:
        cols.append((offers["region"] == region).to_numpy())
        cols.append((offers["region"] != region).to_numpy())
    return np.column_stack(cols) if cols else np.ones((len(offers), 1), dtype=bool)


def prune_pools(table: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Drop pools dominated within their sharing group.

    Pool b dominates pool a when b costs no more per VM-hour, serves every demand of the group at least as fast
    per VM (so it is feasible wherever a is), and either runs on a's offering or on an unconstrained one (no
    quota names it, no limit on distinct types): moving a's VMs to b then never costs more or breaks a limit.
    """
    single = table.groupby("group")["demand"].transform("nunique") == 1
    fast = single & ~table.groupby("group")["constrained"].transform("any") & (scenario.max_instance_types is None)
    fast &= not any(w.spread for w in scenario.workloads)
    fast &= scenario.max_spot_share is None  # the frontier ignores GPUs per VM, which the spot share counts
    kept_fast = _pareto_single_demand(table[fast])
    rest = table[~fast]
    parts = [kept_fast] + ([_prune_pools_general(rest, scenario)] if len(rest) else [])
    return pd.concat(parts).sort_index()


def _pareto_single_demand(table: pd.DataFrame) -> pd.DataFrame:
    """One demand, unconstrained offerings: keep pools on the price/throughput Pareto frontier of each group."""
    ordered = table.sort_values(["group", "unit_usd_per_hour", "requests_per_s_per_vm", "pool"],
                                ascending=[True, True, False, True], kind="stable")
    # the best throughput of a cheaper (or as cheap and faster) pool of the group, -inf for the first
    best_so_far = ordered.groupby("group", sort=False)["requests_per_s_per_vm"].cummax()
    best_before = best_so_far.groupby(ordered["group"], sort=False).shift(fill_value=-np.inf)
    return ordered[ordered["requests_per_s_per_vm"] > best_before].sort_index()


def _prune_pools_general(table: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    key = ["group", "pool"]
    wide = table.pivot_table(index=key, columns="demand", values="requests_per_s_per_vm", fill_value=0.0,
                             aggfunc="max")
    attrs = table.drop_duplicates("pool").set_index("pool")[["unit_usd_per_hour", "constrained", "offer",
                                                             "gpu_count", "region"]]
    cross_ok = scenario.max_instance_types is None
    spot_share = scenario.max_spot_share is not None  # on-demand GPUs count in its denominator
    spread = any(w.spread for w in scenario.workloads)
    keep: list[str] = []
    for _, block in wide.groupby(level="group", sort=False):
        values = block.to_numpy()
        pools = block.index.get_level_values("pool")
        price = attrs.loc[pools, "unit_usd_per_hour"].to_numpy()
        free = ~attrs.loc[pools, "constrained"].to_numpy(bool)
        offer = attrs.loc[pools, "offer"].to_numpy()
        gpus = attrs.loc[pools, "gpu_count"].to_numpy()
        region = attrs.loc[pools, "region"].to_numpy()
        order = np.lexsort((np.asarray(pools), -values.sum(axis=1), price))

        def may_replace(k: np.ndarray, a: int) -> np.ndarray:
            cross = free[k] & cross_ok & ((gpus[k] >= gpus[a]) | ~spot_share) & ((region[k] == region[a]) | ~spread)
            return (price[k] <= price[a]) & ((offer[k] == offer[a]) | cross)

        kept = _undominated(values, order, may_replace)
        keep.extend(pools[kept])
    return table[table["pool"].isin(keep)]


def _undominated(values: np.ndarray, order: np.ndarray, may_replace: Replaceable) -> list[int]:
    """Rows of ``values`` (row x demand throughputs) that survive a greedy dominance sweep in ``order``: a row is
    dropped when an earlier kept row k is at least as fast for every demand and ``may_replace(k, a)`` (a mask
    over the kept rows) says k can take its place."""
    kept: list[int] = []
    for a in order:
        k = np.asarray(kept, dtype=int)
        if len(k) and ((values[k] >= values[a]).all(axis=1) & may_replace(k, a)).any():
            continue
        kept.append(int(a))
    return sorted(kept)


def prune_configs(rows: pd.DataFrame) -> pd.DataFrame:
    """Per sharing group and GPU config (gpu, gpu_count), drop (tp, batch, offload) settings dominated by a
    setting with no offload: that one serves every demand of the group at least as fast on every offering with
    that hardware and needs no host memory, so it can replace the other on any VM (exact)."""
    single = rows.groupby("group")["demand"].transform("nunique") == 1
    parts = [_configs_single_demand(rows[single])]
    for _, block in rows[~single].groupby("group", sort=False):
        parts.append(_configs_shared(block))
    return pd.concat(parts).sort_index()


def _configs_single_demand(rows: pd.DataFrame) -> pd.DataFrame:
    """One demand: keep the fastest no-offload setting per GPU config, and offload settings only if faster."""
    key = ["group", "gpu", "gpu_count"]
    rps = rows["requests_per_s_per_vm"]
    best_plain = rps.where(rows["offload_ratio"] == 0.0, -np.inf).groupby([rows[k] for k in key]).transform("max")
    plain = rows[rows["offload_ratio"] == 0.0]
    best = plain.sort_values(["requests_per_s_per_vm", "tensor_parallel", "batch_size"], ascending=[False, True, True],
                             kind="stable").drop_duplicates(key)
    faster_offload = rows.index[(rows["offload_ratio"] > 0.0) & (rps > best_plain)]
    return rows.loc[sorted(set(best.index) | set(faster_offload))]


def _configs_shared(rows: pd.DataFrame) -> pd.DataFrame:
    key = ["gpu", "gpu_count"]
    # the settings, ordered as their former text key "tp|batch|ratio" sorted, so ties resolve as before
    setting = ["tp_key", "batch_key", "offload_ratio"]
    rows = rows.assign(tp_key=rows["tensor_parallel"].astype(str), batch_key=rows["batch_size"].astype(str))
    wide = rows.pivot_table(index=key + setting, columns="demand", values="requests_per_s_per_vm",
                            fill_value=0.0, aggfunc="max")
    values_all = wide.to_numpy()
    no_offload = wide.index.get_level_values("offload_ratio").to_numpy(float) == 0.0
    keep: list[tuple[Any, ...]] = []
    for _, idx in pd.Series(range(len(wide)), index=wide.index).groupby(level=key, sort=False):
        positions = idx.to_numpy()
        values = values_all[positions]
        can = no_offload[positions]
        order = np.lexsort((np.arange(len(positions)), -values.sum(axis=1)))
        kept = _undominated(values, order, lambda k, _a: can[k])
        keep.extend(wide.index[positions[kept]])
    kept_index = pd.MultiIndex.from_tuples(keep, names=key + setting)
    mask = pd.MultiIndex.from_frame(rows[key + setting]).isin(kept_index)
    return rows[mask].drop(columns=["tp_key", "batch_key"])
