"""The fleet MILP, written once against a small back-end-neutral model.

Sets: demands d (workload x size bucket), candidate rows i (a demand on a pool configuration), pools p (identical
VMs running one model with one tensor-parallel degree, batch size and KV offload ratio on one offering).

    min   H * sum_{p online} c_p n_p  +  sum_{p offline} c_p t_p                      (USD)
    s.t.  (demand)    sum_{i in d} x_i = 1                                             for all d
          (capacity)  sum_{i in p} (lambda_d / mu_i) x_i <= n_p                         online p
          (link)      x_i <= n_p(i)                                                    (valid; tightens the LP)
                      sum_{i in p} (N_d / (3600 mu_i)) x_i <= min(t_p, D_p n_p)          offline p
          (billing)   t_p <= W_p n_p   (W_p = D_p, or ceil(D_p) with hourly billing, t_p then integer)
                      (per second: t_p <= work + 1 min per VM, and no VM beyond ceil(work / D_p), unless a
                      spot share is set: then an on-demand VM may be held, idle, up to its deadline)
          (quota)     sum_{p in q} n_p (or gpus_p n_p) <= Q_q                           for all quotas q
                      sum_{p in q} floor(gpus_p / k) n_p <= floor(Q_q / k)   (valid rounding, VM sizes k > 1)
          (budget)    sum_{p online} c_p n_p <= B_hour;  objective <= B_usd
          (types)     n_p <= U_p z_k(p),  sum_k z_k <= K                                 z binary per type
          (spot)      sum_{p spot} g_p h_p <= s sum_p g_p h_p         g_p GPUs per VM, h_p = H n_p online, t_p offline
          (slices)    S x_i = k_i, k_i in {0..S} integer (optional: Melange's slice rule)
          x in [0, 1], n in Z>=0, t >= 0 (integer with hourly billing), H = horizon hours.

lambda_d is the demand's request rate, mu_i the requests/s one VM of the pool sustains for that demand's sizes,
N_d the offline request count, D_p the deadline in hours. Batch size and offload ratio are chosen by which
pools carry load (a documented discretisation: batch from a candidate set, offload in steps of 10 %).

Memory and SLO limits are not rows of this model: the candidate table (``candidates.py``, rules in
``table.py``) only holds rows that fit GPU and host memory and meet their demand's SLO, and the MILP does not
repeat those checks. ``build_problem`` checks the table's declared columns (``table.check_table``).

With rate profiles (some workload's ``rate_profile``), online capacity is per hour of a day instead, paid as
committed base VMs plus hourly burst VMs; ``milp_hourly.py`` holds those families and n_p becomes the peak fleet.

Every row is named ``family[key]`` and every variable ``kind[pool]`` or ``x[pool@demand]``, so a dumped LP
(``infersave plan --dump-lp``) reads back to the candidate and pool ids.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .linear_model import LinearModel, Problem
from .milp_hourly import add_hourly
from .schema import Scenario
from .table import check_table, demand_load, quota_matches

MINIMUM_BILLED_HOURS = {"per_second": 1 / 60, "hourly": 1.0}  # a started VM is billed at least this (h)
USED_SHARE = 1e-4  # a pool with VMs carries at least this share of some demand (see add_used_constraints)


def pool_table(rows: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """One row per pool, with its deadline and the VM bound U_p (``max_vms``) of ``vm_bounds``."""
    load = rows["demand_load"]
    pools = rows.assign(load=load).groupby("pool", sort=True).agg(
        offer=("offer", "first"), mode=("mode", "first"), unit_usd_per_hour=("unit_usd_per_hour", "first"),
        gpu_count=("gpu_count", "first"), instance_type=("instance_type", "first"), cloud=("cloud", "first"),
        region=("region", "first"), gpu=("gpu", "first"), pricing=("pricing", "first"),
        tensor_parallel=("tensor_parallel", "first"), batch_size=("batch_size", "first"),
        offload_ratio=("offload_ratio", "first"),
        deadline_hours=("deadline_hours", "first"), load=("load", "sum")).reset_index()
    pools["max_vms"] = vm_bounds(pools, rows, scenario)
    return pools


def vm_bounds(pools: pd.DataFrame, rows: pd.DataFrame, scenario: Scenario) -> np.ndarray:
    """U_p, a bound on n_p that no optimal plan reaches beyond: the VMs the pool needs to carry every demand
    that may use it (online ceil(L_p); offline ceil(W_p/D_p) + 1 per second, ceil(W_p) + ceil(W_p/D_p) hourly),
    plus the largest ``min_replicas`` of a workload that may use it, plus, under ``max_spot_share`` s > 0, on
    on-demand pools the VMs that balance every spot GPU-hour the other pools could hold (G_spot (1 - s) / s /
    (g_p h_p), h_p the hours one VM of p can bill: H online, its billing cap offline): beyond that, dropping a VM
    of p keeps every constraint and never costs more."""
    online = (pools["mode"] == "online").to_numpy()
    load = pools["load"].to_numpy(float)
    deadline = np.maximum(pools["deadline_hours"].to_numpy(float), 1e-9)
    per_deadline = np.ceil(np.where(online, 0.0, load / deadline) - 1e-9)
    extra = per_deadline + 1 if scenario.billing == "per_second" else per_deadline + np.ceil(load - 1e-9)
    base = np.where(online, np.ceil(load - 1e-9), extra).clip(min=1)
    floors = {w.name: float(w.min_replicas or 0) for w in scenario.workloads}
    floor = rows.assign(f=rows["workload"].map(floors).fillna(0.0)).groupby("pool", sort=True)["f"].max()
    base = base + floor.reindex(pools["pool"]).to_numpy(float)
    s = scenario.max_spot_share
    if s is not None and 0 < s < 1:
        gpus = pools["gpu_count"].to_numpy(float)
        spot = (pools["pricing"] == "spot").to_numpy()
        per_vm = np.where(online, scenario.horizon_hours, billed_hours_per_vm(pools, scenario))
        spot_gpu_hours = float((gpus * base * per_vm)[spot].sum())
        base = base + np.where(spot, 0.0, np.ceil(spot_gpu_hours * (1 - s) / s / (gpus * per_vm) - 1e-9))
    return np.asarray(base, float)


def billed_hours_per_vm(pools: pd.DataFrame, scenario: Scenario) -> np.ndarray:
    """The most hours one offline VM of each pool is billed: ceil(D) hourly; per second D plus the one-minute
    minimum, or max(D, 1 min) where idle hours count (``_offline_rows``' billing rows; ``build_problem`` bounds
    t_p by it)."""
    deadline = pools["deadline_hours"].to_numpy(float)
    if scenario.billing == "hourly":
        return np.asarray(np.ceil(deadline - 1e-9), float)
    minimum = MINIMUM_BILLED_HOURS["per_second"]
    if idle_hours_count(scenario):
        return np.asarray(np.maximum(deadline, minimum), float)
    return np.asarray(deadline + minimum, float)


def idle_hours_count(scenario: Scenario) -> bool:
    """Whether an offline VM billed per second may be held idle up to its deadline: only a spot share rewards
    billed hours (its denominator counts on-demand GPU-hours). A VM held idle then does what a slower setting or
    GPU did: it bills more on-demand GPU-hours for the same work, so the faster setting plus idle hours is never
    worse and pruning offline rows for speed stays exact (``prune.py``). Hourly billing allows it anyway (a VM's
    started hours may exceed its work)."""
    return scenario.max_spot_share is not None


def add_demand_constraints(p: Problem) -> None:
    """(demand) sum_{i in d} x_i = 1: every demand is served in full."""
    for demand, idx in p.rows.groupby("demand", sort=True).indices.items():
        p.model.add_row(f"demand[{demand}]", p.x[idx], np.ones(len(idx)), 1.0, 1.0)


def add_capacity_constraints(p: Problem, scenario: Scenario) -> None:
    """(capacity) L_p = sum_{i in p} load_i x_i <= n_p online; offline the work W_p = sum load_i x_i (VM-hours)
    <= billed hours t_p, plus the offline billing rows of ``_offline_rows``. With rate profiles the online rows are
    ``milp_hourly``'s per hour instead."""
    load = p.rows["demand_load"].to_numpy()
    hourly = scenario.hourly  # a property over every workload: once, not per pool
    names, modes = p.pools["pool"].to_numpy(), p.pools["mode"].to_numpy()
    deadlines = p.pools["deadline_hours"].to_numpy(float)
    # the hours a VM may be billed when it may be held idle (``idle_hours_count``), else none: (fewest) and (most)
    held = billed_hours_per_vm(p.pools, scenario) if idle_hours_count(scenario) else None
    for k, idx in enumerate(p.rows.groupby("pool", sort=True).indices.values()):
        online = modes[k] == "online"
        if hourly and online:
            continue
        right = p.n[k] if online else p.t[k]
        p.model.add_row(f"capacity[{names[k]}]", np.append(p.x[idx], right), np.append(load[idx], -1.0),
                        -math.inf, 0.0)
        if not online:
            _offline_rows(p, k, p.x[idx], load[idx], float(deadlines[k]), scenario.billing,
                          None if held is None else float(held[k]))


