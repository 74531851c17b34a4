"""Vectorised candidate table: one row per demand x offering x tensor-parallel degree x batch x offload level.

A *demand* is one (workload, request-size bucket); a workload of a single size is one demand. An *offering* is
an instance type in a region at a price (on-demand or spot). A *pool* is a set of identical VMs running one
model in one configuration; demands of the same sharing group (same model for online traffic when replicas are
shared, else the workload) may share a pool.

The table's columns are declared in ``table.py``; the memory and SLO rules that keep or reject a row live there
too, and a rejected row carries a ``Rejection`` code and the bound it broke. Offload levels are pruned here (for
a given (model, GPU config, batch) only the smallest feasible level of some demand is kept, because latency
grows with the offload ratio while memory fit only needs it above a floor); the other exact pruning steps are in
``prune.py``.
"""
from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .calibration import Calibration
from .catalog import find_gpu
from .engines import find_engine
from .environment import workers_cap
from .errors import ScenarioError
from .perf import GIB, Hardware, Serving, estimate, make_serving, memory
from .prune import prune_configs, prune_offerings, prune_pools
from .schema import Instance, ModelCard, Scenario, Workload
from .table import Rejection, classify, host_memory_exceeded, offload_fits, quota_matches


@dataclass(frozen=True)
class Candidates:
    """The feasible candidate rows, the rows rejected (with ``rejection`` and ``rejection_bound``), and pruning
    statistics."""

    table: pd.DataFrame
    rejected: pd.DataFrame
    demands: pd.DataFrame
    stats: dict[str, int] = field(default_factory=dict)


def slo_bounds(w: Workload) -> dict[str, float]:
    """The workload's SLO as columns (NaN = no bound); an offline deadline also bounds one batch's E2E."""
    e2e = [b for b in (w.slo.max_e2e_s, (w.deadline_hours or 0) * 3600.0 if w.mode == "offline" else None) if b]
    return {"max_ttft_s": w.slo.max_ttft_s or math.nan, "max_tpot_s": w.slo.max_tpot_s or math.nan,
            "max_e2e_s": min(e2e) if e2e else math.nan, "min_tokens_per_s": w.slo.min_tokens_per_s or math.nan}


def sharing_group(w: Workload, scenario: Scenario) -> str:
    """The pools a workload's demands may share: online traffic of one model at one precision, KV precision and
    engine when replicas are shared (a replica holds one set of weights), else the workload's own."""
    if w.mode != "online" or not scenario.share_replicas:
        return w.name
    serving = (w.dtype, w.effective_kv_dtype, w.engine)
    return w.model if serving == ("fp16", "fp16", "vllm") else f"{w.model}@{'/'.join(serving)}"


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
                group=sharing_group(w, scenario),
                **slo_bounds(w),
            ))
    return pd.DataFrame(rows)


def offering_table(scenario: Scenario, instances: list[Instance]) -> pd.DataFrame:
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
        rows.append(base | dict(pricing="on_demand", unit_usd_per_hour=inst.usd_per_hour))
        if inst.spot_usd_per_hour:
            rows.append(base | dict(pricing="spot", unit_usd_per_hour=inst.spot_usd_per_hour))
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


def tp_options(model: ModelCard, gpu_count: int, max_tp: int) -> list[int]:
    """Tensor-parallel degrees that divide the VM's GPUs and the model's attention heads."""
    return [t for t in (1, 2, 4, 8, 16) if t <= min(gpu_count, max_tp) and gpu_count % t == 0
            and model.num_attention_heads % t == 0]


