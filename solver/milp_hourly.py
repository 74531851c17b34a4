"""The hourly extension of the fleet MILP: reserved (committed) VMs held all day plus burst VMs per hour.

Built only when some workload gives a ``rate_profile`` (``Scenario.hourly``); otherwise ``milp.build_problem``
is unchanged. Hours h = 0..23 of a day that repeats over the horizon H; f_{d,h} = lambda_{d,h} / lambda_d the
demand's rate in hour h over its peak rate (1 for a workload without a profile); load_i = lambda_d / mu_i the
VMs row i needs at the demand's peak (``demand_load``). Online pools p only (offline pools keep their rows):

    min   (H / 24) * sum_p ( 24 r_p b_p + c_p sum_h u_{p,h} )                           (USD)
    s.t.  (hourly demand)    sum_{i in d} x_{i,h} = 1                       for all d, h with f_{d,h} > 0
          (hourly capacity)  sum_{i in p} f_{d(i),h} load_i x_{i,h} <= b_p + u_{p,h}             for all p, h
          (peak)             b_p + u_{p,h} <= n_p                                                for all p, h
          (min run)          u_{p,h} - u_{p,h-1} <= s_{p,h},  sum_{k<m} s_{p,h-k} <= u_{p,h}      with min_run_hours m
          b_p in Z>=0 (0 where no commitment price), u_{p,h}, s_{p,h} in Z>=0, x_{i,h} in [0, 1];

b_p the committed (reserved) VMs paid r_p every hour, u_{p,h} the on-demand or spot VMs of hour h paid c_p.
x_{i,h*(d)} is the demand's ``x_i`` itself at its peak hour h*(d) (the first hour of highest rate), so the plan's
assignments show each demand's peak-hour routing. n_p, costless here, is the peak fleet max_h (b_p + u_{p,h}):
the quota, instance-type, hourly-budget and link rows of ``milp.py`` bound it as before. (min run) is the
aggregated minimum-up-time rule: s_{p,h} counts the burst VMs started in hour h, and every VM started in the last
m hours still runs; hours wrap around (h - 1 of hour 0 is hour 23: the day repeats).
"""
from __future__ import annotations

import math

import numpy as np

from .field_checks import HOURS_PER_DAY
from .linear_model import HourlyVars, Problem
from .profiles import reserved_prices
from .schema import Scenario


def hourly_factors(rows_workload: list[str], scenario: Scenario) -> np.ndarray:
    """f[i, h]: row i's demand rate in hour h over its peak rate."""
    by_name = {w.name: w.hourly_factors() for w in scenario.workloads}
    return np.array([by_name[w] for w in rows_workload], float).reshape(len(rows_workload), HOURS_PER_DAY)


def add_hourly_variables(p: Problem, scenario: Scenario) -> HourlyVars:
    """x_{i,h} (x_i at the demand's peak hour), b_p priced 24 r_p H/24 and u_{p,h} priced c_p H/24."""
    online = (p.pools["mode"] == "online").to_numpy()
    factor = hourly_factors(list(p.rows["workload"]), scenario)
    peak_hour = np.argmax(factor, axis=1)
    x = np.full(factor.shape, -1)
    keys = list(p.rows["pool"] + "@" + p.rows["demand"])
    for h in range(HOURS_PER_DAY):
        other = np.flatnonzero((factor[:, h] > 0) & (peak_hour != h) & online_rows(p))
        x[other, h] = p.model.add_vars(f"x{h:02d}", [keys[i] for i in other], 0.0, 1.0, False)
        own = np.flatnonzero(peak_hour == h)
        x[own, h] = p.x[own]
    days = scenario.horizon_hours / HOURS_PER_DAY
    price = p.pools["unit_usd_per_hour"].to_numpy(float)
    reserved = reserved_prices(p.pools, scenario)
    names = list(p.pools["pool"])
    base = np.full(len(names), -1)
    burst = np.full((len(names), HOURS_PER_DAY), -1)
    on = np.flatnonzero(online)
    has_price = ~np.isnan(reserved[on])
    bound = p.pools["max_vms"].to_numpy(float)[on]
    base[on] = p.model.add_vars("base", [names[k] for k in on], 0.0, np.where(has_price, bound, 0.0), True,
                                np.where(has_price, np.nan_to_num(reserved[on]) * HOURS_PER_DAY * days, 0.0))
    for h in range(HOURS_PER_DAY):
        burst[on, h] = p.model.add_vars(f"burst{h:02d}", [names[k] for k in on], 0.0, bound, True, price[on] * days)
    return HourlyVars(x, base, burst, factor, reserved)


