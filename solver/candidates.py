"""Vectorised candidate table: one row per demand x offering x tensor-parallel degree x batch x offload level.

A *demand* is one (workload, request-size bucket); a workload of a single size is one demand. An *offering* is
an instance type in a region at a price (on-demand or spot). A *pool* is a set of identical VMs running one
model in one configuration; demands of the same sharing group (same model for online traffic when replicas are
shared, else the workload) may share a pool.

Pruning, each step exact (it never removes a row an optimal plan needs):

1. offerings: among offerings with the same GPU, GPU count and pricing kind, one that costs at least as much
   and has no more host memory than another *unconstrained* offering (no quota names it, no limit on distinct
   types) is dominated: any VM of it can be swapped for the other at no extra cost;
2. offload levels: for a given (model, GPU config, batch) only the smallest feasible offload level of some
   demand is kept, because latency grows with the offload ratio while memory fit only needs it above a floor;
3. pools: on one offering, a configuration whose per-VM throughput is no higher for every demand of its
   sharing group (and infeasible wherever the other is infeasible) is dominated by that other configuration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .catalog import find_gpu
from .errors import ScenarioError
from .calibration import Calibration
from .engines import find_engine
from .perf import GIB, Hardware, Serving, estimate, make_serving, memory
from .schema import ModelCard, Quota, Scenario, Workload


@dataclass(frozen=True)
class Candidates:
    """The feasible candidate rows, the rows rejected (with a reason), and pruning statistics."""

    table: pd.DataFrame
    rejected: pd.DataFrame
    demands: pd.DataFrame
    stats: dict[str, int] = field(default_factory=dict)


def slo_bounds(w: Workload) -> dict[str, float]:
    """The workload's SLO as columns (NaN = no bound); an offline deadline also bounds one batch's E2E."""
    e2e = [b for b in (w.slo.max_e2e_s, (w.deadline_hours or 0) * 3600.0 if w.mode == "offline" else None) if b]
    return {"max_ttft_s": w.slo.max_ttft_s or math.nan, "max_tpot_s": w.slo.max_tpot_s or math.nan,
            "max_e2e_s": min(e2e) if e2e else math.nan, "min_tokens_per_s": w.slo.min_tokens_per_s or math.nan}


def demand_table(scenario: Scenario, *, planning: bool = True) -> pd.DataFrame:
    """One row per (workload, bucket) with its share of the demand."""
    rows = []
    for i, w in enumerate(scenario.workloads):
        if planning and w.mode == "online" and w.request_rate_per_s is None:
            raise ScenarioError("fleet planning needs request_rate_per_s for online workloads",
                                field=f"workloads.{i}.request_rate_per_s")
        for b_index, bucket in enumerate(w.size_mix()):
            rows.append(dict(
                demand=w.name if w.buckets is None else f"{w.name}#{b_index}", workload=w.name, model=w.model,
                mode=w.mode, input_tokens=bucket.input_tokens, output_tokens=bucket.output_tokens,
                fraction=bucket.fraction,
                rate_per_s=(w.request_rate_per_s or 0.0) * bucket.fraction * (w.peak_factor or scenario.peak_factor),
                num_requests=(w.num_requests or 0) * bucket.fraction,
                deadline_hours=w.deadline_hours or math.nan,
                group=(w.model if (w.mode == "online" and scenario.share_replicas) else w.name),
                **slo_bounds(w),
            ))
    return pd.DataFrame(rows)


def quota_matches(quota: Quota, offers: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the offerings a quota applies to."""
    mask = np.ones(len(offers), dtype=bool)
    for key in ("instance_type", "region", "cloud", "gpu", "pricing"):
        value = getattr(quota, key)
        if value is not None:
            mask &= (offers[key] == value).to_numpy()
    return mask


