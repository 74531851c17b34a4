"""Re-check a plan against its scenario without the candidate table or the MILP.

Every assignment is re-predicted from the catalog and model card with the performance model directly, and
every constraint family is re-evaluated with plain arithmetic: demand served in full, pool capacity, GPU and
host memory, SLO bounds, quotas, budgets, distinct types, and the reported costs. Returns the violations.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from .catalog import find_gpu
from .perf import GIB, Estimate, Hardware, estimate, make_serving
from .plan_types import Assignment, Plan
from .scenario import Resolved
from .schema import Bucket, Workload

REL_TOL = 1e-6


def _close(a: float, b: float, tol: float = REL_TOL) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _predict(resolved: Resolved, workload: Workload, a: Assignment) -> tuple[Estimate, Bucket]:
    model = resolved.models[workload.model]
    spec = find_gpu(a.gpu)
    sizes = workload.size_mix()
    index = int(a.demand.rsplit("#", 1)[1]) if "#" in a.demand else 0
    bucket = sizes[index]
    s = resolved.scenario.settings
    return estimate(model, Hardware.from_specs([spec], workload.dtype), dtype=workload.dtype,
                    kv_dtype=workload.effective_kv_dtype, batch=np.array([a.batch_size]),
                    input_tokens=np.array([bucket.input_tokens]), output_tokens=np.array([bucket.output_tokens]),
                    tp=np.array([a.tensor_parallel]), offload_ratio=np.array([a.offload_ratio]),
                    serving=_serving(resolved, workload, a.gpu),
                    gpu_memory_utilization=s.gpu_memory_utilization,
                    prefill_chunk_tokens=s.prefill_chunk_tokens), bucket


def _serving(resolved: Resolved, workload, gpu: str):
    """The workload's SLO as the online capacity must keep it (the offline deadline is checked separately)."""
    slo = workload.slo
    bounds = {k: np.array([v if v is not None else np.nan], float)
              for k, v in (("ttft", slo.max_ttft_s), ("tpot", slo.max_tpot_s), ("e2e", slo.max_e2e_s))}
    return make_serving(resolved.calibration, engine=workload.engine, dtype=workload.dtype, mode=workload.mode,
                        percentiles=slo.percentiles(), gpus=np.array([gpu]), bounds=bounds,
                        confidence=resolved.scenario.confidence)