def _offline_rows(p: Problem, k: int, x: np.ndarray, load: np.ndarray, deadline: float, billing: str,
                  held_hours: float | None = None) -> None:
    """Offline pool k: n VMs, each runs at most D hours and is billed max(run, m) (per second, m = 1 min) or
    its started hours (hourly, m = 1 h). Exact for divisible work W split over the VMs:
      per second  (deadline) W <= D n;  (fewest) D (n - 1) <= W: no VM beyond ceil(W/D) (one more only when
                  W/D is whole);  (minimum) m n <= t;  (most) t <= W + m n; or, given ``held_hours`` h =
                  max(D, m) (``idle_hours_count``, ``billed_hours_per_vm``), each VM may be held until the
                  deadline: (held) t <= h n in place of (fewest) and (most)
      hourly      with f = floor(D), c = ceil(D), phi = D - f: VM i billed b_i in {1..c} works min(b_i, D), and
                  the most work t = sum b_i buys on n VMs is min(t, phi t + (1 - phi) f n) (fill VMs to f hours,
                  top up to c only beyond n f), so (deadline) W <= phi t + (1 - phi) f n; (billing) t <= c n;
                  (minimum) n <= t; t integer."""
    name = p.pools["pool"].iat[k]
    n, t = p.n[k], p.t[k]
    if billing == "per_second":
        p.model.add_row(f"deadline[{name}]", np.append(x, n), np.append(load, -deadline), -math.inf, 0.0)
        if held_hours is None:
            p.model.add_row(f"fewest[{name}]", np.append(x, n), np.append(-load, deadline), -math.inf, deadline)
        p.model.add_row(f"minimum[{name}]", np.array([n, t]), np.array([MINIMUM_BILLED_HOURS[billing], -1.0]),
                        -math.inf, 0.0)
        if held_hours is not None:
            p.model.add_row(f"held[{name}]", np.array([t, n]), np.array([1.0, -held_hours]), -math.inf, 0.0)
            return
        # (most) t <= W + m n: each VM is billed its run or the minimum, so no more than both; without it billed
        # hours were free of VMs and work, and a spot share could be met with on-demand hours nobody ran
        p.model.add_row(f"most[{name}]", np.concatenate([x, [n, t]]),
                        np.concatenate([-load, [-MINIMUM_BILLED_HOURS[billing], 1.0]]), -math.inf, 0.0)
        return
    f, c = math.floor(deadline + 1e-9), math.ceil(deadline - 1e-9)
    phi = max(deadline - f, 0.0)
    p.model.add_row(f"deadline[{name}]", np.concatenate([x, [t, n]]), np.concatenate([load, [-phi, -(1 - phi) * f]]),
                    -math.inf, 0.0)
    p.model.add_row(f"billing[{name}]", np.array([t, n]), np.array([1.0, -float(c)]), -math.inf, 0.0)
    p.model.add_row(f"minimum[{name}]", np.array([n, t]), np.array([1.0, -1.0]), -math.inf, 0.0)


