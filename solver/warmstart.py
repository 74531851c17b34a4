"""A MIP start for large blocks, built from the LP relaxation by restricted MIPs (RENS-like, then a wider
neighbourhood around its solution). Every start is feasible for the full model (only variable bounds were
tightened), so it changes no optimum: it only gives the back end an incumbent early.

Why two neighbourhoods: on a coupled fleet (quotas and a budget in one block) the full model spends most of its
time at the root (cut rounds over ~85,000 rows) and finds no better incumbent there, so the plan's gap is the
start's. The first restricted MIP keeps only the pools the LP uses, each at most one VM above its LP count; its
best plans differ from better ones mainly in how load is spread over the batch sizes and parallel degrees of one
model on one offering, which it cannot change. The second keeps every pool of those (model, offering) pairs at
its full bound and starts from the first plan (coupled 300: 16,496 -> 16,464 USD in ~5 s). A start from them
turns off HiGHS's own sub-MIP heuristics on the full model (``backends._solve_highspy``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .linear_model import LinearModel

RESTRICTED_S = 9.0  # at most this long for the restricted MIP over the pools the LP uses
WIDER_S = 6.0  # ... and this long for the wider one over those pools' (model, offering) pairs
LP_SHARE = 4  # the relaxation and each restricted MIP get at most 1/LP_SHARE of the block's limit

# (model, time limit in s or None, mip gap, MIP start or None) -> solution values, or None without a solution;
# the LP callable returns values only for an optimal relaxation
SolveMip = Callable[[LinearModel, float | None, float, np.ndarray | None], np.ndarray | None]
SolveLp = Callable[[LinearModel, float | None], np.ndarray | None]


def is_link(row: tuple[Any, ...], integer: list[bool]) -> bool:
    """x <= n with x continuous and n integer: a valid inequality that only tightens the LP relaxation."""
    _name, idx, coef, lo, hi = row
    return (len(idx) == 2 and math.isinf(lo) and hi == 0 and coef[0] == 1.0 and coef[1] == -1.0
            and not integer[idx[0]] and integer[idx[1]])


def pool_group(name: str) -> str:
    """(model, offering) of a VM-count variable ``n[model|offering|tp..|b..|r..]`` (``milp.py``'s pool ids);
    a name of another shape is its own group."""
    parts = name.split("|")
    return "|".join(parts[:2]) if len(parts) > 2 else name


def _restricted(model: LinearModel, upper: np.ndarray) -> LinearModel:
    """The model with integer upper bounds ``upper``; shares on a pool fixed at 0 VMs are fixed at 0 too (HiGHS
    presolve then drops those pools and shares, so the restricted MIP is small)."""
    bounded = upper.copy()
    for row in model.rows:
        if is_link(row, model.integer) and bounded[row[1][1]] == 0:
            bounded[row[1][0]] = 0.0
    return LinearModel(model.names, model.lower, bounded.tolist(), model.integer, model.cost, model.rows)


def _share(time_limit_s: float | None, cap: float) -> float:
    return min(time_limit_s / LP_SHARE, cap) if time_limit_s else cap


def mip_start(model: LinearModel, time_limit_s: float | None, mip_gap: float, solve_lp: SolveLp,
              solve_mip: SolveMip) -> tuple[np.ndarray | None, str]:
    """(values, how) of a start from the LP relaxation, with the link rows x <= n: without them it solves ~5x
    faster, but its support misses pools the plan needs (coupled 300: 16,506-16,533 USD after both restricted
    MIPs instead of 16,464). Rounding every integer up keeps capacity, link and billing rows with the LP's shares;
    when it breaks no row (a quota, a budget, a type count) that is the start. Otherwise a restricted MIP: integers at 0 in the relaxation fixed at 0, the others bounded by their
    LP value rounded up plus one; then, from its solution, a wider one over every pool of the (model, offering)
    pairs either uses (``pool_group``). (None, "") when no start was found."""
    ints = np.flatnonzero(model.integer)
    rows = [r for r in model.rows if not is_link(r, model.integer)]  # rounding up cannot break a link row
    upper = np.asarray(model.upper, float)
    relaxed = LinearModel(model.names, model.lower, model.upper, [False] * len(model.names), model.cost, model.rows)
    lp_values = solve_lp(relaxed, None if not time_limit_s else time_limit_s / LP_SHARE)
    if lp_values is None:
        return None, ""
    value = lp_values.copy()
    value[ints] = np.minimum(np.ceil(value[ints] - 1e-6), upper[ints])
    integer = np.asarray(model.integer)
    broken = [name for name, idx, coef, _lo, hi in rows if not math.isinf(hi) and len(idx) and integer[idx].any()
              and float(np.dot(coef, value[idx])) - hi > 1e-7 * max(1.0, abs(hi))]
    if not broken:
        return value, "rounded LP relaxation"
    gap = max(mip_gap, 1e-3)
    lp = lp_values[ints]
    bounded = upper.copy()
    bounded[ints] = np.where(lp <= 1e-6, 0.0, np.minimum(upper[ints], np.ceil(lp - 1e-6) + 1))
    first = solve_mip(_restricted(model, bounded), _share(time_limit_s, RESTRICTED_S), gap, None)
    if first is None:
        return None, ""
    how = f"restricted MIP over the {int((bounded[ints] > 0).sum())} integers the LP uses"
    used = {pool_group(model.names[j]) for j, on in zip(ints, (lp > 1e-6) | (first[ints] > 0.5)) if on}
    keep = np.array([pool_group(model.names[j]) in used for j in ints])
    wider = upper.copy()
    wider[ints] = np.where(keep, upper[ints], 0.0)
    second = solve_mip(_restricted(model, wider), _share(time_limit_s, WIDER_S), gap, first)
    cost = np.asarray(model.cost, float)
    if second is not None and float(cost @ second) < float(cost @ first):
        return second, f"{how}, then over all {int(keep.sum())} pools of their (model, offering) pairs"
    return first, how