def verify(resolved: Resolved, plan: Plan | dict[str, Any]) -> list[str]:
    """All constraint violations of ``plan`` (a ``Plan`` or its JSON dict) for ``resolved``; empty if it holds.

    Deliberately independent of the candidate table and the MILP: it re-predicts each assignment and keeps its
    own copy of the memory, offload and SLO rules, so a bug in ``table.py`` cannot hide from it."""
    plan = plan if isinstance(plan, Plan) else Plan.model_validate(plan)
    impossible = physically_impossible(plan)
    if impossible:
        return impossible
    sc = resolved.scenario
    workloads = {w.name: w for w in sc.workloads}
    offers = {(i.cloud, i.instance_type, i.region): i for i in resolved.instances}
    bad: list[str] = []
    served: dict[str, float] = defaultdict(float)
    pool_load: dict[str, float] = defaultdict(float)
    pools = {p.pool: p for p in plan.pools}
    for a in plan.assignments:
        w = workloads.get(a.workload)
        inst = offers.get((a.cloud, a.instance_type, a.region))
        if w is None or inst is None:
            bad.append(f"{a.workload}: unknown workload or instance {a.instance_type} in {a.region}")
            continue
        price = inst.usd_per_hour if a.pricing == "on_demand" else inst.spot_usd_per_hour
        pool = pools.get(a.pool)
        if pool is None or price is None or not _close(pool.unit_usd_per_hour, price) or pool.count != a.count:
            bad.append(f"{a.workload}: pool {a.pool} missing or its price/count disagrees with the catalog")
            continue
        if inst.gpu != a.gpu or inst.gpu_count % a.tensor_parallel:
            bad.append(f"{a.workload}: tensor parallel {a.tensor_parallel} does not fit {a.instance_type}")
            continue
        est, bucket = _predict(resolved, w, a)
        need_gib = float(est.gpu_mem_required[0]) / GIB
        if need_gib > float(est.gpu_mem_usable[0]) / GIB + 1e-9 or a.offload_ratio + 1e-9 < est.min_offload_ratio[0]:
            bad.append(f"memory[{a.workload}@{a.instance_type}]: needs {need_gib:.2f} GiB per GPU at offload "
                       f"{a.offload_ratio:.0%}")
        host_gib = float(est.host_kv_bytes[0]) * (inst.gpu_count // a.tensor_parallel) / GIB
        if host_gib > inst.host_mem_gib * sc.settings.host_memory_utilization + 1e-9:
            bad.append(f"memory[{a.workload}@{a.instance_type}]: {host_gib:.1f} GiB offloaded KV exceeds host RAM")
        for label, value, bound, sense in (("TTFT", est.ttft_s[0], w.slo.max_ttft_s, 1),
                                           ("TPOT", est.tpot_s[0], w.slo.max_tpot_s, 1),
                                           ("E2E", est.e2e_s[0], w.slo.max_e2e_s, 1),
                                           ("TPS", est.tokens_per_s[0], w.slo.min_tokens_per_s, -1),
                                           ("deadline", est.e2e_s[0] / 3600,
                                            w.deadline_hours if w.mode == "offline" else None, 1)):
            if bound is not None and sense * (value - bound) > REL_TOL * bound:
                bad.append(f"slo[{a.workload}@{a.instance_type}]: {label} {value:.4g} breaks bound {bound:g}")
        if not (_close(a.ttft_s, est.ttft_s[0]) and _close(a.tpot_s, est.tpot_s[0])):
            bad.append(f"{a.workload}@{a.instance_type}: reported latency differs from the model's prediction")
        rps_vm = float(est.requests_per_s[0]) * (inst.gpu_count // a.tensor_parallel)
        if w.mode == "online":
            pool_load[a.pool] += (w.request_rate_per_s or 0.0) * bucket.fraction * a.share / rps_vm
        else:
            pool_load[a.pool] += (w.num_requests or 0) * bucket.fraction * a.share / (3600.0 * rps_vm)
        served[a.demand] += a.share
    demands = [w.name if w.buckets is None else f"{w.name}#{k}" for w in sc.workloads
               for k in range(len(w.size_mix()))]
    bad += [f"demand[{d}]: served {served.get(d, 0.0):.6f} of 1" for d in demands if not _close(served.get(d, 0.0), 1.0)]
    bad += _check_pools(plan, pool_load, workloads, sc.billing)
    bad += _check_limits(plan, resolved)
    return bad


def physically_impossible(plan: Plan) -> list[str]:
    """Numbers no machine can produce: a non-positive (or non-finite) batch, count of GPUs, throughput or
    latency, a share or offload outside [0, 1], a negative VM count or cost. Checked first, on their own."""
    bad = []
    for a in plan.assignments:
        where = f"{a.workload}@{a.instance_type}"
        for name in ("batch_size", "gpu_count", "tensor_parallel", "tokens_per_s", "requests_per_s_per_vm",
                     "ttft_s", "tpot_s", "e2e_s"):
            value = getattr(a, name)
            if not (math.isfinite(value) and value > 0):
                bad.append(f"impossible[{where}]: {name} = {value!r} must be a positive finite number")
        for name in ("share", "offload_ratio"):
            value = getattr(a, name)
            if not (math.isfinite(value) and 0 <= value <= 1):
                bad.append(f"impossible[{where}]: {name} = {value!r} must lie in [0, 1]")
        if a.count < 0:
            bad.append(f"impossible[{where}]: count = {a.count} VMs is negative")
    for p in plan.pools:
        for name in ("count", "unit_usd_per_hour", "usd"):
            value = getattr(p, name)
            if not (math.isfinite(value) and value >= 0):
                bad.append(f"impossible[{p.pool}]: {name} = {value!r} must be a non-negative finite number")
    return bad


def _check_pools(plan: Plan, pool_load: dict[str, float], workloads: dict[str, Workload],
                 billing: str) -> list[str]:
    bad = []
    deadline = {a.pool: workloads[a.workload].deadline_hours for a in plan.assignments}
    for p in plan.pools:
        load = pool_load.get(p.pool, 0.0)
        if p.mode == "online":
            if load > p.count * (1 + REL_TOL) + 1e-9:
                bad.append(f"capacity[{p.pool}]: needs {load:.4f} VMs, has {p.count}")
            expected = p.unit_usd_per_hour * p.count * plan.horizon_hours
        else:
            hours = p.vm_hours or 0.0
            limit = deadline.get(p.pool) or 0.0
            window = math.ceil(limit - 1e-9) if billing == "hourly" else limit
            if load > hours * (1 + REL_TOL) + 1e-9 or load > p.count * limit * (1 + REL_TOL) + 1e-9 \
                    or hours > p.count * window * (1 + REL_TOL) + 1e-9:
                bad.append(f"capacity[{p.pool}]: needs {load:.4f} VM-hours, has {hours:.4f} on {p.count} VMs")
            expected = p.unit_usd_per_hour * hours
        if not _close(p.usd, expected):
            bad.append(f"cost[{p.pool}]: reported {p.usd:.4f} USD, recomputed {expected:.4f}")
    total = sum(p.usd for p in plan.pools)
    if not _close(plan.objective, total):
        bad.append(f"objective: reported {plan.objective:.4f}, recomputed {total:.4f}")
    return bad


def _check_limits(plan: Plan, resolved: Resolved) -> list[str]:
    sc = resolved.scenario
    bad = []
    for k, q in enumerate(sc.quotas):
        used = 0
        for p in plan.pools:
            if all(getattr(q, key) in (None, getattr(p, key)) for key in ("instance_type", "region", "cloud", "gpu",
                                                                          "pricing")):
                used += p.count * (p.gpu_count if q.max_gpus is not None else 1)
        limit = q.max_gpus if q.max_gpus is not None else q.max_instances
        if limit is not None and used > limit:
            bad.append(f"quota[{k}]: uses {used}, limit {limit}")
    hourly = sum(p.unit_usd_per_hour * p.count for p in plan.pools if p.mode == "online")
    if sc.budget_usd_per_hour is not None and hourly > sc.budget_usd_per_hour * (1 + REL_TOL):
        bad.append(f"budget[usd_per_hour]: {hourly:.4f} exceeds {sc.budget_usd_per_hour:g}")
    if sc.budget_usd is not None and plan.objective > sc.budget_usd * (1 + REL_TOL):
        bad.append(f"budget[usd]: {plan.objective:.4f} exceeds {sc.budget_usd:g}")
    if sc.max_spot_share is not None:
        total = sum(p.gpu_count * p.count for p in plan.pools)
        spot = sum(p.gpu_count * p.count for p in plan.pools if p.pricing == "spot")
        if spot > sc.max_spot_share * total + 1e-9:
            bad.append(f"spot_share: {spot} of {total} GPUs on spot exceeds {sc.max_spot_share:.0%}")
    types = {p.instance_type for p in plan.pools if p.count > 0}
    if sc.max_instance_types is not None and len(types) > sc.max_instance_types:
        bad.append(f"types: {len(types)} distinct instance types exceed {sc.max_instance_types}")
    if sc.billing == "hourly":
        bad += [f"billing[{p.pool}]: {p.vm_hours} VM-hours is not whole hours" for p in plan.pools
                if p.vm_hours is not None and not math.isclose(p.vm_hours, round(p.vm_hours), abs_tol=1e-6)]
    return bad