def add_linking_constraints(p: Problem) -> None:
    """(link) x_i <= n_p(i): a demand uses a pool only if the pool has a VM (valid since x <= 1 <= n_p when used;
    it tightens the LP relaxation where a demand needs less than one VM, as in facility location)."""
    pool_index = p.rows.groupby("pool", sort=True).ngroup().to_numpy()
    coef = np.array([1.0, -1.0])
    for i, (k, pool, demand) in enumerate(zip(pool_index, p.rows["pool"].tolist(), p.rows["demand"].tolist())):
        p.model.add_row(f"link[{pool}@{demand}]", np.array([p.x[i], p.n[k]]), coef, -math.inf, 0.0)


def needs_used_rows(scenario: Scenario) -> bool:
    """Idle VMs can only pay off where they count towards a limit: the spot share's denominator or a
    workload's replica floor/region spread. Elsewhere every VM costs money, so an optimum has none."""
    return scenario.max_spot_share is not None or any(
        w.min_replicas is not None or w.spread for w in scenario.workloads)


def add_used_constraints(p: Problem, scenario: Scenario) -> None:
    """(used) n_p <= U_p y_p and sum_{i in p} x_i / eps >= y_p, y_p binary: a pool has VMs only if it carries
    load (in all at least eps = 1e-4 of a demand; its VMs share the load evenly, so each of them works). The row
    is scaled by 1/eps so that the solver's absolute feasibility tolerance cannot swallow it."""
    if not needs_used_rows(scenario):
        return
    y = p.model.add_vars("used", list(p.pools["pool"]), 0.0, 1.0, True)
    for k, idx in enumerate(p.rows.groupby("pool", sort=True).indices.values()):
        name = p.pools["pool"].iat[k]
        p.model.add_row(f"used[{name}]", np.array([p.n[k], y[k]]), np.array([1.0, -p.pools["max_vms"].iat[k]]),
                        -math.inf, 0.0)
        p.model.add_row(f"works[{name}]", np.append(p.x[idx], y[k]),
                        np.append(np.full(len(idx), 1.0 / USED_SHARE), -1.0), 0.0, math.inf)