def _workload_filter(rows: pd.DataFrame, workloads: dict[str, Workload], scenario: Scenario) -> np.ndarray:
    """Rows each workload's own ``pricing`` and ``instance_types`` allow (one pass over the table, not one per
    workload: that was quadratic in the fleet size)."""
    names = rows["workload"]
    pricing = names.map({n: w.pricing or scenario.pricing for n, w in workloads.items()}).to_numpy()
    keep = (pricing == "both") | (pricing == rows["pricing"].to_numpy())
    restricted = names.isin([n for n, w in workloads.items() if w.instance_types]).to_numpy()
    if restricted.any():
        allowed = pd.MultiIndex.from_tuples([(n, t) for n, w in workloads.items() for t in (w.instance_types or [])],
                                            names=["workload", "instance_type"])
        pairs = pd.MultiIndex.from_frame(rows.loc[restricted, ["workload", "instance_type"]].astype(str))
        ok = np.ones(len(rows), dtype=bool)
        ok[np.flatnonzero(restricted)] = pairs.isin(allowed)
        keep &= ok
    return np.asarray(keep, bool)


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
    present = set(base["workload"].unique())  # once, not per workload (that was quadratic in the fleet size)
    keys = {name: (w.dtype, w.effective_kv_dtype, w.engine, w.mode, ",".join(f"{k}={v}" for k, v in sorted(w.slo.percentiles().items())))
            for name, w in workloads.items() if name in present}
    codes, names = pd.factorize(base["workload"])  # the key per distinct name, not per row (a tuple per row was slow)
    key_of = [keys[name] for name in names]
    distinct = sorted(set(key_of))
    group = np.array([distinct.index(k) for k in key_of], dtype=int)[codes]
    out = []
    for g, key in enumerate(distinct):
        frame = base if len(distinct) == 1 else base[group == g]
        out.append(_evaluate_dtype(model, frame.reset_index(drop=True), key, scenario, calibration, prune))
    return pd.concat(out, ignore_index=True)


def _serving(frame: pd.DataFrame, key: tuple[Any, ...], scenario: Scenario, calibration: Calibration) -> Serving:
    """How these rows are served: engine coefficients per GPU, mode, SLO bounds and error headroom."""
    dtype, _, engine, mode, percentiles = key
    bounds = {"ttft": frame["max_ttft_s"].to_numpy(float), "tpot": frame["max_tpot_s"].to_numpy(float),
              "e2e": frame["max_e2e_s"].to_numpy(float)}
    return make_serving(calibration, engine=engine, dtype=dtype, mode=mode, percentiles=dict(kv.split("=") for kv in percentiles.split(",")),
                        gpus=frame["gpu"].to_numpy(), bounds=bounds, confidence=scenario.confidence)


def _evaluate_dtype(model: ModelCard, frame: pd.DataFrame, key: tuple[Any, ...], scenario: Scenario,
                    calibration: Calibration, prune: bool) -> pd.DataFrame:
    s = scenario.settings
    dtype, kv_dtype, engine_name = key[0], key[1], key[2]
    allow_offload = s.allow_offload and find_engine(engine_name).supports_kv_offload
    hw = Hardware.for_rows(frame["gpu"].to_numpy(), dtype, find_gpu)
    args = dict(dtype=dtype, kv_dtype=kv_dtype, batch=frame["batch_size"].to_numpy(),
                input_tokens=frame["input_tokens"].to_numpy(), output_tokens=frame["output_tokens"].to_numpy(),
                tp=frame["tensor_parallel"].to_numpy(), serving=_serving(frame, key, scenario, calibration),
                gpu_memory_utilization=s.gpu_memory_utilization, prefill_chunk_tokens=s.prefill_chunk_tokens)
    mem_args = {k: v for k, v in args.items() if k != "serving"}
    min_r = memory(model, hw, offload_ratio=0.0, **mem_args)["min_offload_ratio"]
    frame = frame.assign(min_offload_ratio=min_r, level=_offload_levels(min_r, s.offload_step, allow_offload))
    if prune:
        # exact: keep, per (GPU config, batch), the distinct minimal levels of the group's demands
        config = ["group", "gpu", "gpu_count", "tensor_parallel", "batch_size"]
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
                 output_tokens=expanded["output_tokens"].to_numpy(), tp=expanded["tensor_parallel"].to_numpy(),
                 serving=_serving(expanded, key, scenario, calibration))
    # with pruning, rejected rows are kept only to explain demands left with nothing, and a row that does not fit
    # memory is explained by that alone: its latencies (the costly part) are not computed (NaN)
    fits = offload_fits(expanded["offload_ratio"], expanded["min_offload_ratio"]) if prune else None
    est = estimate(model, hw, offload_ratio=expanded["offload_ratio"].to_numpy(), latency_rows=fits, **args)
    replicas = expanded["gpu_count"].to_numpy() // expanded["tensor_parallel"].to_numpy()
    return expanded.drop(columns=["level"]).assign(
        dtype=dtype, kv_dtype=kv_dtype, replicas_per_vm=replicas,
        gpu_mem_gib=est.gpu_mem_required / GIB, gpu_mem_usable_gib=est.gpu_mem_usable / GIB,
        host_kv_gib_per_vm=est.host_kv_bytes * replicas / GIB,
        ttft_s=est.ttft_s, tpot_s=est.tpot_s, e2e_s=est.e2e_s, tokens_per_s=est.tokens_per_s,
        output_tokens_per_s=est.output_tokens_per_s, requests_per_s_per_vm=est.requests_per_s * replicas,
    )


