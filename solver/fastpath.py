"""Exact solves, without a MILP back end, of the two block shapes that make up large per-workload fleets.

A fleet with replicas per workload (``share_replicas: false``) and no quota, budget or replica row splits into
one block per workload; at 10,000 workloads a solver call per block (~3 ms of set-up each for HiGHS) is most of
the solve. Blocks of one demand whose pools serve nothing else have a structure that gives the optimum and its
proof directly (``milp.py`` names the row families):

* **cover** (online): rows ``demand`` sum_p x_p = 1, ``capacity`` L_p x_p <= n_p and ``link`` x_p <= n_p; the
  cost is sum_p c_p n_p (c_p >= 0, n_p integer in [0, U_p]). Every feasible point has x_p <= a_p n_p with
  a_p = 1 / max(L_p, 1), so sum_p a_p n_p >= 1: the block's optimum is at least that of the integer covering
  problem min c.n s.t. a.n >= 1, 0 <= n <= U, which ``min_cost_cover`` solves exactly (depth-first branch and
  bound, pools by cost per coverage, the bound being the LP relaxation of what is left). Shares x_p in
  proportion to min(1, a_p n_p) then meet every row, so both optima are equal.
* **offline** (per-second billing): rows ``demand`` sum_p x_p = 1 and ``capacity`` L_p x_p <= t_p; the cost is
  sum_p c_p t_p with t_p continuous. Every feasible point costs at least sum_p c_p L_p x_p >= min_p c_p L_p;
  the best pool alone (x = 1, t = L, the fewest VMs its rows allow) attains that bound unless some row (the
  one-minute minimum bill) forbids it.

Rows of other families only restrict the block: a candidate that the bound proves optimal stays optimal if it
meets them. So whatever the block holds, the candidate is checked against every row, bound and integrality
(``satisfies``); where the shape does not match, the search grows too large or the check fails, ``solve_fast``
returns None and the caller solves the block with the MILP back end.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .linear_model import LinearModel

COVER_TOL = 1e-10  # coverage a.n may fall this short of 1 (shares then break a capacity row by ~1e-10 of it)
CHECK_TOL = 1e-9  # a row or bound may be off by this, relative to the magnitude of its terms
MAX_NODES = 200_000  # a covering search that visits more nodes gives up (the back end takes the block)
MAX_POOLS = 400  # ... as does one over more pools (the search recurses once per pool)


def _single_demand(model: LinearModel) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(shares x, their partners, loads L) when the block has one demand row sum x = 1 over continuous shares in
    [0, >= 1] at no cost, and each share has its own capacity row L x - partner <= 0 with L > 0; the cost lies
    on the partners alone, none negative. Else None."""
    demand = [r for r in model.rows if r[0].startswith("demand[")]
    if len(demand) != 1:
        return None
    _name, x, coef, lo, hi = demand[0]
    integer = np.asarray(model.integer, bool)
    lower, upper = np.asarray(model.lower, float), np.asarray(model.upper, float)
    cost = np.asarray(model.cost, float)
    if lo != 1.0 or hi != 1.0 or not len(x) or np.any(coef != 1.0) or len(set(x.tolist())) != len(x) \
            or integer[x].any() or np.any(lower[x] != 0.0) or np.any(upper[x] < 1.0) or np.any(cost[x] != 0.0):
        return None
    position = {int(v): k for k, v in enumerate(x)}
    partner, load = np.full(len(x), -1), np.zeros(len(x))
    for name, idx, c, row_lo, row_hi in model.rows:
        if not name.startswith("capacity["):
            continue
        if len(idx) != 2 or int(idx[0]) not in position or c[0] <= 0 or c[1] != -1.0 \
                or not math.isinf(row_lo) or row_hi != 0.0:
            return None
        k = position[int(idx[0])]
        if partner[k] >= 0:
            return None
        partner[k], load[k] = int(idx[1]), float(c[0])
    if np.any(partner < 0) or len(set(partner.tolist())) != len(partner) or set(partner.tolist()) & set(position):
        return None
    priced = np.zeros(len(cost), bool)
    priced[partner] = True
    if np.any(cost[~priced] != 0.0) or np.any(cost[partner] < 0.0) or np.any(lower[partner] != 0.0):
        return None
    return np.asarray(x, int), partner, load


def min_cost_cover(cost: np.ndarray, cover: np.ndarray, upper: np.ndarray, *, tol: float = COVER_TOL,
                   max_nodes: int = MAX_NODES) -> np.ndarray | None:
    """Integers 0 <= n <= upper minimising cost.n subject to cover.n >= 1 - tol (cost >= 0, cover > 0), or None
    when none exists or the search visits more than ``max_nodes`` nodes. Of equally cheap covers (within 1e-12
    relative) the first one found is kept: pools in order of cost per coverage, then index, most VMs first."""
    cost, cover = np.asarray(cost, float), np.asarray(cover, float)
    top = np.floor(np.minimum(np.asarray(upper, float), 1e15) + 1e-9)
    if not 0 < len(cost) <= MAX_POOLS or np.any(cover <= 0) or np.any(cost < 0) or float(cover @ top) < 1.0 - tol:
        return None
    order = sorted(range(len(cost)), key=lambda i: (cost[i] / cover[i], i))
    c, a, u = ([float(arr[i]) for i in order] for arr in (cost, cover, top))
    ratio = [ci / ai for ci, ai in zip(c, a)]
    best: list[Any] = [math.inf, None]  # cost to beat (less 1e-12 relative), the counts that cost it
    counts = [0] * len(order)
    nodes = 0

    def beats(total: float) -> bool:
        return best[1] is None or total < best[0] - 1e-12 * max(1.0, best[0])

    def search(pos: int, left: float, spent: float) -> bool:  # False: node budget spent
        nonlocal nodes
        nodes += 1
        if nodes > max_nodes:
            return False
        if left <= tol:
            if beats(spent):
                best[0], best[1] = spent, list(counts)
            return True
        if pos == len(order) or not beats(spent + left * ratio[pos]):
            return True
        most = int(min(u[pos], math.ceil((left - tol) / a[pos])))
        for k in range(most, -1, -1):
            counts[pos] = k
            if not search(pos + 1, left - k * a[pos], spent + k * c[pos]):
                return False
        counts[pos] = 0
        return True

    if not search(0, 1.0, 0.0) or best[1] is None:
        return None
    out = np.zeros(len(cost))
    out[order] = best[1]
    return out