def add_quota_constraints(p: Problem, scenario: Scenario) -> None:
    """(quota) sum_{p matching q} n_p <= max_instances_q, or sum gpus_p n_p <= max_gpus_q."""
    for k, quota in enumerate(scenario.quotas):
        mask = quota_matches(quota, p.pools)
        if quota.max_instances is not None:
            coef, limit = np.ones(mask.sum()), float(quota.max_instances)
        else:
            coef, limit = p.pools["gpu_count"].to_numpy(float)[mask], float(quota.max_gpus or 0)
        if mask.any():
            p.model.add_row(f"quota[{k}]", p.n[mask], coef, -math.inf, limit)
            if quota.max_instances is None:
                add_gpu_quota_rounding(p, f"{k}", p.n[mask], coef, limit)


def add_gpu_quota_rounding(p: Problem, key: str, n: np.ndarray, gpus: np.ndarray, limit: float) -> None:
    """(quota rounding) sum_p floor(g_p / k) n_p <= floor(Q / k) for each VM size k > 1 with Q / k fractional:
    k-GPU VMs cannot fill a quota of GPUs that is no multiple of k (Chvatal-Gomory rounding of the quota row
    divided by k; valid for integer n, so the MILP's optimum is unchanged). The LP relaxation fills the quota with
    half a VM otherwise: coupled 300 LP bound 16,264 -> 16,292 USD (1,100 A100 GPUs on 8-GPU VMs: 137, not 137.5)."""
    for k in sorted(set(gpus.tolist()) - {0.0, 1.0}):
        if abs(limit / k - round(limit / k)) < 1e-9:
            continue
        coef = np.floor(gpus / k + 1e-9)
        on = coef > 0
        p.model.add_row(f"quota_rounding[{key}/{k:g}]", n[on], coef[on], -math.inf, math.floor(limit / k + 1e-9))