PARALLEL_MIN_DEMANDS = 200  # fewer demands than this: candidates in this process (a worker costs ~0.1 s to start)
MAX_WORKERS = 2


def candidate_workers(n_demands: int, n_models: int) -> int:
    """Processes to build candidates in: one per model up to ``MAX_WORKERS`` and the CPUs this process may use,
    for fleets of at least ``PARALLEL_MIN_DEMANDS`` demands; 1 (this process) inside a daemonic process (which
    may not start any), where ``fork`` is missing, or with ``INFERSAVE_WORKERS=1`` (a number caps it)."""
    cap = workers_cap(MAX_WORKERS)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_demands < PARALLEL_MIN_DEMANDS or multiprocessing.current_process().daemon \
            or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(cap, cpus, n_models))


def build_candidates(scenario: Scenario, instances: list[Instance], models: dict[str, ModelCard], calibration: Calibration,
                     *, prune: bool = True, planning: bool = True, workers: int | None = None) -> Candidates:
    """The candidate table for a scenario (feasible rows) and the rejected rows with their ``Rejection``.

    Models are independent (pools never mix them), so with ``workers`` > 1 (default: ``candidate_workers``) each
    model's rows are built in a forked worker process; the table is the same as in one process, row for row."""
    workloads = {w.name: w for w in scenario.workloads}
    demands = demand_table(scenario, planning=planning)
    offers_all = offering_table(scenario, instances)
    stats = {"offerings": len(offers_all)}
    if offers_all.empty:
        empty = pd.DataFrame()
        return Candidates(empty, empty, demands, stats)
    # one model at a time, end to end: pools never mix models, and only that model's evaluated rows (the bulk of
    # the memory: every demand x GPU config x batch x offload level) are held at once (per worker)
    stats |= dict.fromkeys(("rows_evaluated", "offerings_kept", "rows_feasible", "rows_kept"), 0)
    kept_offers: set[str] = set()
    feasible_parts, rejected_parts = [], []
    names = sorted(demands["model"].unique())
    context = (demands, offers_all, models, workloads, scenario, calibration, prune)
    workers = candidate_workers(len(demands), len(names)) if workers is None else workers
    if workers > 1 and len(names) > 1:
        with ProcessPoolExecutor(min(workers, len(names)), mp_context=multiprocessing.get_context("fork"),
                                 initializer=_set_context, initargs=(context,)) as pool:
            results = list(pool.map(_model_rows, names))
    else:
        results = [_model_rows(name, context) for name in names]
    for result in results:
        if result is None:
            continue
        feasible, rejected, offers, counts = result
        for key, value in counts.items():
            stats[key] += value
        kept_offers.update(offers)
        feasible_parts.append(feasible)
        rejected_parts.append(rejected)
    stats["offerings_kept"] = len(kept_offers)
    if not feasible_parts:
        empty = pd.DataFrame()
        return Candidates(empty, empty, demands, stats)
    feasible, rejected = _stack(feasible_parts), _stack(rejected_parts)
    order = ["demand", "offer", "tensor_parallel", "batch_size", "offload_ratio"]
    return Candidates(feasible.sort_values(order).reset_index(drop=True),
                      rejected.sort_values(order).reset_index(drop=True) if len(rejected) else rejected,
                      demands, stats)