def offering_table(scenario: Scenario, instances: list) -> pd.DataFrame:
    """Instances expanded by pricing kind and filtered by the scenario's clouds, regions and types."""
    rows = []
    for inst in instances:
        if scenario.clouds and inst.cloud not in scenario.clouds:
            continue
        if scenario.regions and inst.region not in scenario.regions:
            continue
        if scenario.instance_types and inst.instance_type not in scenario.instance_types:
            continue
        base = dict(cloud=inst.cloud, region=inst.region, instance_type=inst.instance_type, gpu=inst.gpu,
                    gpu_count=inst.gpu_count, host_mem_gib=inst.host_mem_gib)
        rows.append(base | dict(pricing="on_demand", usd_per_hour=inst.usd_per_hour))
        if inst.spot_usd_per_hour:
            rows.append(base | dict(pricing="spot", usd_per_hour=inst.spot_usd_per_hour))
    offers = pd.DataFrame(rows)
    if offers.empty:
        return offers
    offers["offer"] = offers["cloud"] + ":" + offers["region"] + ":" + offers["instance_type"] + ":" + offers["pricing"]
    constrained = np.zeros(len(offers), dtype=bool)
    if scenario.max_spot_share is not None:  # a spot VM counts against the spot share: never a free substitute
        constrained |= (offers["pricing"] == "spot").to_numpy()
    for quota in scenario.quotas:
        constrained |= quota_matches(quota, offers)
    offers["constrained"] = constrained
    return offers.sort_values("offer", kind="stable").reset_index(drop=True)


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
        price = group["usd_per_hour"].to_numpy()
        need = float(host_need_gib.get((gpu, count), 0.0)) / util
        mem = np.minimum(group["host_mem_gib"].to_numpy(), max(need, 0.0))
        free = ~group["constrained"].to_numpy()
        order = np.arange(len(idx))
        for a in range(len(idx)):
            better = free & (price <= price[a]) & (mem >= mem[a]) & (order != a)
            # exact ties keep the first by name, so one of two identical offerings survives
            tie = (price == price[a]) & (mem == mem[a])
            better &= ~tie | (order < a)
            if better.any():
                keep[idx[a]] = False
    return offers[keep].reset_index(drop=True)


def tp_options(model: ModelCard, gpu_count: int, max_tp: int) -> list[int]:
    """Tensor-parallel degrees that divide the VM's GPUs and the model's attention heads."""
    return [t for t in (1, 2, 4, 8, 16) if t <= min(gpu_count, max_tp) and gpu_count % t == 0
            and model.num_attention_heads % t == 0]


def _workload_filter(rows: pd.DataFrame, workloads: dict[str, Workload], scenario: Scenario) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    for name, w in workloads.items():
        sel = (rows["workload"] == name).to_numpy()
        pricing = w.pricing or scenario.pricing
        if pricing != "both":
            keep &= ~sel | (rows["pricing"] == pricing).to_numpy()
        if w.instance_types:
            keep &= ~sel | rows["instance_type"].isin(w.instance_types).to_numpy()
    return keep


def _offload_levels(min_r: np.ndarray, step: float, allow: bool) -> np.ndarray:
    """Smallest grid level at or above the needed ratio (inf when no level fits)."""
    grid = np.ceil(np.round(min_r / step, 9)) * step
    grid = np.where(np.isfinite(min_r) & (grid <= 1.0 + 1e-9), np.minimum(grid, 1.0), np.inf)
    return grid if allow else np.where(grid == 0.0, 0.0, np.inf)


def evaluate_model(model: ModelCard, demands: pd.DataFrame, hw_configs: pd.DataFrame, workloads: dict[str, Workload],
                   scenario: Scenario, calibration: Calibration, prune: bool) -> pd.DataFrame:
    """All (demand, GPU config, tp, batch, offload) rows of one model, with predictions."""
    s = scenario.settings
    pairs = [(d, b) for d, name in zip(demands["demand"], demands["workload"])
             for b in (workloads[name].batch_sizes or s.batch_sizes)]
    demand_batches = pd.DataFrame(pairs, columns=["demand", "batch_size"])
    base = demand_batches.merge(hw_configs, how="cross").merge(demands, on="demand")
    # rows evaluated together share precision, engine, serving mode and SLO statistics
    keys = {name: (w.dtype, w.effective_kv_dtype, w.engine, w.mode, ",".join(f"{k}={v}" for k, v in sorted(w.slo.percentiles().items())))
            for name, w in workloads.items() if name in set(base["workload"])}
    out = []
    for key, frame in base.groupby(base["workload"].map(keys), sort=True):
        out.append(_evaluate_dtype(model, frame.reset_index(drop=True), key, scenario, calibration, prune))
    return pd.concat(out, ignore_index=True)


