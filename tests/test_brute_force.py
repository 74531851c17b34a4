"""An independent brute force for tiny fleets, compared with the pruned and the unpruned MILP optima.

The brute force does not use ``milp.py``: from the unpruned candidate table (which rows fit and meet their SLO
is the performance model's business, not the formulation's) it enumerates every VM count vector n up to a
per-pool bound, drops those that break a quota, the budget, the spot share, a replica floor or a region spread
(plain numpy on n), sorts the rest by cost and, cheapest first, asks ``scipy.optimize.linprog`` whether shares x
exist with every demand served in full (sum_i x_i = 1), no pool over its capacity (sum_i load_i x_i <= n_p) and
every pool with VMs carrying some load (sum_i x_i >= 1e-4). The first feasible vector is optimal.

Fleets come from ``test_prune_exact.fleets`` with offline jobs turned into online workloads (the offline billing
rules are not re-derived here) and at most two workloads; a fleet whose enumeration would exceed ``MAX_VECTORS``
count vectors is skipped. Every run (CI included) draws 300 fleets (4-6 minutes on one core, most of it the
performance model behind each fleet's candidate tables; the suite's longest test, so pytest-xdist runs it beside the
others); ``HYPOTHESIS_PROFILE=quick`` draws 10 while developing (in a probe of 25, 1 was skipped, 3 had no plan and
21 were compared).
"""
from __future__ import annotations

import itertools
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from scipy.optimize import linprog
from test_prune_exact import fleets, scenario, solve

from solver.errors import NoCandidatesError
from solver.plan import candidates_for
from solver.scenario import resolve

