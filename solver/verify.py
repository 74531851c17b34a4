"""Re-check a plan against its scenario without the candidate table or the MILP.

Loads only the scenario (with its catalog and model cards) and the performance model: every assignment is
re-predicted, and every rule is re-evaluated with plain arithmetic: the plan's shape (known workloads, demands
and pools, shares in [0, 1] summing to 1 per demand, one model, precision, engine and configuration per pool),
every allowed set of the scenario (clouds, regions, types, pricing, batch sizes, tensor parallelism, offload
grid, per-workload limits), GPU and host memory, SLO bounds, pool capacity and offline billing, quotas, budgets,
spot share, distinct types, replica floors/caps and region spread, the horizon and every reported total.
Returns the violations, each ``family[key]: what``; a malformed plan gives violations, never an exception.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from pydantic import ValidationError

from .perf import Estimate
from .plan_types import Assignment, Plan, Pool
from .planfile import catalog_instance, offers_of
from .profiles import commitment_discount
from .scenario import Resolved
from .schema import Bucket, Instance, Workload
from .verify_rows import REL_TOL, predict_rows, row_rules

MINIMUM_BILLED_HOURS = {"per_second": 1 / 60, "hourly": 1.0}  # own copy of the billing rule (see milp.py)
STATUSES = ("optimal", "feasible")


def _close(a: float, b: float, tol: float = REL_TOL) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _le(a: float, b: float) -> bool:
    """a <= b within the relative tolerance."""
    return a <= b + REL_TOL * max(1.0, abs(a), abs(b))


def _demands(w: Workload) -> dict[str, Bucket]:
    mix = w.size_mix()
    return {w.name: mix[0]} if w.buckets is None else {f"{w.name}#{k}": b for k, b in enumerate(mix)}


def _offering_rules(resolved: Resolved, w: Workload, p: Pool, inst: Instance) -> list[str]:
    """The scenario's and the workload's allowed sets for one pool."""
    sc = resolved.scenario
    bad = []
    for label, value, allowed in (("cloud", p.cloud, sc.clouds), ("region", p.region, sc.regions),
                                  ("instance type", p.instance_type, sc.instance_types),
                                  ("instance type", p.instance_type, w.instance_types),
                                  ("batch size", p.batch_size, w.batch_sizes or sc.settings.batch_sizes)):
        if allowed and value not in allowed:
            bad.append(f"allowed[{w.name}@{p.pool}]: {label} {value} is not allowed")
    pricing = w.pricing or sc.pricing
    if p.pricing not in ("on_demand", "spot") or pricing not in ("both", p.pricing):
        bad.append(f"allowed[{w.name}@{p.pool}]: pricing {p.pricing} is not allowed")
    model = resolved.models[w.model]
    tp = p.tensor_parallel
    if tp < 1 or inst.gpu_count % tp or tp > sc.settings.max_tensor_parallel or model.num_attention_heads % tp:
        bad.append(f"allowed[{w.name}@{p.pool}]: tensor parallel {tp} on {inst.gpu_count} GPUs")
    step = sc.settings.offload_step
    grid_ok = math.isclose(p.offload_ratio, 1.0) or math.isclose(p.offload_ratio / step, round(p.offload_ratio / step),
                                                                 abs_tol=1e-6)
    if not 0 <= p.offload_ratio <= 1 or not grid_ok or (p.offload_ratio > 0 and not sc.settings.allow_offload):
        bad.append(f"allowed[{w.name}@{p.pool}]: offload ratio {p.offload_ratio} is not on the allowed grid")
    return bad


def _reported(a: Assignment, p: Pool, bucket: Bucket, est: Estimate, k: int, rps_vm: float) -> list[str]:
    """The assignment repeats its pool and the model's predictions faithfully."""
    bad = []
    for key in ("cloud", "instance_type", "region", "pricing", "gpu", "gpu_count", "tensor_parallel", "count",
                "batch_size", "offload_ratio"):
        if getattr(a, key) != getattr(p, key):
            bad.append(f"assignment[{a.demand}@{a.pool}]: {key} {getattr(a, key)} differs from its pool's")
    if (a.input_tokens, a.output_tokens) != (bucket.input_tokens, bucket.output_tokens):
        bad.append(f"assignment[{a.demand}@{a.pool}]: request lengths differ from the scenario's")
    for key, value in (("ttft_s", est.ttft_s[k]), ("tpot_s", est.tpot_s[k]), ("e2e_s", est.e2e_s[k]),
                       ("tokens_per_s", est.tokens_per_s[k]), ("requests_per_s_per_vm", rps_vm)):
        if not _close(getattr(a, key), float(value)):
            bad.append(f"prediction[{a.demand}@{a.pool}]: "
                       f"reported latency or rate {key} differs from the model's prediction")
    return bad