_CONTEXT: tuple[Any, ...] = ()  # a worker's build inputs, set once when it starts (fork: not pickled)


def _set_context(context: tuple[Any, ...]) -> None:
    global _CONTEXT
    _CONTEXT = context


ModelRows = tuple[pd.DataFrame, pd.DataFrame, list[str], dict[str, int]]


def _model_rows(model_name: str, context: tuple[Any, ...] | None = None) -> ModelRows | None:
    """One model's (candidate rows, rejected rows, offerings kept, row counts); None where no offering has a
    tensor-parallel degree the model allows."""
    demands, offers_all, models, workloads, scenario, calibration, prune = context or _CONTEXT
    model = models[model_name]
    model_demands = demands[demands["model"] == model_name]
    hw = offers_all[["gpu", "gpu_count"]].drop_duplicates()
    hw = pd.DataFrame([dict(gpu=g, gpu_count=c, tensor_parallel=t) for g, c in hw.itertuples(index=False)
                       for t in tp_options(model, c, scenario.settings.max_tensor_parallel)])
    if hw.empty:
        return None
    evaluated = evaluate_model(model, model_demands, hw, workloads, scenario, calibration, prune)
    feasible, rejected, offers, n_feasible = _select(evaluated, offers_all, workloads, scenario, prune)
    counts = {"rows_evaluated": len(evaluated), "rows_feasible": n_feasible, "rows_kept": len(feasible)}
    return feasible, rejected, list(offers["offer"]), counts


def _stack(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts one under the other (empty parts only where all are, so column types come from real rows)."""
    full = [p for p in parts if len(p)]
    return pd.concat(full or parts[:1], ignore_index=True)


def _select(evaluated: pd.DataFrame, offers_all: pd.DataFrame, workloads: dict[str, Workload], scenario: Scenario,
            prune: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """One model's evaluated rows -> (candidate rows on offerings, rejected rows with their codes, the offerings
    kept, the number of feasible rows before pool pruning)."""
    code, bound = classify(evaluated)
    good = evaluated[code == ""]
    offers = offers_all
    if prune and not good.empty:
        good = prune_configs(good)
        need = good["host_kv_gib_per_vm"].groupby([good["gpu"], good["gpu_count"]]).max()
        offers = prune_offerings(offers_all, scenario, need)
    rows = _join_offers(good, offers, workloads, scenario)
    host = host_memory_exceeded(rows, scenario.settings.host_memory_utilization)
    feasible = rows[~host]
    bad = evaluated[code != ""].assign(rejection=code[code != ""], rejection_bound=bound[code != ""])
    if prune:  # the offering detail of rejected rows is only needed to explain demands left with nothing
        bad = bad[~bad["demand"].isin(feasible["demand"].unique())]
    rejected = pd.concat([_join_offers(bad, offers_all, workloads, scenario),
                          rows[host].assign(rejection=Rejection.HOST_MEMORY.value, rejection_bound=np.nan)],
                         ignore_index=True)
    n_feasible = len(feasible)
    if prune and not feasible.empty:
        feasible = prune_pools(feasible, scenario)
    return feasible, rejected, offers, n_feasible


def _join_offers(rows: pd.DataFrame, offers: pd.DataFrame, workloads: dict[str, Workload],
                 scenario: Scenario) -> pd.DataFrame:
    """Candidate rows on every offering with their hardware, after the workloads' own filters, with pool ids."""
    rows = rows.merge(offers, on=["gpu", "gpu_count"])
    rows = rows[_workload_filter(rows, workloads, scenario)].reset_index(drop=True)
    if rows.empty:
        return rows.assign(pool=pd.Series(dtype=object))
    rows["pool"] = rows["group"] + "|" + rows["offer"] + "|tp" + rows["tensor_parallel"].astype(str) + "|b" + \
        rows["batch_size"].astype(str) + "|r" + rows["offload_ratio"].map("{:.2f}".format)
    return rows