def _cover_values(model: LinearModel, x: np.ndarray, partner: np.ndarray, load: np.ndarray) -> np.ndarray | None:
    """The cover block's optimum: VM counts from ``min_cost_cover``, shares in proportion to coverage."""
    linked = np.zeros(len(x), bool)
    position = {int(v): k for k, v in enumerate(x)}
    for name, idx, c, lo, hi in model.rows:
        if name.startswith("link[") and len(idx) == 2 and int(idx[0]) in position \
                and int(idx[1]) == partner[position[int(idx[0])]] and c[0] == 1.0 and c[1] == -1.0:
            linked[position[int(idx[0])]] = True
    if not linked.all():  # the capacity row's partner is not the pool's VM count (hourly offline billed hours)
        return None
    cover = 1.0 / np.maximum(load, 1.0)
    cost, upper = np.asarray(model.cost, float)[partner], np.asarray(model.upper, float)[partner]
    counts = min_cost_cover(cost, cover, upper)
    if counts is None:
        return None
    covered = np.minimum(cover * counts, 1.0)
    values = np.zeros(len(model.names))
    values[partner] = counts
    values[x] = covered / covered.sum()
    return values


def _offline_values(model: LinearModel, x: np.ndarray, partner: np.ndarray, load: np.ndarray) -> np.ndarray | None:
    """The offline block's bound min_p c_p L_p, attained by the best pool alone (first of equals): x = 1, t = L,
    and each other variable of its rows (the VM count) at the least integer its rows allow."""
    cost = np.asarray(model.cost, float)[partner]
    q = int(np.argmin(cost * load))
    values = np.zeros(len(model.names))
    values[x[q]], values[partner[q]] = 1.0, load[q]
    fixed = {int(x[q]), int(partner[q])}
    touching = [r for r in model.rows if fixed & set(r[1].tolist())]
    free = {int(v) for r in touching for v in r[1].tolist() if model.integer[int(v)]} - fixed
    if len(free) != 1:  # the pool's VM count (the other shares of the demand row stay 0)
        return None
    v = next(iter(free))
    low, high = float(model.lower[v]), float(model.upper[v])
    for _name, idx, c, lo, hi in touching:
        at = np.flatnonzero(idx == v)
        if not len(at):
            continue
        a = float(c[at].sum())
        rest = float(np.dot(c, values[idx])) - a * values[v]
        if a == 0.0:
            continue
        ends = ((lo - rest) / a, (hi - rest) / a)
        low, high = max(low, min(ends)), min(high, max(ends))
    count = math.ceil(low - 1e-9)
    if count > high + 1e-9:
        return None
    values[v] = count
    return values


def satisfies(model: LinearModel, values: np.ndarray, tol: float = CHECK_TOL) -> bool:
    """Every bound, integrality and row of ``model`` holds at ``values`` (to ``tol`` of the terms' size)."""
    lower, upper = np.asarray(model.lower, float), np.asarray(model.upper, float)
    if np.any(values < lower - tol * (1 + np.abs(lower))) or np.any(values > upper + tol * (1 + np.abs(upper))):
        return False
    integer = np.asarray(model.integer, bool)
    if np.any(np.abs(values[integer] - np.round(values[integer])) > tol):
        return False
    rows = [r for r in model.rows if len(r[1])]
    if not rows:
        return True
    sizes = np.array([len(r[1]) for r in rows])
    terms = np.concatenate([r[2] for r in rows]) * values[np.concatenate([r[1] for r in rows])]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    level, size = np.add.reduceat(terms, starts), 1.0 + np.add.reduceat(np.abs(terms), starts)
    lo, hi = np.array([r[3] for r in rows], float), np.array([r[4] for r in rows], float)
    return bool(np.all(level >= lo - tol * size) and np.all(level <= hi + tol * size))


def solve_fast(model: LinearModel) -> tuple[np.ndarray, float, float] | None:
    """(values, objective, seconds) of the block's proven optimum when it is a cover or offline block whose
    candidate meets every row (see the module doc); None otherwise."""
    start = time.perf_counter()
    found = _single_demand(model)
    if found is None:
        return None
    x, partner, load = found
    integer = np.asarray(model.integer, bool)[partner]
    if integer.all():
        values = _cover_values(model, x, partner, load)
    elif not integer.any():
        values = _offline_values(model, x, partner, load)
    else:
        return None
    if values is None or not satisfies(model, values):
        return None
    return values, float(np.dot(np.asarray(model.cost, float), values)), time.perf_counter() - start
