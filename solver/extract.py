"""Solve -> extract -> check: the one path from a built MILP to a checked ``Plan``.

Used by ``plan.plan`` (scenarios) and ``melange.solve_melange`` (Mélange problems) alike; each passes its own
independent checker and its own explanation of infeasibility.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .backends import SolveResult, Status, solve, write_lp
from .candidates import Candidates
from .errors import PlannerError, SolverFailure
from .field_checks import HOURS_PER_DAY
from .linear_model import HourlyVars, Problem
from .milp import MINIMUM_BILLED_HOURS
from .plan_types import Assignment, Hourly, HourlyPool, HourlyShare, Plan, Pool, SolverStats
from .scenario import Resolved

Checker = Callable[[Plan], list[str]]


@dataclass(frozen=True)
class SolveOptions:
    """How to solve: back end, limits, and what to report or write."""

    backend: str = "highs"
    time_limit_s: float | None = None
    mip_gap: float = 1e-6
    threads: int | None = None
    timings: bool = True
    lp_path: Path | None = None
    started: float | None = None  # ``time.perf_counter()`` when the run began: the limit covers the whole run
    reuse: dict[str, Any] | None = None  # block optima shared by one run's solves (``backends.solve``)
    reserve_s: float = 0.0  # kept after the solve for the caller's own checks (plan(): mix check, verify, report)


WRITE_RESERVE = 0.05  # share of a time limit (at most WRITE_RESERVE_S) kept for extraction, checks and writing
WRITE_RESERVE_S = 1.0


def solve_time_left(options: SolveOptions) -> float | None:
    """Seconds the solve may take: the run's limit less what candidate building and model building already
    spent (``options.started``), a reserve for extraction and writing the plan, and ``options.reserve_s`` for
    the checks the caller runs after the solve.

    Raises:
        SolverFailure: the limit was spent before the solve could start.
    """
    if options.time_limit_s is None:
        return None
    spent = 0.0 if options.started is None else time.perf_counter() - options.started
    left = options.time_limit_s - spent - min(WRITE_RESERVE * options.time_limit_s, WRITE_RESERVE_S) - options.reserve_s
    if left <= 0:
        kept = f", {options.reserve_s:.1f} s kept for the checks after it" if options.reserve_s else ""
        raise SolverFailure(f"the time limit of {options.time_limit_s:g} s was spent before the solve "
                            f"({spent:.1f} s building candidates and the model{kept}); raise --time-limit")
    return left


def solve_plan(problem: Problem, resolved: Resolved, cands: Candidates, options: SolveOptions, *,
               check: Checker | None, check_name: str,
               on_infeasible: Callable[[SolveResult], PlannerError]) -> Plan:
    """Solve ``problem``, turn the solution into a ``Plan`` and run ``check`` on it.

    Raises:
        PlannerError: from ``on_infeasible`` when the solver proves the model infeasible.
        SolverFailure: no solution within the limits, a back-end failure, or a plan that fails ``check``.
    """
    if options.lp_path is not None:
        write_lp(problem.model, options.lp_path)
    result = solve(problem.model, options.backend, time_limit_s=solve_time_left(options), mip_gap=options.mip_gap,
                   threads=options.threads, reuse=options.reuse)
    if result.status is Status.INFEASIBLE:
        raise on_infeasible(result)
    if result.values is None:
        raise SolverFailure(f"{result.backend} stopped ({result.status.value}) without a feasible plan; "
                            "raise --time-limit")
    plan = extract_plan(problem, result, resolved, cands, options.timings)
    violations = check(plan) if check is not None else []
    if violations:
        raise SolverFailure(f"the solver's plan fails {check_name}: " + "; ".join(violations[:5]))
    return plan


SHARE_EPS = 1e-7  # shares below this are solver noise: neither listed nor counted as load


def _used_pools(problem: Problem, values: np.ndarray, horizon_hours: float, billing: str) -> pd.DataFrame:
    """Pools with at least one VM that carry load, with their VM count, billed hours and costs (integers read
    with ``round``; billed hours clipped at 0 and rounded to whole hours where they are integer variables, and
    where they are not at least the pool's work and minimum charge: the solver meets those rows only to its
    feasibility tolerance, 1e-6 absolute, which on a pool of a few billed minutes is more than ``verify``'s
    relative one)."""
    t_index = np.maximum(problem.t, 0)
    hours = np.clip(values[t_index], 0.0, None)
    integer = np.asarray(problem.model.integer)[t_index]
    x = values[problem.x]
    work = (problem.rows["demand_load"].to_numpy(float) * x)
    work = pd.Series(work).groupby(problem.rows["pool"].to_numpy()).sum().reindex(problem.pools["pool"]).fillna(0.0)
    minimum = MINIMUM_BILLED_HOURS[billing] * np.round(values[problem.n])
    hours = np.where(integer, np.round(hours), np.maximum(hours, np.maximum(work.to_numpy(), minimum)))
    loaded = set(problem.rows.loc[x > SHARE_EPS, "pool"])
    pools = problem.pools.assign(count=np.round(values[problem.n]).astype(int),
                                 vm_hours=np.where(problem.t >= 0, hours, np.nan), work_hours=work.to_numpy())
    if problem.hourly is not None:  # the peak hour's fleet and the day's cost (milp_hourly.py)
        fleet = hourly_fleet(problem.hourly, values, problem.pools, horizon_hours)
        pools = pools.assign(count=np.where(problem.hourly.base >= 0, fleet["peak"], pools["count"]))
        for col in ("base", "commitment_usd", "burst_usd"):
            pools[col] = fleet[col]
        pools["burst"] = list(fleet["burst"])
        loaded |= set(pools.loc[fleet["peak"] > 0, "pool"]) & hourly_loaded(problem, values)
    pools = pools[(pools["count"] > 0) & pools["pool"].isin(loaded)]
    price = pools["unit_usd_per_hour"]
    online = pools["mode"] == "online"
    usd = np.where(online, price * pools["count"] * horizon_hours, price * pools["vm_hours"])
    if problem.hourly is not None:
        usd = np.where(online, pools["commitment_usd"] + pools["burst_usd"], usd)
        return pools.assign(usd=usd, pool_usd_per_hour=np.where(online, usd / horizon_hours, price * pools["count"]))
    return pools.assign(pool_usd_per_hour=price * pools["count"], usd=usd)


def hourly_fleet(hv: HourlyVars, values: np.ndarray, pools: pd.DataFrame, horizon_hours: float) -> dict[str, Any]:
    """Per pool (zeros for offline pools): committed VMs, burst VMs per hour, the peak fleet and the costs."""
    on = hv.base >= 0
    base = np.where(on, np.round(values[np.maximum(hv.base, 0)]), 0).astype(int)
    burst = np.where(on[:, None], np.round(values[np.maximum(hv.burst, 0)]), 0).astype(int)
    days = horizon_hours / HOURS_PER_DAY
    price = pools["unit_usd_per_hour"].to_numpy(float)
    reserved = np.nan_to_num(hv.reserved_usd_per_hour)
    return {"base": base, "burst": burst, "peak": base + burst.max(axis=1),
            "commitment_usd": reserved * base * HOURS_PER_DAY * days, "burst_usd": price * burst.sum(axis=1) * days}


def hourly_shares(problem: Problem, values: np.ndarray) -> np.ndarray:
    """x[i, h] for every row and hour (0 where the hour's rate is 0)."""
    hv = problem.hourly
    assert hv is not None  # callers check
    return np.where(hv.x >= 0, np.clip(values[np.maximum(hv.x, 0)], 0.0, 1.0), 0.0)


def hourly_loaded(problem: Problem, values: np.ndarray) -> set[str]:
    """Pools carrying load in some hour."""
    used = (hourly_shares(problem, values) > SHARE_EPS).any(axis=1)
    return set(problem.rows.loc[used, "pool"])


def daily_shares(problem: Problem, values: np.ndarray) -> np.ndarray:
    """Each row's share: x_i, or with rate profiles the share of the demand's daily requests,
    sum_h f_{d,h} x_{i,h} / sum_h f_{d,h} (online rows)."""
    x = np.clip(values[problem.x], 0.0, 1.0)
    hv = problem.hourly
    if hv is None:
        return np.asarray(x, float)
    online = (problem.rows["mode"] == "online").to_numpy()
    daily = (hourly_shares(problem, values) * hv.factor).sum(axis=1) / hv.factor.sum(axis=1)
    return np.asarray(np.where(online, daily, x), float)


def _assignments(problem: Problem, values: np.ndarray, pools: pd.DataFrame) -> list[Assignment]:
    """Rows carrying load, each with its share of its pool's cost apportioned by load."""
    rows = problem.rows.assign(x=daily_shares(problem, values))
    used = rows[rows["x"] > SHARE_EPS].merge(pools[["pool", "count", "pool_usd_per_hour"]], on="pool")
    pool_load = used["demand_load"] * used["x"]
    total_load = pool_load.groupby(used["pool"]).transform("sum")
    return [Assignment(
        workload=r.workload, demand=r.demand, model=r.model, pool=r.pool, cloud=r.cloud,
        instance_type=r.instance_type, region=r.region, pricing=r.pricing, gpu=r.gpu, gpu_count=int(r.gpu_count),
        tensor_parallel=int(r.tensor_parallel), count=int(r.count), share=round(float(r.x), 9),
        batch_size=int(r.batch_size), offload_ratio=round(float(r.offload_ratio), 6),
        input_tokens=int(r.input_tokens), output_tokens=int(r.output_tokens), ttft_s=float(r.ttft_s),
        tpot_s=float(r.tpot_s), e2e_s=float(r.e2e_s), tokens_per_s=float(r.tokens_per_s),
        requests_per_s_per_vm=float(r.requests_per_s_per_vm),
        share_usd_per_hour=float(r.pool_usd_per_hour * (load / total if total > 0 else 0.0)))
        for r, load, total in zip(used.itertuples(), pool_load, total_load)]


def _hourly(problem: Problem, values: np.ndarray, pools: pd.DataFrame, resolved: Resolved) -> Hourly | None:
    """The plan's hourly section: base and burst VMs per used online pool, shares per hour, planned rates."""
    hv = problem.hourly
    if hv is None:
        return None
    sc = resolved.scenario
    online = pools[pools["mode"] == "online"]
    reserved = dict(zip(problem.pools["pool"], hv.reserved_usd_per_hour))
    hp = [HourlyPool(pool=p.pool, pricing=p.pricing, unit_usd_per_hour=float(p.unit_usd_per_hour),
                     reserved_usd_per_hour=None if math.isnan(reserved[p.pool]) else float(reserved[p.pool]),
                     base=int(p.base), burst=[int(b) for b in p.burst], commitment_usd=float(p.commitment_usd),
                     burst_usd=float(p.burst_usd)) for p in online.itertuples()]
    x = hourly_shares(problem, values)
    used = (x > SHARE_EPS).any(axis=1) & problem.rows["pool"].isin(set(online["pool"])).to_numpy()
    shares = [HourlyShare(demand=r.demand, pool=r.pool, shares=[round(float(v), 9) for v in x[i]],
                          requests_per_s_per_vm=float(r.requests_per_s_per_vm))
              for i, r in zip(np.flatnonzero(used), problem.rows[used].itertuples())]
    rates = {w.name: [(w.request_rate_per_s or 0.0) * (w.peak_factor or sc.peak_factor) * f for f in w.hourly_factors()]
             for w in sc.workloads if w.mode == "online"}
    return Hourly(days=sc.horizon_hours / HOURS_PER_DAY, rate_per_s=rates, pools=sorted(hp, key=lambda p: p.pool),
                  shares=sorted(shares, key=lambda s: (s.demand, s.pool)),
                  commitment_usd=round(sum(p.commitment_usd for p in hp), 6), burst_usd=round(sum(p.burst_usd for p in hp), 6))


def _pool_models(pools: pd.DataFrame) -> list[Pool]:
    return [Pool(pool=p.pool, mode=p.mode, cloud=p.cloud, instance_type=p.instance_type, region=p.region,
                 pricing=p.pricing, gpu=p.gpu, gpu_count=int(p.gpu_count), tensor_parallel=int(p.tensor_parallel),
                 batch_size=int(p.batch_size), offload_ratio=round(float(p.offload_ratio), 6), count=int(p.count),
                 vm_hours=None if math.isnan(p.vm_hours) else round(float(p.vm_hours), 9),
                 unit_usd_per_hour=float(p.unit_usd_per_hour), pool_usd_per_hour=float(p.pool_usd_per_hour),
                 usd=float(p.usd)) for p in pools.itertuples()]


def _idle_note(pools: pd.DataFrame, billing: str) -> str:
    """Names the offline pools billed per second beyond their work and minimum charges: VMs held idle, which only
    a spot share rewards (``milp.idle_hours_count``)."""
    if billing != "per_second":
        return ""
    floor = pools["work_hours"] + MINIMUM_BILLED_HOURS[billing] * pools["count"]
    idle = pools[(pools["mode"] == "offline") & (pools["vm_hours"] > floor * (1 + 1e-6) + 1e-9)]
    held = [f"{p.pool} billed {p.vm_hours:.3g} VM-hours for {p.work_hours:.3g} of work" for p in idle.itertuples()]
    return ("offline VMs held idle up to the deadline: their on-demand GPU-hours count in the spot share (" +
            "; ".join(held) + ")") if held else ""


def extract_plan(problem: Problem, result: SolveResult, resolved: Resolved, cands: Candidates,
                 timings: bool = True) -> Plan:
    """The ``Plan`` a solution stands for (integers read with ``round``).

    Raises:
        SolverFailure: ``result`` carries no solution.
    """
    if result.values is None:
        raise SolverFailure(f"{result.backend} returned no solution ({result.status.value})")
    sc = resolved.scenario
    pools = _used_pools(problem, result.values, sc.horizon_hours, sc.billing)
    pool_models = _pool_models(pools)
    online = pools["mode"] == "online"
    m = problem.model
    return Plan(
        scenario=sc.name, status=result.status.value, objective=round(float(sum(p.usd for p in pool_models)), 6),
        bound=None if result.bound is None else round(result.bound, 6),
        gap=None if result.gap is None else round(result.gap, 9), horizon_hours=sc.horizon_hours,
        online_usd_per_hour=round(float(pools.loc[online, "pool_usd_per_hour"].sum()), 6),
        offline_usd=round(float(pools.loc[~online, "usd"].sum()), 6),
        assignments=sorted(_assignments(problem, result.values, pools), key=lambda a: (a.workload, a.demand, a.pool)),
        pools=sorted(pool_models, key=lambda p: p.pool),
        solver=SolverStats(backend=result.backend, variables=len(m.names), integer_variables=m.n_integer,
                           constraints=len(m.rows), wall_s=round(result.wall_s, 3) if timings else None,
                           note="; ".join(x for x in (result.note, _idle_note(pools, sc.billing)) if x)),
        pruning=cands.stats, calibration=resolved.calibration.source,
        hourly=_hourly(problem, result.values, pools, resolved),
    )