def verify(resolved: Resolved, plan: Plan | dict[str, Any]) -> list[str]:
    """All rule violations of ``plan`` (a ``Plan`` or its JSON dict) for ``resolved``; empty if it holds.

    Deliberately independent of the candidate table and the MILP: it re-predicts each assignment and keeps its
    own copy of the memory, offload, SLO and billing rules, so a bug there cannot hide from it."""
    if not isinstance(plan, Plan):
        try:
            plan = Plan.model_validate(plan)
        except ValidationError as exc:
            return [f"schema[{'.'.join(map(str, e['loc']))}]: {e['msg']}" for e in exc.errors()]
    sc = resolved.scenario
    workloads = {w.name: w for w in sc.workloads}
    offers = offers_of(resolved.instances)
    bad = physically_impossible(plan) + _check_header(plan, resolved)
    pools: dict[str, Pool] = {}
    p: Pool | None
    for p in plan.pools:
        if p.pool in pools:
            bad.append(f"pool[{p.pool}]: listed twice")
        pools[p.pool] = p
    served: dict[str, float] = defaultdict(float)
    load: dict[str, float] = defaultdict(float)
    members: dict[str, list[tuple[Assignment, Workload]]] = defaultdict(list)
    rps: dict[tuple[str, str], float] = {}  # re-predicted requests/s per VM of each (demand, pool)
    # first the lookups, then one batched prediction of every row that names a known demand and catalog pool,
    # then the rules, assignment by assignment (messages in the order of the plan's assignments)
    entries: list[str | tuple[Assignment, Workload, Bucket, Pool, Instance]] = []
    instances = {name: catalog_instance(pool.model_dump(), offers) for name, pool in pools.items()}  # once per pool
    for a in plan.assignments:
        w = workloads.get(a.workload)
        demands = _demands(w) if w is not None else {}
        p = pools.get(a.pool)
        inst = instances.get(a.pool)
        if w is None or a.demand not in demands:
            entries.append(f"assignment[{a.demand}@{a.pool}]: unknown workload {a.workload!r} or demand")
        elif p is None or inst is None:
            entries.append(f"assignment[{a.demand}@{a.pool}]: pool missing or not an instance of the catalog")
        else:
            entries.append((a, w, demands[a.demand], p, inst))
    rows = [e for e in entries if not isinstance(e, str)]
    est = predict_rows(resolved, [(w, b, p) for _, w, b, p, _ in rows])
    k = -1
    for entry in entries:
        if isinstance(entry, str):
            bad.append(entry)
            continue
        a, w, bucket, p, inst = entry
        k += 1
        if not (0.0 < a.share <= 1.0 + 1e-9):
            bad.append(f"share[{a.demand}@{a.pool}]: {a.share} is not in (0, 1]")
        if a.model != w.model:
            bad.append(f"assignment[{a.demand}@{a.pool}]: model {a.model} is not the workload's {w.model}")
        bad += _offering_rules(resolved, w, p, inst)
        bad += row_rules(resolved, w, p, inst, est, k)
        rps_vm = float(est.requests_per_s[k]) * (inst.gpu_count // max(p.tensor_parallel, 1))
        rps[(a.demand, a.pool)] = rps_vm
        bad += _reported(a, p, bucket, est, k, rps_vm)
        if rps_vm > 0:
            per = (w.request_rate_per_s or 0.0) * (w.peak_factor or sc.peak_factor) if w.mode == "online" \
                else (w.num_requests or 0) / 3600.0
            load[a.pool] += per * bucket.fraction * a.share / rps_vm
        served[a.demand] += a.share
        members[a.pool].append((a, w))
    for w in sc.workloads:
        bad += [f"demand[{d}]: served {served.get(d, 0.0):.6f} of 1" for d in _demands(w)
                if not _close(served.get(d, 0.0), 1.0)]
    bad += _check_pools(plan, pools, members, load, resolved, offers)
    bad += _check_hourly(plan, resolved, rps)
    bad += _check_limits(plan, resolved)
    bad += _check_replicas(plan, resolved, members, offers)
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


def _check_header(plan: Plan, resolved: Resolved) -> list[str]:
    sc = resolved.scenario
    bad = []
    if plan.status not in STATUSES:
        bad.append(f"status: {plan.status!r} is not a plan's status")
    if not _close(plan.horizon_hours, sc.horizon_hours):
        bad.append(f"horizon: {plan.horizon_hours:g} h, the scenario's is {sc.horizon_hours:g} h")
    totals = (("objective", plan.objective, sum(p.usd for p in plan.pools)),
              ("online_usd_per_hour", plan.online_usd_per_hour,
               sum(p.pool_usd_per_hour for p in plan.pools if p.mode == "online")),
              ("offline_usd", plan.offline_usd, sum(p.usd for p in plan.pools if p.mode == "offline")))
    bad += [f"total[{k}]: reported {v:.4f}, recomputed {r:.4f}" for k, v, r in totals if not _close(v, r)]
    if plan.gap is not None and plan.gap < 0:
        bad.append(f"total[gap]: {plan.gap} is negative")
    return bad


def _pool_shape(p: Pool, group: list[tuple[Assignment, Workload]], share_replicas: bool) -> list[str]:
    """One model, precision, engine and mode per pool; offline (or unshared) pools hold one workload."""
    bad = []
    kinds = {(w.model, w.dtype, w.effective_kv_dtype, w.engine) for _, w in group}
    if len(kinds) > 1:
        bad.append(f"pool[{p.pool}]: holds {len(kinds)} model/precision/engine variants")
    if any(w.mode != p.mode for _, w in group):
        bad.append(f"pool[{p.pool}]: mode {p.mode} differs from a workload it carries")
    if (p.mode == "offline" or not share_replicas) and len({w.name for _, w in group}) > 1:
        bad.append(f"pool[{p.pool}]: shares its VMs between workloads")
    return bad


def _check_pools(plan: Plan, pools: dict[str, Pool], members: dict[str, list[tuple[Assignment, Workload]]],
                 load: dict[str, float], resolved: Resolved, offers: dict[tuple[str, str, str], Instance]) -> list[str]:
    sc = resolved.scenario
    bad = []
    for p in pools.values():
        inst = offers.get((p.cloud, p.instance_type, p.region))
        price = None if inst is None else inst.usd_per_hour if p.pricing == "on_demand" else inst.spot_usd_per_hour
        if price is None or not _close(p.unit_usd_per_hour, price):
            bad.append(f"price[{p.pool}]: {p.unit_usd_per_hour} USD/h is not the catalog's {price}")
        group = members.get(p.pool, [])
        if p.count < 1 or not group:
            bad.append(f"pool[{p.pool}]: {p.count} VMs and {len(group)} assignments: a listed pool works")
            continue
        bad += _pool_shape(p, group, sc.share_replicas)
        if p.mode == "online" and plan.hourly is not None:
            pass  # capacity and cost per hour: _check_hourly
        elif not _close(p.pool_usd_per_hour, p.unit_usd_per_hour * p.count):
            bad.append(f"cost[{p.pool}]: pool_usd_per_hour {p.pool_usd_per_hour:.4f} is not unit x count")
        work = load.get(p.pool, 0.0)
        if p.mode == "online":
            if p.vm_hours is not None:
                bad.append(f"billing[{p.pool}]: an online pool reports VM-hours")
            if plan.hourly is not None:
                continue
            if not _le(work, p.count):
                bad.append(f"capacity[{p.pool}]: needs {work:.4f} VMs, has {p.count}")
            expected = p.unit_usd_per_hour * p.count * plan.horizon_hours
        else:
            hours = p.vm_hours if p.vm_hours is not None else math.nan
            deadline = group[0][1].deadline_hours or 0.0
            bad += _offline_rules(p, work, hours, deadline, sc.billing, sc.max_spot_share is not None)
            expected = p.unit_usd_per_hour * (hours if math.isfinite(hours) else 0.0)
        if not _close(p.usd, expected):
            bad.append(f"cost[{p.pool}]: reported {p.usd:.4f} USD, recomputed {expected:.4f}")
        total = sum(a.share_usd_per_hour for a, _ in group)
        if not _close(total, p.pool_usd_per_hour, 1e-5):
            bad.append(f"cost[{p.pool}]: assignments' share_usd_per_hour sum {total:.4f}, pool {p.pool_usd_per_hour:.4f}")
    return bad


def _check_hourly(plan: Plan, resolved: Resolved, rps: dict[tuple[str, str], float]) -> list[str]:
    """With rate profiles: per hour h, every demand's shares sum to 1 and each online pool's load
    sum_d rate_{d,h} share_{d,h} / rps_vm <= base + burst_h; costs are base x commitment price x 24 h plus burst
    VM-hours x unit price, per day, times horizon / 24; the pool's count is its peak hour's fleet."""
    sc = resolved.scenario
    if (plan.hourly is not None) != sc.hourly:
        return [f"hourly: the scenario {'has' if sc.hourly else 'has no'} rate profile, the plan "
                f"{'lacks' if plan.hourly is None else 'has'} an hourly section"]
    if plan.hourly is None:
        return []
    bad, days, hp = [], sc.horizon_hours / 24, {q.pool: q for q in plan.hourly.pools}
    rate = {d: (w, b.fraction, [(w.request_rate_per_s or 0.0) * (w.peak_factor or sc.peak_factor) * f
                                for f in w.hourly_factors()]) for w in sc.workloads if w.mode == "online"
            for d, b in _demands(w).items()}
    need: defaultdict[str, list[float]] = defaultdict(lambda: [0.0] * 24)
    served: defaultdict[str, list[float]] = defaultdict(lambda: [0.0] * 24)
    for s in plan.hourly.shares:
        if s.demand not in rate or (s.demand, s.pool) not in rps or len(s.shares) != 24:
            bad.append(f"hourly[{s.demand}@{s.pool}]: not an assignment of the plan, or not 24 shares")
            continue
        w, frac, r = rate[s.demand]
        for h, x in enumerate(s.shares):
            served[s.demand][h] += x
            need[s.pool][h] += r[h] * frac * x / rps[(s.demand, s.pool)] if rps[(s.demand, s.pool)] > 0 else 0.0
    bad += [f"hourly_demand[{d}@h{h:02d}]: served {served[d][h]:.6f} of 1" for d, (_, _, r) in rate.items()
            for h in range(24) if r[h] > 0 and not _close(served[d][h], 1.0)]
    for p in plan.pools:
        q = hp.get(p.pool)
        if p.mode != "online":
            continue
        if q is None or len(q.burst) != 24 or q.base < 0 or min(q.burst) < 0:
            bad.append(f"hourly[{p.pool}]: no hourly fleet of 24 non-negative burst counts and a base")
            continue
        d = commitment_discount(p.cloud, p.instance_type, sc)
        offered = (None if d is None or p.pricing != "on_demand"
                   else p.unit_usd_per_hour * (1 - d) * sc.commitment_price_scale)
        if q.base > 0 and (offered is None or q.reserved_usd_per_hour is None
                           or not _close(offered, q.reserved_usd_per_hour)):
            bad.append(f"commitment[{p.pool}]: {q.base} committed VMs at {q.reserved_usd_per_hour}, offered {offered}")
        bad += [f"hourly_capacity[{p.pool}@h{h:02d}]: needs {need[p.pool][h]:.4f} VMs, has {q.base + q.burst[h]}"
                for h in range(24) if not _le(need[p.pool][h], q.base + q.burst[h])]
        bad += _min_run(p.pool, q.burst, sc.min_run_hours)
        usd = ((offered or 0.0) * q.base * 24 + p.unit_usd_per_hour * sum(q.burst)) * days
        if p.count != q.base + max(q.burst) or not _close(p.usd, usd) or not _close(p.pool_usd_per_hour * sc.horizon_hours, usd):
            bad.append(f"hourly_cost[{p.pool}]: {p.count} VMs, {p.usd:.4f} USD; recomputed peak {q.base + max(q.burst)}"
                       f" VMs, {usd:.4f} USD")
    if set(hp) != {p.pool for p in plan.pools if p.mode == "online"}:
        bad.append("hourly: its pools are not the plan's online pools")
    return bad


def _min_run(pool: str, burst: list[int], hours: int | None) -> list[str]:
    """Each started burst VM runs >= m hours (day wraps): exact with the fewest starts max(0, u_h - u_{h-1})."""
    if hours is None or hours <= 1:
        return []
    starts = [max(0, burst[h] - burst[h - 1]) for h in range(24)]
    return [f"min_run[{pool}@h{h:02d}]: {burst[h]} burst VMs, but {sum(starts[(h - j) % 24] for j in range(hours))}"
            f" started in the last {hours} h" for h in range(24)
            if burst[h] < sum(starts[(h - j) % 24] for j in range(hours))]


def _offline_rules(p: Pool, work: float, hours: float, deadline: float, billing: str, idle: bool) -> list[str]:
    """n VMs, each running at most D hours, billed max(run, 1 min) per second or whole started hours per VM.
    Per second, no VM beyond those the work needs and no hour beyond the work and the minimum charges, unless
    ``idle`` (a spot share is set): then a VM may be held, idle, until the deadline (its on-demand GPU-hours count
    in the share, as an idle online VM's do)."""
    n = p.count
    if not math.isfinite(hours) or hours < 0:
        return [f"billing[{p.pool}]: offline pool without valid VM-hours ({p.vm_hours})"]
    bad = []
    if not _le(work, hours):
        bad.append(f"capacity[{p.pool}]: needs {work:.4f} VM-hours, billed {hours:.4f}")
    if not _le(MINIMUM_BILLED_HOURS[billing] * n, hours):
        bad.append(f"billing[{p.pool}]: {hours:.4f} VM-hours is below the minimum charge of {n} VMs")
    if billing == "per_second":
        if not _le(work, deadline * n):
            bad.append(f"deadline[{p.pool}]: {work:.4f} VM-hours do not fit {n} VMs x {deadline:g} h")
        if idle:
            if not _le(hours, max(deadline, MINIMUM_BILLED_HOURS[billing]) * n):
                bad.append(f"billing[{p.pool}]: {hours:.4f} VM-hours billed on {n} VMs held at most {deadline:g} h")
            return bad
        if not _le(deadline * (n - 1), work):
            bad.append(f"count[{p.pool}]: {n} VMs where {math.ceil(work / deadline - 1e-9)} finish in time")
        if not _le(hours, work + MINIMUM_BILLED_HOURS[billing] * n):
            bad.append(f"billing[{p.pool}]: {hours:.4f} VM-hours billed for {work:.4f} of work on {n} VMs (at most the "
                       f"work plus each VM's minimum charge)")
        return bad
    if not math.isclose(hours, round(hours), abs_tol=1e-6):
        bad.append(f"billing[{p.pool}]: {hours} VM-hours is not whole hours")
    f, c = math.floor(deadline + 1e-9), math.ceil(deadline - 1e-9)
    # most work t whole billed hours buy on n VMs that each stop by the deadline
    most = min(hours, (deadline - f) * hours + (1 - (deadline - f)) * f * n) if deadline > f else min(hours, f * n)
    if not _le(work, most) or not _le(hours, c * n):
        bad.append(f"deadline[{p.pool}]: {work:.4f} VM-hours do not fit {n} VMs billed {hours:g} h by {deadline:g} h")
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
    total = sum(p.usd for p in plan.pools)
    if sc.budget_usd is not None and total > sc.budget_usd * (1 + REL_TOL):
        bad.append(f"budget[usd]: {total:.4f} exceeds {sc.budget_usd:g}")
    if sc.max_spot_share is not None:  # GPU-hours: an online VM runs the horizon, an offline one its billed hours

        def gpu_hours(p: Pool) -> float:
            return p.gpu_count * (p.count * sc.horizon_hours if p.mode == "online" else (p.vm_hours or 0.0))

        gpus = sum(gpu_hours(p) for p in plan.pools)
        spot = sum(gpu_hours(p) for p in plan.pools if p.pricing == "spot")
        if spot > sc.max_spot_share * gpus * (1 + REL_TOL) + 1e-9:
            bad.append(f"spot_share: {spot:.4g} of {gpus:.4g} GPU-hours on spot exceeds {sc.max_spot_share:.0%}")
    types = {p.instance_type for p in plan.pools if p.count > 0}
    if sc.max_instance_types is not None and len(types) > sc.max_instance_types:
        bad.append(f"types: {len(types)} distinct instance types exceed {sc.max_instance_types}")
    return bad


def _may_serve(resolved: Resolved, w: Workload, p: Pool, group: list[tuple[Assignment, Workload]],
               offers: dict[tuple[str, str, str], Instance]) -> Instance | None:
    """Pool p's instance if p could take a demand of w as far as its shape goes: it shares w's replicas (same
    sharing group) and w may use its offering and configuration; whether a demand fits and meets its SLO there
    is ``_check_replicas``' batched prediction."""
    inst = offers.get((p.cloud, p.instance_type, p.region))
    if inst is None or not group:
        return None
    kind = (w.model, w.dtype, w.effective_kv_dtype, w.engine, w.mode)
    if any((o.model, o.dtype, o.effective_kv_dtype, o.engine, o.mode) != kind for _, o in group):
        return None
    if not resolved.scenario.share_replicas and any(o.name != w.name for _, o in group):
        return None
    return None if _offering_rules(resolved, w, p, inst) else inst


def _check_replicas(plan: Plan, resolved: Resolved, members: dict[str, list[tuple[Assignment, Workload]]],
                    offers: dict[tuple[str, str, str], Instance]) -> list[str]:
    """Replica floors and caps and region spread count the VMs of working pools that can serve the workload:
    pools where some demand of the workload fits and meets its SLO (one batched prediction for all)."""
    limited = [w for w in resolved.scenario.workloads if w.min_replicas is not None or w.max_replicas is not None
               or w.spread]
    pairs = [(i, j, inst) for i, w in enumerate(limited) for j, p in enumerate(plan.pools)
             if (inst := _may_serve(resolved, w, p, members.get(p.pool, []), offers)) is not None]
    rows = [(limited[i], b, plan.pools[j]) for i, j, _ in pairs for b in _demands(limited[i]).values()]
    est = predict_rows(resolved, rows)
    can: set[tuple[int, int]] = set()  # (workload, pool) where some demand of the workload fits and meets its SLO
    k = 0
    for i, j, inst in pairs:
        for _ in _demands(limited[i]):
            if not row_rules(resolved, limited[i], plan.pools[j], inst, est, k):
                can.add((i, j))
            k += 1
    bad = []
    for i, w in enumerate(limited):
        serving = [p for j, p in enumerate(plan.pools) if (i, j) in can]
        vms = sum(p.count for p in serving)
        if w.min_replicas is not None and vms < w.min_replicas:
            bad.append(f"replicas[{w.name}]: {vms} VMs can serve it, at least {w.min_replicas} needed")
        if w.max_replicas is not None and vms > w.max_replicas:
            bad.append(f"replicas[{w.name}]: {vms} VMs can serve it, at most {w.max_replicas} allowed")
        for region in w.spread or []:
            if not any(p.region == region for p in serving):
                bad.append(f"spread[{w.name}@{region}]: no VM in {region} can serve it")
    return bad