def add_budget_constraints(p: Problem, scenario: Scenario) -> None:
    """(budget) sum_{online p} c_p n_p <= B_usd_per_hour; total objective <= B_usd."""
    online = (p.pools["mode"] == "online").to_numpy()
    price = p.pools["unit_usd_per_hour"].to_numpy(float)
    if scenario.budget_usd_per_hour is not None and online.any():
        p.model.add_row("budget[usd_per_hour]", p.n[online], price[online], -math.inf, scenario.budget_usd_per_hour)
    if scenario.budget_usd is not None:
        idx = np.flatnonzero(np.asarray(p.model.cost) != 0)
        p.model.add_row("budget[usd]", idx, np.asarray(p.model.cost)[idx], -math.inf, scenario.budget_usd)


def add_type_limit_constraints(p: Problem, scenario: Scenario) -> None:
    """(types) n_p <= U_p z_k(p) and sum_k z_k <= K, z_k binary per instance type k."""
    if scenario.max_instance_types is None:
        return
    types = sorted(p.pools["instance_type"].unique())
    z = p.model.add_vars("use", types, 0.0, 1.0, True)
    p.z = dict(zip(types, z.tolist()))
    for k, pool in p.pools.iterrows():
        p.model.add_row(f"uses[{pool['pool']}]", np.array([p.n[k], p.z[pool['instance_type']]]),
                        np.array([1.0, -pool["max_vms"]]), -math.inf, 0.0)
    p.model.add_row("types", z, np.ones(len(z)), -math.inf, float(scenario.max_instance_types))


def _serving_pools(p: Problem, workload: str) -> np.ndarray:
    """Positions of the pools that can serve ``workload`` (hold a candidate row of one of its demands)."""
    pools = p.rows.loc[p.rows["workload"] == workload, "pool"].unique()
    return np.flatnonzero(p.pools["pool"].isin(pools).to_numpy())


def add_replica_constraints(p: Problem, scenario: Scenario) -> None:
    """(replicas) m_w <= sum_{p in S_w} n_p <= M_w, S_w the pools that can serve online workload w (a pool of its
    sharing group whose configuration meets its SLO on an offering it may use);
    (spread) sum_{p in S_w, region r} n_p >= 1 for each region r in w's ``spread``. With (used), these VMs work."""
    for w in scenario.workloads:
        if w.min_replicas is None and w.max_replicas is None and not w.spread:
            continue
        serving = _serving_pools(p, w.name)
        lo = float(w.min_replicas) if w.min_replicas is not None else -math.inf
        hi = float(w.max_replicas) if w.max_replicas is not None else math.inf
        if w.min_replicas is not None or w.max_replicas is not None:
            p.model.add_row(f"replicas[{w.name}]", p.n[serving], np.ones(len(serving)), lo, hi)
        for region in w.spread or []:
            here = serving[(p.pools["region"].to_numpy()[serving] == region)]
            # no pool there: the row reads 0 >= 1 (on a real variable, so every back end takes it)
            index, coef = (p.n[here], np.ones(len(here))) if len(here) else (p.n[serving[:1]], np.zeros(1))
            p.model.add_row(f"spread[{w.name}@{region}]", index, coef, 1.0, math.inf)