def online_rows(p: Problem) -> np.ndarray:
    return np.asarray((p.rows["mode"] == "online").to_numpy(), bool)


def add_hourly_demand_constraints(p: Problem, hv: HourlyVars) -> None:
    """(hourly demand) sum_{i in d} x_{i,h} = 1 for every online demand d and hour h with f_{d,h} > 0 (the
    demand's peak hour is ``milp.add_demand_constraints``' row on x_i)."""
    on = online_rows(p)
    for demand, idx in p.rows.groupby("demand", sort=True).indices.items():
        if not on[idx[0]]:
            continue
        for h in range(HOURS_PER_DAY):
            vars_h = hv.x[idx, h]
            if (vars_h >= 0).all() and not np.isin(vars_h, p.x).all():
                p.model.add_row(f"hourly_demand[{demand}@h{h:02d}]", vars_h, np.ones(len(idx)), 1.0, 1.0)


def add_hourly_capacity_constraints(p: Problem, hv: HourlyVars) -> None:
    """(hourly capacity) sum_{i in p} f_{d(i),h} load_i x_{i,h} <= b_p + u_{p,h} for online pools p, hours h."""
    load = p.rows["demand_load"].to_numpy(float)
    for k, idx in enumerate(p.rows.groupby("pool", sort=True).indices.values()):
        if hv.base[k] < 0:
            continue
        name = p.pools["pool"].iat[k]
        for h in range(HOURS_PER_DAY):
            used = idx[hv.x[idx, h] >= 0]
            index = np.concatenate([hv.x[used, h], [hv.base[k], hv.burst[k, h]]])
            coef = np.concatenate([hv.factor[used, h] * load[used], [-1.0, -1.0]])
            p.model.add_row(f"hourly_capacity[{name}@h{h:02d}]", index, coef, -math.inf, 0.0)


def add_peak_constraints(p: Problem, hv: HourlyVars) -> None:
    """(peak) b_p + u_{p,h} <= n_p: n_p bounds every hour's fleet (quota, type and budget rows act on n_p)."""
    for k in np.flatnonzero(hv.base >= 0):
        name = p.pools["pool"].iat[k]
        for h in range(HOURS_PER_DAY):
            p.model.add_row(f"peak[{name}@h{h:02d}]", np.array([hv.base[k], hv.burst[k, h], p.n[k]]),
                            np.array([1.0, 1.0, -1.0]), -math.inf, 0.0)


def add_min_run_constraints(p: Problem, hv: HourlyVars, hours: int | None) -> None:
    """(min run) u_{p,h} - u_{p,h-1} <= s_{p,h} and sum_{k<m} s_{p,h-k} <= u_{p,h}: a started burst VM runs
    at least m hours (hours mod 24; s_{p,h} >= 0 integer, costless)."""
    if hours is None or hours <= 1:
        return
    for k in np.flatnonzero(hv.base >= 0):
        name = p.pools["pool"].iat[k]
        s = p.model.add_vars("starts", [f"{name}@h{h:02d}" for h in range(HOURS_PER_DAY)], 0.0,
                             p.pools["max_vms"].iat[k], True)
        u = hv.burst[k]
        for h in range(HOURS_PER_DAY):
            p.model.add_row(f"start[{name}@h{h:02d}]", np.array([u[h], u[h - 1], s[h]]), np.array([1.0, -1.0, -1.0]),
                            -math.inf, 0.0)
            window = [s[(h - j) % HOURS_PER_DAY] for j in range(hours)]
            p.model.add_row(f"min_run[{name}@h{h:02d}]", np.array([*window, u[h]]),
                            np.array([1.0] * hours + [-1.0]), -math.inf, 0.0)


def add_hourly(p: Problem, scenario: Scenario) -> HourlyVars:
    """Every hourly family (see the module doc); called by ``milp.build_problem`` when ``scenario.hourly``."""
    hv = add_hourly_variables(p, scenario)
    add_hourly_demand_constraints(p, hv)
    add_hourly_capacity_constraints(p, hv)
    add_peak_constraints(p, hv)
    add_min_run_constraints(p, hv, scenario.min_run_hours)
    return hv