def _serving(frame: pd.DataFrame, key: tuple, scenario: Scenario, calibration: Calibration) -> Serving:
    """How these rows are served: engine coefficients per GPU, mode, SLO bounds and error headroom."""
    dtype, _, engine, mode, percentiles = key
    bounds = {"ttft": frame["max_ttft_s"].to_numpy(float), "tpot": frame["max_tpot_s"].to_numpy(float),
              "e2e": frame["max_e2e_s"].to_numpy(float)}
    return make_serving(calibration, engine=engine, dtype=dtype, mode=mode, percentiles=dict(kv.split("=") for kv in percentiles.split(",")),
                        gpus=frame["gpu"].to_numpy(), bounds=bounds, confidence=scenario.confidence)


def _evaluate_dtype(model: ModelCard, frame: pd.DataFrame, key: tuple, scenario: Scenario,
                    calibration: Calibration, prune: bool) -> pd.DataFrame:
    s = scenario.settings
    dtype, kv_dtype, engine_name = key[0], key[1], key[2]
    allow_offload = s.allow_offload and find_engine(engine_name).supports_kv_offload
    hw = Hardware.for_rows(frame["gpu"].to_numpy(), dtype, find_gpu)
    args = dict(dtype=dtype, kv_dtype=kv_dtype, batch=frame["batch_size"].to_numpy(),
                input_tokens=frame["input_tokens"].to_numpy(), output_tokens=frame["output_tokens"].to_numpy(),
                tp=frame["tp"].to_numpy(), serving=_serving(frame, key, scenario, calibration),
                gpu_memory_utilization=s.gpu_memory_utilization, prefill_chunk_tokens=s.prefill_chunk_tokens)
    mem_args = {k: v for k, v in args.items() if k != "serving"}
    min_r = memory(model, hw, offload_ratio=0.0, **mem_args)["min_offload_ratio"]
    frame = frame.assign(min_offload_ratio=min_r, level=_offload_levels(min_r, s.offload_step, allow_offload))
    if prune:
        # exact: keep, per (GPU config, batch), the distinct minimal levels of the group's demands
        config = ["group", "gpu", "gpu_count", "tp", "batch_size"]
        level_sets = (frame.loc[np.isfinite(frame["level"]), config + ["level"]].drop_duplicates()
                      .rename(columns={"level": "offload_ratio"}))
        expanded = frame.merge(level_sets, on=config, how="left")
        expanded["offload_ratio"] = expanded["offload_ratio"].fillna(0.0).astype(float)
    else:
        n_levels = int(round(1 / s.offload_step)) + 1 if allow_offload else 1
        grid = pd.DataFrame({"offload_ratio": np.round(np.arange(n_levels) * s.offload_step, 9).clip(max=1.0)})
        expanded = frame.merge(grid, how="cross")
    hw = Hardware.for_rows(expanded["gpu"].to_numpy(), dtype, find_gpu)
    args |= dict(batch=expanded["batch_size"].to_numpy(), input_tokens=expanded["input_tokens"].to_numpy(),
                 output_tokens=expanded["output_tokens"].to_numpy(), tp=expanded["tp"].to_numpy(),
                 serving=_serving(expanded, key, scenario, calibration))
    est = estimate(model, hw, offload_ratio=expanded["offload_ratio"].to_numpy(), **args)
    replicas = expanded["gpu_count"].to_numpy() // expanded["tp"].to_numpy()
    return expanded.drop(columns=["level"]).assign(
        dtype=dtype, kv_dtype=kv_dtype, replicas_per_vm=replicas,
        gpu_mem_gib=est.gpu_mem_required / GIB, gpu_mem_usable_gib=est.gpu_mem_usable / GIB,
        host_kv_gib_per_vm=est.host_kv_bytes * replicas / GIB,
        ttft_s=est.ttft_s, tpot_s=est.tpot_s, e2e_s=est.e2e_s, tokens_per_s=est.tokens_per_s,
        output_tokens_per_s=est.output_tokens_per_s, requests_per_s_per_vm=est.requests_per_s * replicas,
    )


