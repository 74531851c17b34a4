"""What a plan promises: each online workload's SLO predicted at the load the plan puts on its pools.

The candidate table predicts latency at each configuration's capacity (the most a replica may carry); a plan
loads a pool to ``u = sum over its demands of rate * share / capacity per VM``, divided by its VMs. Each demand is
predicted at ``u`` times its own capacity per replica, with the workload's statistics; the worst pool serving a
workload is its promise. The margin is ``bound / predicted - 1``; the probability that the bound holds comes from
the calibration's held-out residuals of (engine, GPU class, metric) (``calibration.probability_within``).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .catalog import find_gpu
from .perf import make_serving
from .plan_types import Assignment, Plan, SLOPromise
from .roofline import Hardware
from .scenario import Resolved
from .serving import Shape, online_state

METRIC_KIND = {"ttft": "ttft", "tpot": "tpot", "e2e": "throughput"}


def demand_rates(resolved: Resolved) -> dict[str, float]:
    """Request rate of every online demand as the planner sized it (bucket fraction and peak factor applied)."""
    sc = resolved.scenario
    out = {}
    for w in sc.workloads:
        if w.mode != "online":
            continue
        for i, bucket in enumerate(w.size_mix()):
            name = w.name if w.buckets is None else f"{w.name}#{i}"
            out[name] = (w.request_rate_per_s or 0.0) * bucket.fraction * (w.peak_factor or sc.peak_factor)
    return out


def pool_utilisation(plan: Plan, rates: dict[str, float]) -> dict[str, float]:
    """Share of each online pool's capacity the plan uses (1 = every VM at its SLO capacity)."""
    load: dict[str, float] = defaultdict(float)
    count: dict[str, int] = {}
    for a in plan.assignments:
        if a.demand in rates and a.requests_per_s_per_vm > 0:
            load[a.pool] += rates[a.demand] * a.share / a.requests_per_s_per_vm
            count[a.pool] = a.count
    return {p: load[p] / max(count[p], 1) for p in load}


def _predict(resolved: Resolved, a: Assignment, rate_per_replica: float) -> dict[str, float]:
    w = next(x for x in resolved.scenario.workloads if x.name == a.workload)
    model = resolved.models[w.model]
    spec = find_gpu(a.gpu)
    one = np.ones(1)
    shape = Shape(model, Hardware.from_specs([spec], w.dtype), w.dtype, w.effective_kv_dtype,
                  one * a.tensor_parallel, one * a.input_tokens, one * a.output_tokens, one * a.offload_ratio)
    serving = make_serving(resolved.calibration, engine=w.engine, dtype=w.dtype, mode="online",
                           percentiles=w.slo.percentiles(), gpus=np.array([a.gpu]), bounds={}, confidence=0.5)
    state = online_state(shape, serving.theta, serving.engine, one * a.batch_size, one * rate_per_replica,
                         w.slo.percentiles())
    return {"ttft": float(state.ttft_s[0]), "tpot": float(state.tpot_s[0]), "e2e": float(state.e2e_s[0])}


def slo_report(resolved: Resolved, plan: Plan) -> list[SLOPromise]:
    """One promise per (online workload, bound given), sorted by workload and metric."""
    rates = demand_rates(resolved)
    util = pool_utilisation(plan, rates)
    workloads = {w.name: w for w in resolved.scenario.workloads}
    worst: dict[tuple[str, str], tuple[float, Assignment]] = {}
    for a in plan.assignments:
        w = workloads.get(a.workload)
        if w is None or a.demand not in rates or a.requests_per_s_per_vm <= 0 or a.input_tokens <= 0:
            continue
        replicas = max(a.gpu_count // a.tensor_parallel, 1)
        rate = util.get(a.pool, 0.0) * a.requests_per_s_per_vm / replicas
        predicted = _predict(resolved, a, max(rate, 1e-9))
        for metric, value in predicted.items():
            key = (a.workload, metric)
            if key not in worst or value > worst[key][0]:
                worst[key] = (value, a)
    out = []
    for (name, metric), (value, a) in sorted(worst.items()):
        w = workloads[name]
        bound = {"ttft": w.slo.max_ttft_s, "tpot": w.slo.max_tpot_s, "e2e": w.slo.max_e2e_s}[metric]
        if bound is None or not math.isfinite(value) or value <= 0 or not math.isfinite(bound / value):
            continue
        prob = resolved.calibration.probability_within(w.engine, a.gpu, METRIC_KIND[metric], math.log(bound / value))
        out.append(SLOPromise(workload=name, metric=metric, statistic=w.slo.percentiles()[metric], bound_s=bound,
                              predicted_s=round(value, 9), margin=round(bound / value - 1.0, 6),
                              probability=None if prob is None else round(prob, 4)))
    return out