def add_slice_constraints(p: Problem, slices: int) -> None:
    """(slices) S x_i = k_i, k_i in {0, ..., S} integer: each demand is cut into S equal slices and each slice is
    served whole by one pool (Melange's slice rule; S = 1 makes every assignment all-or-nothing)."""
    keys = list(p.rows["pool"] + "@" + p.rows["demand"])
    k = p.model.add_vars("slices", keys, 0.0, float(slices) * np.asarray(p.model.upper)[p.x], True)
    for key, xi, ki in zip(keys, p.x, k):
        p.model.add_row(f"slice[{key}]", np.array([xi, ki]), np.array([float(slices), -1.0]), 0.0, 0.0)


def add_spot_share_constraints(p: Problem, scenario: Scenario) -> None:
    """(spot) sum_{p spot} g_p h_p <= s * sum_p g_p h_p, h_p = H n_p online and the billed t_p offline: at most a
    share s of the fleet's GPU-hours on spot VMs. (Counting an offline pool's VMs instead let a batch job split
    into one-minute on-demand pools, each a whole VM against the online fleet's spot GPUs.)"""
    if scenario.max_spot_share is None:
        return
    gpus = p.pools["gpu_count"].to_numpy(float)
    spot = (p.pools["pricing"] == "spot").to_numpy(float)
    online = (p.pools["mode"] == "online").to_numpy()
    hours = np.where(online, scenario.horizon_hours, 1.0)
    columns = np.where(online, p.n, p.t)
    p.model.add_row("spot_share", columns, gpus * hours * (spot - scenario.max_spot_share), -math.inf, 0.0)


def build_problem(rows: pd.DataFrame, scenario: Scenario, slices: int | None = None) -> Problem:
    """The MILP for a candidate table (every row already fits memory and meets its SLO; see the module doc).
    ``slices``: if given, shares are multiples of 1/slices (``add_slice_constraints``).

    Raises:
        TypeError: ``rows`` lacks a declared candidate column (``table.CANDIDATE_COLUMNS``).
    """
    check_table(rows)
    rows = rows.sort_values(["pool", "demand"], kind="stable").reset_index(drop=True)
    rows = rows.assign(demand_load=demand_load(rows))
    pools = pool_table(rows, scenario)
    model = LinearModel()
    online = (pools["mode"] == "online").to_numpy()
    price = pools["unit_usd_per_hour"].to_numpy(float)
    x = model.add_vars("x", list(rows["pool"] + "@" + rows["demand"]), 0.0, 1.0, False)
    # with rate profiles, online VMs are paid through milp_hourly's base and burst variables; n_p is the peak fleet
    n = model.add_vars("n", list(pools["pool"]), 0.0, pools["max_vms"].to_numpy(), True,
                       np.where(online & (not scenario.hourly), price * scenario.horizon_hours, 0.0))
    t = np.full(len(pools), -1)
    offline = np.flatnonzero(~online)
    if len(offline):
        # billed hours: at most ceil(D) per VM (hourly), or D plus the one-minute minimum per VM (per second)
        per_vm = billed_hours_per_vm(pools, scenario)
        t_vars = model.add_vars("t", list(pools["pool"].iloc[offline]), 0.0,
                                (pools["max_vms"].to_numpy(float) * per_vm)[offline],
                                scenario.billing == "hourly", price[offline])
        t[offline] = t_vars
    problem = Problem(model, rows, pools, x, n, t)
    add_demand_constraints(problem)
    add_capacity_constraints(problem, scenario)
    add_linking_constraints(problem)
    if scenario.hourly:
        problem.hourly = add_hourly(problem, scenario)
    add_used_constraints(problem, scenario)
    if slices is not None:
        add_slice_constraints(problem, slices)
    add_quota_constraints(problem, scenario)
    add_replica_constraints(problem, scenario)
    add_type_limit_constraints(problem, scenario)
    add_spot_share_constraints(problem, scenario)
    add_budget_constraints(problem, scenario)
    return problem
