"""What a plan promises: each online workload's SLO predicted at the load the plan puts on its pools.

The candidate table predicts latency at each configuration's capacity (the most a replica may carry); the plan
puts less on most pools. Each pool is predicted at the requests it actually receives from all its demands (its
iteration mix from their lengths, ``shape.mix_shape``; each demand's TTFT with its own prompt prefilled in that mix).
A workload's promise for a mean is the request-weighted mean over its pools, for a percentile the percentile of
the mixture of its pools' latency laws. The margin is ``bound / predicted - 1``; the probability that the bound
holds comes from the calibration's held-out residuals of (engine, GPU class, metric)
(``calibration.probability_within``).
"""
from __future__ import annotations

import dataclasses

import math
from collections import defaultdict

import numpy as np

from .catalog import find_gpu
from .engines import EngineProfile
from .perf import make_serving
from .packing import full_replica_rate
from .plan_types import Assignment, Plan, SLOPromise
from .prefill import packed_prefill
from .queueing import holding_overlap, holding_scv
from .roofline import Hardware, time_s
from .scenario import Resolved
from .schema import ModelCard
from .serving import PLANNING_UTILISATION, QUANTILE, OnlineState, online_state
from .shape import Shape, mix_shape

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


def pool_predictions(resolved: Resolved, rows: list[tuple[Assignment, float]], statistic: str | None = None
                     ) -> dict[int, dict[str, float]]:
    """Latencies of every demand in one plan pool (``pool_latencies``). ``rows``: (assignment, requests/s per
    replica of that demand); ``statistic``: predict every metric at that one instead of each SLO's. Key -1 holds the
    pool's slots held over the planning share of its cap."""
    first = rows[0][0]
    w0 = next(x for x in resolved.scenario.workloads if x.name == first.workload)
    serving = make_serving(resolved.calibration, engine=w0.engine, dtype=w0.dtype, mode="online",
                           percentiles={}, gpus=np.array([first.gpu]), bounds={}, confidence=0.5)
    workloads = {w.name: w for w in resolved.scenario.workloads}
    stats = [dict(workloads[a.workload].slo.percentiles()) if statistic is None
             else {"e2e": statistic, "tpot": statistic, "ttft": statistic} for a, _ in rows]
    pool = Pool(resolved.models[w0.model], Hardware.from_specs([find_gpu(first.gpu)], w0.dtype), w0.dtype,
                w0.effective_kv_dtype, first.tensor_parallel, first.offload_ratio, first.batch_size,
                first.count * max(first.gpu_count // first.tensor_parallel, 1))
    lengths = [(float(a.input_tokens), float(a.output_tokens)) for a, _ in rows]
    return pool_latencies(pool, serving.theta, serving.engine, [rate for _, rate in rows], lengths, stats)


@dataclasses.dataclass(frozen=True)
class Pool:
    """Identical replicas of one model on one GPU configuration, fed round-robin."""

    model: ModelCard
    hw: Hardware
    dtype: str
    kv_dtype: str
    tensor_parallel: int
    offload_ratio: float
    max_seqs: int  # the concurrency cap of each replica
    replicas: int


def pool_latencies(pool: Pool, theta: np.ndarray, engine: EngineProfile, rates: list[float],
                   lengths: list[tuple[float, float]], stats: list[dict[str, str]]) -> dict[int, dict[str, float]]:
    """TTFT, TPOT and E2E of every demand of one pool at ``rates`` requests/s per replica (demand k: prompt and output
    ``lengths[k]``, each metric at ``stats[k][metric]``): the pool's iteration mix from all its demands
    (``mix_shape``), each demand's TTFT with its own prompt prefilled in that mix. Key -1 holds the pool's slots held
    over the planning share of its cap."""
    one = np.ones(1)
    total = float(sum(rates))
    lin, lout = np.array([x for x, _ in lengths], float), np.array([y for _, y in lengths], float)
    mix, scv = mix_shape(pool.model, pool.hw, pool.dtype, pool.kv_dtype, pool.tensor_parallel, pool.offload_ratio,
                         np.array(rates, float), lin, lout)

    # the pool's Poisson stream is dealt round-robin over its replicas: each sees Erlang-k arrivals; a mix of
    # sizes holds its slots for different times (about its decode steps), which keeps more of the count's spread
    arrival_scv = 1.0 / max(pool.replicas, 1)
    shares = np.array(rates, float)
    overlap, spread = holding_overlap(lout, shares), holding_scv(lout, shares)
    chunk, budget = float(engine.chunk_tokens), float(engine.token_budget)
    # the pool's state depends on a demand only through the statistics its SLO asks for: once per distinct set
    keys = [tuple(sorted(stat.items())) for stat in stats]
    states: dict[tuple[tuple[str, str], ...], tuple[OnlineState, OnlineState, np.ndarray]] = {}
    full = full_replica_rate(mix, theta, engine, one * pool.max_seqs)  # the same for every statistic: once
    for key in dict.fromkeys(keys):
        stat = dict(key)
        state = online_state(mix, theta, engine, one * pool.max_seqs, one * max(total, 1e-9), stat, scv,
                             arrival_scv=arrival_scv, holding_overlap=overlap, holding_scv=spread, full_rate=full)
        at_e2e = online_state(mix, theta, engine, one * pool.max_seqs, one * max(total, 1e-9),
                              {"ttft": stat["e2e"], "tpot": stat["e2e"]}, scv, arrival_scv=arrival_scv,
                              holding_overlap=overlap, holding_scv=spread, full_rate=full)
        states[key] = (state, at_e2e, state.own_prefill_s)
    slots = next(iter(states.values()))[0].occupancy[0]  # slots held do not depend on the statistics asked for
    out = {-1: {"slots": float(slots / (PLANNING_UTILISATION * pool.max_seqs))}}
    # every demand's own prompt prefilled beside the same running decodes, in one vectorised call per state
    ones = np.ones(len(lengths))
    own_shape = Shape(pool.model, pool.hw, pool.dtype, pool.kv_dtype, ones * pool.tensor_parallel, lin, lout,
                      ones * pool.offload_ratio, ones * float(np.asarray(mix.mean_context)[0]))
    # ... its own steps, and the pool's next prompt (of the mix's mean length) packed into its first step, or into the
    # last one of a long prompt, which waits longer for it
    own_by_state = {key: packed_prefill(own_shape, theta, float(st[0].decode_seqs[0]), budget, chunk,
                                        ones * float(st[0].rate_per_s[0]), ones * float(st[0].iteration_s[0]),
                                        arrival_scv, next_tokens=ones * float(mix.input_tokens[0])).mean_s
                    for key, st in states.items()}
    for k, ((l_in, l_out), key) in enumerate(zip(lengths, keys)):
        state, at_e2e, avg = states[key]
        own = float(own_by_state[key][k])  # this demand's prompt in place of the mix's average one
        lift = _own_decode_lift(mix, l_in, l_out, theta, state, own - float(avg[0]))
        ttft = float(state.ttft_s[0] - avg[0] + own)
        e2e = float(at_e2e.ttft_s[0] - avg[0] + own) + (l_out - 1) * (float(at_e2e.tpot_s[0]) + lift)
        out[k] = {"ttft": ttft, "tpot": float(state.tpot_s[0]) + lift, "e2e": e2e}
    return out


def _own_decode_lift(mix: Shape, input_tokens: float, output_tokens: float, theta: np.ndarray, state: OnlineState,
                     longer_prefill_s: float) -> float:
    """What one demand's TPOT adds to its pool's: every step it runs reads its own context (L_in + L_out / 2 of
    it), not the mix's mean, and the prompts that arrive while its prefill runs longer than the mix's average one
    queue behind it and are prefilled in its decode steps, each lengthening them by phi / rate (phi = the prompt
    share of time). Over the pool both sum to about zero (the mean context is output-weighted, the prefill
    rate-weighted), so the slots held keep the pool's."""
    n, t = float(state.decode_seqs[0]), float(state.iteration_s[0])
    if not (n > 0 and t > 0):
        return 0.0
    ones = np.ones(1)
    context = float(input_tokens) + float(output_tokens) / 2.0
    mean = float(np.asarray(mix.mean_context, float)[0])
    shifted = dataclasses.replace(mix, context_tokens=ones * (mean + (context - mean) / n))
    base = float(state.decode_step_s[0])
    own_ctx = float(time_s(shifted.work(ones * n, 0.0, 0.0, runs=ones), theta)[0])
    phi = max(1.0 - base / t, 0.0)
    return own_ctx - base + phi * longer_prefill_s / max(float(output_tokens) - 1.0, 1.0)


def by_pool(resolved: Resolved, plan: Plan) -> dict[str, list[tuple[Assignment, float]]]:
    """Online assignments per pool, with the requests/s each puts on one replica."""
    rates = demand_rates(resolved)
    workloads = {w.name for w in resolved.scenario.workloads}
    out: dict[str, list[tuple[Assignment, float]]] = defaultdict(list)
    for a in plan.assignments:
        if a.workload in workloads and a.demand in rates and a.input_tokens > 0 and a.count > 0:
            replicas = a.count * max(a.gpu_count // a.tensor_parallel, 1)
            out[a.pool].append((a, rates[a.demand] * a.share / replicas))
    return out


def mixed_headroom(resolved: Resolved, plan: Plan, steps: int = 12) -> dict[str, float]:
    """Pools of several request sizes that the mix overloads, with the largest share s < 1 of their planned load
    at which the mix keeps every bound of its demands and its slots within the planning share.

    The MILP sizes a shared pool by the sum of each size's solo capacity (linear), but the sizes share one
    iteration time, so a mix of demands each at its solo capacity can need more than the replica has.
    """
    workloads = {w.name: w for w in resolved.scenario.workloads}

    def holds(rows: list[tuple[Assignment, float]], scale: float) -> bool:
        pred = pool_predictions(resolved, [(a, rate * scale) for a, rate in rows])
        if not pred[-1]["slots"] <= 1.0:
            return False
        for k, (a, _) in enumerate(rows):
            slo = workloads[a.workload].slo
            for metric, bound in (("ttft", slo.max_ttft_s), ("tpot", slo.max_tpot_s), ("e2e", slo.max_e2e_s)):
                if bound is not None and not pred[k][metric] <= bound:
                    return False
        return True

    out = {}
    for pool, rows in by_pool(resolved, plan).items():
        if len({a.demand for a, _ in rows}) < 2 or holds(rows, 1.0):
            continue
        lo, hi = 0.0, 1.0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if holds(rows, mid) else (lo, mid)
        out[pool] = max(lo, 0.05)
    return out


# the points of each pool's latency tail a workload's percentile is read from: up to p99.9, since a pool that carries
# most of a workload's requests sets its p99 from beyond its own p99 (where slot waits start)
LEVELS = ("p50", "p90", "p95", "p99", "p99.9")


def _mixed_quantile(weights: np.ndarray, points: np.ndarray, q: float) -> float:
    """``q`` quantile of a workload's latency when its requests split over pools with ``weights`` and each pool's
    latency has the quantiles ``points`` (pools x LEVELS): each tail log-linear between its points (exponential
    beyond the last at the slope of the last two, linear from 1 at 0 to 0.5 at p50), the mixture's tail found by
    bisection."""
    levels = np.array([QUANTILE[x] for x in LEVELS], float)
    tails = np.log(1.0 - levels)
    x = np.maximum.accumulate(np.maximum(points, 1e-12), axis=1)
    w = weights / weights.sum()

    def tail(v: float) -> float:
        out = 0.0
        for wi, xi in zip(w, x):
            if v <= xi[0]:
                t = 1.0 - 0.5 * v / xi[0]
            elif v >= xi[-1]:
                slope = (tails[-1] - tails[-2]) / max(xi[-1] - xi[-2], 1e-12 * xi[-1])
                t = float(np.exp(tails[-1] + slope * (v - xi[-1])))
            else:
                t = float(np.exp(np.interp(v, xi, tails)))
            out += wi * t
        return out

    lo, hi = 0.0, float(x[:, -1].max())
    while tail(hi) > 1.0 - q:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if tail(mid) > 1.0 - q else (lo, mid)
    return hi


def slo_report(resolved: Resolved, plan: Plan) -> list[SLOPromise]:
    """One promise per (online workload, bound given), sorted by workload and metric: a mean is the
    request-weighted mean over the workload's pools; a percentile one pool's, or for a workload spread over
    several pools the percentile of the mixture of their latency laws."""
    rates = demand_rates(resolved)
    workloads = {w.name: w for w in resolved.scenario.workloads}
    pools = by_pool(resolved, plan)
    # per workload and metric: the worst pool (percentiles) and the request-weighted average (means)
    worst: dict[tuple[str, str], tuple[float, Assignment]] = {}
    weighted: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    pools_of: dict[str, set[str]] = defaultdict(set)
    for pool, rows in pools.items():
        for k, values in pool_predictions(resolved, rows).items():
            if k < 0:
                continue
            a, _ = rows[k]
            pools_of[a.workload].add(pool)
            weight = rates[a.demand] * a.share
            for metric, value in values.items():
                key = (a.workload, metric)
                if key not in worst or value > worst[key][0]:
                    worst[key] = (value, a)
                weighted[key][0] += weight * value
                weighted[key][1] += weight
    for key, (total, weight) in weighted.items():
        if workloads[key[0]].slo.percentiles()[key[1]] == "mean" and weight > 0:
            worst[key] = (total / weight, worst[key][1])
    spread = {name for name, seen in pools_of.items() if len(seen) > 1
              and any(v != "mean" for v in workloads[name].slo.percentiles().values())}
    if spread:  # each pool of those workloads at every level of its tail, then the mixture's percentile
        rows_w: dict[str, list[tuple[float, dict[str, list[float]]]]] = defaultdict(list)
        for pool, rows in pools.items():
            if not any(a.workload in spread for a, _ in rows):
                continue
            at = [pool_predictions(resolved, rows, level) for level in LEVELS]
            for k, (a, _) in enumerate(rows):
                if a.workload in spread:
                    rows_w[a.workload].append((rates[a.demand] * a.share,
                                               {m: [at[j][k][m] for j in range(len(LEVELS))] for m in at[0][k]}))
        for name, parts in rows_w.items():
            weights = np.array([w for w, _ in parts])
            for metric, stat in workloads[name].slo.percentiles().items():
                points = np.array([p[metric] for _, p in parts])
                if stat != "mean" and (name, metric) in worst and weights.sum() > 0 and np.all(np.isfinite(points)):
                    q = QUANTILE[stat]
                    worst[(name, metric)] = (_mixed_quantile(weights, points, float(q if q is not None else 0.5)),
                                             worst[(name, metric)][1])
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