settings.register_profile("brute-ci", max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("brute-quick", max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
PROFILE = "brute-quick" if os.environ.get("HYPOTHESIS_PROFILE") == "quick" else "brute-ci"
MAX_VECTORS = 60_000
WORKS = 1e-4  # a pool with VMs carries at least this share of some demand


def online_only(f: dict) -> dict:
    workloads = []
    for w in f["workloads"][:2]:
        w = dict(w)
        if w.get("mode") == "offline":
            for key in ("mode", "num_requests", "deadline_hours"):
                w.pop(key)
            w["request_rate_per_s"] = 0.5
        workloads.append(w)
    return f | {"workloads": workloads}


def brute_force(sc) -> float | str | None:
    """The optimal cost, ``"InfeasibleError"``/``"NoCandidatesError"``, or None when the fleet is too big."""
    try:
        table = candidates_for(resolve(sc), prune=False).table
    except NoCandidatesError:
        return "NoCandidatesError"
    pools = sorted(table["pool"].unique())
    P = len(pools)
    pool_of = table["pool"].map({p: k for k, p in enumerate(pools)}).to_numpy()
    first = table.drop_duplicates("pool").set_index("pool").loc[pools]
    price = first["unit_usd_per_hour"].to_numpy(float) * sc.horizon_hours
    gpus = first["gpu_count"].to_numpy(float)
    spot = (first["pricing"] == "spot").to_numpy()
    load = table["rate_per_s"].to_numpy(float) / table["requests_per_s_per_vm"].to_numpy(float)
    demands = sorted(table["demand"].unique())
    demand_of = table["demand"].map({d: k for k, d in enumerate(demands)}).to_numpy()
    # per-pool bound: carry every demand it can alone, plus the largest replica floor, plus (spot share) the
    # on-demand VMs that balance every spot GPU the spot pools could hold
    carry = np.zeros(P)
    np.add.at(carry, pool_of, load)
    floor = max([w.min_replicas or 0 for w in sc.workloads] + [len(w.spread or []) for w in sc.workloads])
    ub = np.ceil(carry - 1e-9) + floor
    s = sc.max_spot_share
    if s is not None and 0 < s < 1:
        extra = np.ceil(float((gpus * ub)[spot].sum()) * (1 - s) / s / gpus - 1e-9)
        ub = ub + np.where(spot, 0, extra)
    if float(np.prod(ub + 1)) > MAX_VECTORS:
        return None
    N = np.array(list(itertools.product(*[range(int(u) + 1) for u in ub])), float).reshape(-1, P)
    cost = N @ price
    ok = np.ones(len(N), bool)
    for q in sc.quotas:
        mask = np.ones(P, bool)
        for key in ("instance_type", "region", "cloud", "gpu", "pricing"):
            if getattr(q, key) is not None:
                mask &= (first[key] == getattr(q, key)).to_numpy()
        used = N[:, mask] @ (np.ones(mask.sum()) if q.max_instances is not None else gpus[mask])
        ok &= used <= (q.max_instances if q.max_instances is not None else q.max_gpus) + 1e-9
    if sc.budget_usd is not None:
        ok &= cost <= sc.budget_usd + 1e-9
    if sc.budget_usd_per_hour is not None:
        ok &= N @ first["unit_usd_per_hour"].to_numpy(float) <= sc.budget_usd_per_hour + 1e-9
    if s is not None:
        ok &= N[:, spot] @ gpus[spot] <= s * (N @ gpus) + 1e-9
    region = first["region"].to_numpy()
    for w in sc.workloads:
        serving = np.isin(np.arange(P), np.unique(pool_of[(table["workload"] == w.name).to_numpy()]))
        total = N[:, serving].sum(axis=1)
        if w.min_replicas is not None:
            ok &= total >= w.min_replicas
        if w.max_replicas is not None:
            ok &= total <= w.max_replicas
        for r in w.spread or []:
            ok &= N[:, serving & (region == r)].sum(axis=1) >= 1
    # every demand needs a pool with VMs
    for d in range(len(demands)):
        ok &= (N[:, np.unique(pool_of[demand_of == d])] > 0).any(axis=1)
    order = np.flatnonzero(ok)[np.argsort(cost[ok], kind="stable")]
    R = len(table)
    a_eq = np.zeros((len(demands), R))
    a_eq[demand_of, np.arange(R)] = 1.0
    cap = np.zeros((P, R))
    cap[pool_of, np.arange(R)] = load
    works = np.zeros((P, R))
    works[pool_of, np.arange(R)] = -1.0
    for v in order:
        n = N[v]
        on = n[pool_of] > 0
        active = n > 0
        res = linprog(np.zeros(R), A_ub=np.vstack([cap, works[active]]),
                      b_ub=np.concatenate([n, np.full(int(active.sum()), -WORKS)]), A_eq=a_eq,
                      b_eq=np.ones(len(demands)), bounds=[(0, 1 if o else 0) for o in on], method="highs")
        if res.status == 0:
            return float(cost[v])
    return "InfeasibleError"


@settings(settings.get_profile(PROFILE))
@given(fleets().map(online_only))
def test_brute_force_equals_milp(f):
    with tempfile.TemporaryDirectory() as tmp:
        sc = scenario(f, Path(tmp))
        brute = brute_force(sc)
        if brute is None:
            return
        pruned, full = solve(sc, True), solve(sc, False)
        for got in (pruned, full):
            if isinstance(brute, str) or isinstance(got, str):
                assert got == brute
            else:
                assert got.objective == pytest.approx(brute, rel=1e-5, abs=1e-6)


def test_brute_force_is_not_vacuous():
    """The bound check skips only some fleets: a two-offering, one-workload fleet is enumerated."""
    f = dict(rows=[dict(InstanceType="t4.a", AcceleratorName="T4", AcceleratorCount=1, vCPUs=8, MemoryGiB=16,
                        Price=1.0, SpotPrice=0.4, Region="r1", source="t"),
                   dict(InstanceType="l4.a", AcceleratorName="L4", AcceleratorCount=1, vCPUs=8, MemoryGiB=32,
                        Price=1.5, SpotPrice="", Region="r1", source="t")],
             workloads=[dict(name="w0", model="llama-3.2-1b", batch_sizes=[16], dtype="fp16", input_tokens=512,
                             output_tokens=128, request_rate_per_s=2.0, min_replicas=2)],
             quotas=[], billing="per_second", spot=0.5, budget=None)
    with tempfile.TemporaryDirectory() as tmp:
        sc = scenario(f, Path(tmp))
        brute = brute_force(sc)
        assert isinstance(brute, float) and math.isfinite(brute)
        assert solve(sc, True).objective == pytest.approx(brute, rel=1e-5)
