"""From a scenario to a checked ``Plan``: candidates -> MILP -> solve -> extract -> verify.

``plan()`` is the Python API (usable from an Airflow PythonOperator); it raises ``NoCandidatesError`` or
``InfeasibleError`` with a diagnosis when no plan exists, and never returns a plan that ``verify`` rejects.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from .backends import SolveResult, Status, solve
from .candidates import Candidates, build_candidates
from .errors import InfeasibleError, NoCandidatesError, ScenarioError, SolverFailure
from .milp import Problem, build_problem
from .scenario import Resolved, load_scenario, resolve
from .schema import Scenario

SLO_LABELS = {"TTFT": ("ttft_s", "max_ttft_s", 1e3, "ms"), "TPOT": ("tpot_s", "max_tpot_s", 1e3, "ms"),
              "end-to-end latency": ("e2e_s", "max_e2e_s", 1.0, "s"), "TPS": ("tokens_per_s", "min_tokens_per_s",
                                                                              1.0, "tokens/s"),
              }


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Assignment(Strict):
    workload: str
    demand: str
    model: str
    pool: str
    cloud: str
    instance_type: str
    region: str
    pricing: str
    gpu: str
    gpu_count: int
    tensor_parallel: int
    count: int
    share: float
    batch_size: int
    offload_ratio: float
    ttft_s: float
    tpot_s: float
    e2e_s: float
    tokens_per_s: float
    requests_per_s_per_vm: float
    usd_per_hour: float


class Pool(Strict):
    pool: str
    mode: str
    cloud: str
    instance_type: str
    region: str
    pricing: str
    gpu: str
    gpu_count: int
    count: int
    vm_hours: float | None
    unit_usd_per_hour: float
    usd_per_hour: float
    usd: float


class SolverStats(Strict):
    backend: str
    variables: int
    integer_variables: int
    constraints: int
    wall_s: float | None
    note: str = ""


class Plan(Strict):
    scenario: str
    status: str
    objective: float
    bound: float | None
    gap: float | None
    horizon_hours: float
    online_usd_per_hour: float
    offline_usd: float
    assignments: list[Assignment]
    pools: list[Pool]
    solver: SolverStats
    pruning: dict[str, int]
    calibration: str
    provenance: dict[str, Any] | None = None  # package version, catalog dates, calibration id (solver.provenance)


def _resolved(scenario: Resolved | Scenario | str | Path) -> Resolved:
    if isinstance(scenario, Resolved):
        return scenario
    if isinstance(scenario, Scenario):
        return resolve(scenario)
    return load_scenario(scenario)


def nearest_miss(cands: Candidates, demand: str) -> str:
    """One line: why the demand cannot be served, and the closest candidate."""
    rej = cands.rejected[cands.rejected["demand"] == demand]
    d = cands.demands.set_index("demand").loc[demand]
    head = f"workload {d['workload']!r} ({d['model']}, {d['input_tokens']} in / {d['output_tokens']} out)"
    if rej.empty:
        return f"{head}: no instance in the catalog is allowed for it"
    slo = rej[rej["reason"].str.startswith("misses ")]
    if slo.empty:
        return f"{head}: does not fit GPU memory on any allowed instance, even with KV offloading"
    label = slo["reason"].iloc[0].removeprefix("misses ").rsplit(" bound ", 1)[0]
    column, _bound_col, scale, unit = SLO_LABELS[label]
    bound = float(slo["reason"].iloc[0].rsplit(" bound ", 1)[1])
    same = slo[slo["reason"].str.startswith(f"misses {label} ")]
    best = same.loc[same[column].idxmax() if label == "TPS" else same[column].idxmin()]
    cmp = ">=" if label == "TPS" else "<="
    return (f"{head}: no instance meets {label} {cmp} {bound * scale:g} {unit}; best is {best['instance_type']} "
            f"(batch {best['batch_size']}, tp {best['tp']}) at {best[column] * scale:.4g} {unit}")


MAX_VMS_PER_DEMAND = 100_000


def check_scale(cands: Candidates, resolved: Resolved) -> None:
    """Refuse demands that need more VMs than any real fleet, even on their best candidate: such numbers are
    almost always a unit slip, and they push solvers into numerical trouble."""
    from .milp import demand_load

    rows = cands.table
    load = pd.Series(demand_load(rows), index=rows.index)
    hours = rows["deadline_hours"].where(rows["mode"] == "offline", 1.0)
    best = (load / hours).groupby(rows["demand"]).min()
    demands = cands.demands.set_index("demand")
    for demand, vms in best.items():
        if vms > MAX_VMS_PER_DEMAND:
            d = demands.loc[demand]
            index = [x.name for x in resolved.scenario.workloads].index(d["workload"])
            field = "request_rate_per_s" if d["mode"] == "online" else "num_requests"
            raise ScenarioError(f"needs at least {vms:,.0f} VMs even on its best instance (limit "
                                f"{MAX_VMS_PER_DEMAND:,}); check the units", path=resolved.path,
                                field=f"workloads.{index}.{field}")


def diagnose(rows: pd.DataFrame, scenario: Scenario, backend: str) -> str:
    """Name the constraint families whose removal makes the problem feasible (deletion filter)."""
    relaxations = {"quota": {"quotas": []}, "budget": {"budget_usd_per_hour": None, "budget_usd": None},
                   "distinct instance types": {"max_instance_types": None}, "spot share": {"max_spot_share": None}}
    culprits = []
    for family, change in relaxations.items():
        if all(not getattr(scenario, k) for k in change):
            continue
        relaxed = scenario.model_copy(update=change)
        result = solve(build_problem(rows, relaxed).model, backend, time_limit_s=30)
        if result.status is not Status.INFEASIBLE:
            culprits.append(family)
    if not culprits:
        return "the fleet cannot be served even without quotas, budgets or type limits"
    return f"infeasible because of the {' and '.join(culprits)} constraints: relax them to find a plan"


def extract_plan(problem: Problem, result: SolveResult, resolved: Resolved, cands: Candidates,
                 timings: bool = True) -> Plan:
    sc = resolved.scenario
    v = result.values
    assert v is not None
    rows = problem.rows.assign(x=v[problem.x])
    pools = problem.pools.assign(count=np.round(v[problem.n]).astype(int),
                                 vm_hours=np.where(problem.t >= 0, v[np.maximum(problem.t, 0)], np.nan))
    pools = pools[pools["count"] > 0]
    price = pools["usd_per_hour"]
    online = pools["mode"] == "online"
    pools = pools.assign(cost_per_hour=price * pools["count"],
                         cost=np.where(online, price * pools["count"] * sc.horizon_hours, price * pools["vm_hours"]))
    used = rows[rows["x"] > 1e-7].merge(pools[["pool", "count", "load", "cost_per_hour"]], on="pool",
                                        suffixes=("", "_pool"))
    pool_load = used["demand_load"] * used["x"]
    total_load = pool_load.groupby(used["pool"]).transform("sum")
    assignments = [Assignment(
        workload=r.workload, demand=r.demand, model=r.model, pool=r.pool, cloud=r.cloud,
        instance_type=r.instance_type, region=r.region, pricing=r.pricing, gpu=r.gpu, gpu_count=int(r.gpu_count),
        tensor_parallel=int(r.tp), count=int(r.count), share=round(float(r.x), 9), batch_size=int(r.batch_size),
        offload_ratio=round(float(r.offload_ratio), 6), ttft_s=float(r.ttft_s), tpot_s=float(r.tpot_s),
        e2e_s=float(r.e2e_s), tokens_per_s=float(r.tokens_per_s), requests_per_s_per_vm=float(r.requests_per_s_per_vm),
        usd_per_hour=float(r.cost_per_hour * (l / t if t > 0 else 0.0)))
        for r, l, t in zip(used.itertuples(), pool_load, total_load)]
    pool_models = [Pool(pool=p.pool, mode=p.mode, cloud=p.cloud, instance_type=p.instance_type, region=p.region,
                        pricing=p.pricing, gpu=p.gpu, gpu_count=int(p.gpu_count), count=int(p.count),
                        vm_hours=None if math.isnan(p.vm_hours) else round(float(p.vm_hours), 9),
                        unit_usd_per_hour=float(p.usd_per_hour), usd_per_hour=float(p.cost_per_hour),
                        usd=float(p.cost)) for p in pools.itertuples()]
    m = problem.model
    objective = float(sum(p.usd for p in pool_models))
    return Plan(
        scenario=sc.name, status=result.status.value, objective=round(objective, 6),
        bound=None if result.bound is None else round(result.bound, 6),
        gap=None if result.gap is None else round(result.gap, 9), horizon_hours=sc.horizon_hours,
        online_usd_per_hour=round(float(pools.loc[online, "cost_per_hour"].sum()), 6),
        offline_usd=round(float(pools.loc[~online, "cost"].sum()), 6),
        assignments=sorted(assignments, key=lambda a: (a.workload, a.demand, a.pool)),
        pools=sorted(pool_models, key=lambda p: p.pool),
        solver=SolverStats(backend=result.backend, variables=len(m.names), integer_variables=m.n_integer,
                           constraints=len(m.rows), wall_s=round(result.wall_s, 3) if timings else None,
                           note=result.note),
        pruning=cands.stats, calibration=resolved.calibration.source,
    )


def plan(scenario: Resolved | Scenario | str | Path, *, solver: str = "highs", time_limit_s: float | None = None,
         mip_gap: float = 1e-6, prune: bool = True, timings: bool = True, verify_plan: bool = True) -> Plan:
    """Cheapest fleet that serves every workload of the scenario within its SLO and the business limits.

    Raises:
        NoCandidatesError: a workload has no candidate that fits and meets its SLO (message: nearest miss).
        InfeasibleError: candidates exist but quotas/budget/type limits cannot all hold (message: culprits).
        SolverFailure: no back end produced a plan within the limits.
    """
    resolved = _resolved(scenario)
    sc = resolved.scenario
    try:
        cands = build_candidates(sc, resolved.instances, resolved.models, resolved.calibration, prune=prune)
    except ScenarioError as exc:  # raised without the file name (e.g. an online workload with no rate)
        if exc.path:
            raise
        raise ScenarioError(str(exc).split(": ", 1)[-1], path=resolved.path, field=exc.field) from None
    served = set(cands.table["demand"]) if not cands.table.empty else set()
    missing = [d for d in cands.demands["demand"] if d not in served]
    if missing:
        raise NoCandidatesError("; ".join(nearest_miss(cands, d) for d in missing))
    check_scale(cands, resolved)
    problem = build_problem(cands.table, sc)
    result = solve(problem.model, solver, time_limit_s=time_limit_s, mip_gap=mip_gap)
    if result.status is Status.INFEASIBLE:
        raise InfeasibleError(diagnose(cands.table, sc, result.backend))
    if result.values is None:
        raise SolverFailure(f"{result.backend} stopped ({result.status.value}) without a feasible plan; "
                            "raise --time-limit")
    out = extract_plan(problem, result, resolved, cands, timings)
    if verify_plan:
        from .verify import verify

        violations = verify(resolved, out)
        if violations:
            raise SolverFailure("the solver's plan fails verification: " + "; ".join(violations[:5]))
    from .provenance import provenance_of

    return out.model_copy(update={"provenance": provenance_of(resolved)})