def _slo_violation(rows: pd.DataFrame) -> pd.Series:
    """Empty string when the row meets its demand's SLO columns, else the first bound it breaks."""
    from .milp import SLO_COLUMNS

    reason = pd.Series("", index=rows.index, dtype=object)
    labels = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "end-to-end latency", "tokens_per_s": "TPS"}
    for value, bound, sense in reversed(SLO_COLUMNS):
        limit = rows[bound].to_numpy(float)
        v = rows[value].to_numpy(float)
        broken = np.isfinite(limit) & ((v > limit * (1 + 1e-12)) if sense > 0 else (v < limit))
        reason[broken] = [f"{labels[value]} bound {b:g}" for b in limit[broken]]
    return reason


def prune_pools(table: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Drop pools dominated within their sharing group.

    Pool b dominates pool a when b costs no more per VM-hour, serves every demand of the group at least as fast
    per VM (so it is feasible wherever a is), and either runs on a's offering or on an unconstrained one (no
    quota names it, no limit on distinct types): moving a's VMs to b then never costs more or breaks a limit.
    """
    single = table.groupby("group")["demand"].transform("nunique") == 1
    fast = single & ~table.groupby("group")["constrained"].transform("any") & (scenario.max_instance_types is None)
    kept_fast = _pareto_single_demand(table[fast])
    rest = table[~fast]
    if rest.empty:
        return kept_fast
    return pd.concat([kept_fast, _prune_pools_general(rest, scenario)]).sort_index()


def _pareto_single_demand(table: pd.DataFrame) -> pd.DataFrame:
    """One demand, unconstrained offerings: keep pools on the price/throughput Pareto frontier of each group."""
    ordered = table.sort_values(["group", "usd_per_hour", "requests_per_s_per_vm", "pool"],
                                ascending=[True, True, False, True], kind="stable")
    best_before = ordered.groupby("group")["requests_per_s_per_vm"].transform(
        lambda s: s.cummax().shift(fill_value=-np.inf))
    return ordered[ordered["requests_per_s_per_vm"] > best_before].sort_index()


def _prune_pools_general(table: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    key = ["group", "pool"]
    wide = table.pivot_table(index=key, columns="demand", values="requests_per_s_per_vm", fill_value=0.0,
                             aggfunc="max")
    attrs = table.drop_duplicates("pool").set_index("pool")[["usd_per_hour", "constrained", "offer"]]
    cross_ok = scenario.max_instance_types is None
    keep: list[str] = []
    for _, block in wide.groupby(level="group", sort=False):
        values = block.to_numpy()
        pools = block.index.get_level_values("pool")
        price = attrs.loc[pools, "usd_per_hour"].to_numpy()
        free = ~attrs.loc[pools, "constrained"].to_numpy(bool)
        offer = attrs.loc[pools, "offer"].to_numpy()
        order = np.lexsort((np.asarray(pools), -values.sum(axis=1), price))
        kept = _undominated(values, order, lambda k, a: (price[k] <= price[a]) &
                            ((offer[k] == offer[a]) | (free[k] & cross_ok)))
        keep.extend(pools[kept])
    return table[table["pool"].isin(keep)]


def _undominated(values: np.ndarray, order: np.ndarray, may_replace) -> list[int]:
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


def _hardware_reason(rows: pd.DataFrame) -> pd.Series:
    """Why a (demand, GPU config) row fails regardless of the offering: GPU memory or SLO; empty if it holds."""
    reason = pd.Series("", index=rows.index, dtype=object)
    reason[~np.isfinite(rows["min_offload_ratio"])] = "model does not fit GPU memory even with full KV offload"
    under = rows["offload_ratio"] + 1e-9 < rows["min_offload_ratio"]
    reason[(reason == "") & under] = "KV cache does not fit GPU memory at this offload ratio"
    slo = _slo_violation(rows)
    reason[(reason == "") & (slo != "")] = "misses " + slo[(reason == "") & (slo != "")]
    return reason


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
    best = plain.sort_values(["requests_per_s_per_vm", "tp", "batch_size"], ascending=[False, True, True],
                             kind="stable").drop_duplicates(key)
    faster_offload = rows.index[(rows["offload_ratio"] > 0.0) & (rps > best_plain)]
    return rows.loc[sorted(set(best.index) | set(faster_offload))]


def _configs_shared(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.assign(config=rows["tp"].astype(str) + "|" + rows["batch_size"].astype(str) + "|" +
                       rows["offload_ratio"].map("{:.2f}".format))
    key = ["gpu", "gpu_count"]
    wide = rows.pivot_table(index=key + ["config"], columns="demand", values="requests_per_s_per_vm",
                            fill_value=0.0, aggfunc="max")
    values_all = wide.to_numpy()
    no_offload = wide.index.get_level_values("config").str.endswith("|0.00")
    keep: list[tuple] = []
    for _, idx in pd.Series(range(len(wide)), index=wide.index).groupby(level=key, sort=False):
        positions = idx.to_numpy()
        values = values_all[positions]
        can = no_offload[positions]
        order = np.lexsort((np.arange(len(positions)), -values.sum(axis=1)))
        kept = _undominated(values, order, lambda k, _a: can[k])
        keep.extend(wide.index[positions[kept]])
    kept_index = pd.MultiIndex.from_tuples(keep, names=key + ["config"])
    mask = pd.MultiIndex.from_frame(rows[key + ["config"]]).isin(kept_index)
    return rows[mask].drop(columns="config")


def build_candidates(scenario: Scenario, instances: list, models: dict[str, ModelCard], calibration: Calibration,
                     *, prune: bool = True, planning: bool = True) -> Candidates:
    """The candidate table for a scenario (feasible rows) and the rejected rows with their reason."""
    workloads = {w.name: w for w in scenario.workloads}
    demands = demand_table(scenario, planning=planning)
    offers_all = offering_table(scenario, instances)
    stats = {"offerings": len(offers_all)}
    if offers_all.empty:
        empty = pd.DataFrame()
        return Candidates(empty, empty, demands, stats)
    frames = []
    for model_name, model_demands in demands.groupby("model", sort=True):
        model = models[model_name]
        hw = offers_all[["gpu", "gpu_count"]].drop_duplicates()
        hw = pd.DataFrame([dict(gpu=g, gpu_count=c, tp=t) for g, c in hw.itertuples(index=False)
                           for t in tp_options(model, c, scenario.settings.max_tensor_parallel)])
        if hw.empty:
            continue
        frames.append(evaluate_model(model, model_demands, hw, workloads, scenario, calibration, prune))
    evaluated = pd.concat(frames, ignore_index=True)
    stats["rows_evaluated"] = len(evaluated)
    hw_reason = _hardware_reason(evaluated)
    good = evaluated[hw_reason == ""]
    offers = offers_all
    if prune and not good.empty:
        good = prune_configs(good)
        need = good["host_kv_gib_per_vm"].groupby([good["gpu"], good["gpu_count"]]).max()
        offers = prune_offerings(offers_all, scenario, need)
    stats["offerings_kept"] = len(offers)
    rows = _join_offers(good, offers, workloads, scenario)
    host = rows["host_kv_gib_per_vm"] > rows["host_mem_gib"] * scenario.settings.host_memory_utilization
    feasible = rows[~host]
    bad = evaluated[hw_reason != ""].assign(reason=hw_reason[hw_reason != ""])
    if prune:  # the offering detail of rejected rows is only needed to explain demands left with nothing
        bad = bad[~bad["demand"].isin(feasible["demand"])]
    rejected = pd.concat([_join_offers(bad, offers_all, workloads, scenario),
                          rows[host].assign(reason="offloaded KV does not fit host memory")], ignore_index=True)
    stats["rows_feasible"] = len(feasible)
    if prune and not feasible.empty:
        feasible = prune_pools(feasible, scenario)
    stats["rows_kept"] = len(feasible)
    order = ["demand", "offer", "tp", "batch_size", "offload_ratio"]
    return Candidates(feasible.sort_values(order).reset_index(drop=True),
                      rejected.sort_values(order).reset_index(drop=True) if len(rejected) else rejected,
                      demands, stats)


def _join_offers(rows: pd.DataFrame, offers: pd.DataFrame, workloads: dict[str, Workload],
                 scenario: Scenario) -> pd.DataFrame:
    """Candidate rows on every offering with their hardware, after the workloads' own filters, with pool ids."""
    rows = rows.merge(offers, on=["gpu", "gpu_count"])
    rows = rows[_workload_filter(rows, workloads, scenario)].reset_index(drop=True)
    if rows.empty:
        return rows.assign(pool=pd.Series(dtype=object))
    rows["pool"] = rows["group"] + "|" + rows["offer"] + "|tp" + rows["tp"].astype(str) + "|b" + \
        rows["batch_size"].astype(str) + "|r" + rows["offload_ratio"].map("{:.2f}".format)
    return rows
