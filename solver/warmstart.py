"""A MIP start for large blocks, built from the LP relaxation by a restricted MIP (RENS-like), then improved by
fix-and-optimise by model (``neighbourhood.py``) where the block holds several models' pools, else by a wider
restricted MIP around its solution. Every start is feasible for the full model (only variable bounds were
tightened or variables fixed), so it changes no optimum: it only gives the back end an incumbent early.

Why: on a coupled fleet (quotas and a budget in one block) the full model spends most of its time at the root
(cut rounds over ~85,000 rows) and finds no better incumbent there, so the plan's gap is the start's. The first
restricted MIP keeps only the pools the LP uses, each at most one VM above its LP count (coupled 300: ~16,500-
16,600 USD); one model's pools at a time, the others fixed, then reach 16,445-16,453 USD in ~20 s against an LP
bound of 16,292 (with the quota rounding rows of ``milp.py``). Without several models, the wider restricted MIP
keeps every pool of the (model, offering) pairs the first uses, at its full bound. A start from them turns off
HiGHS's own sub-MIP heuristics on the full model (``backends._solve_highspy``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .linear_model import LinearModel
from .neighbourhood import improve_by_model, model_groups

RESTRICTED_S = 4.0  # at most this long for the restricted MIP over the pools the LP uses (a rough start:
# fix-and-optimise by model improves it; on coupled 300 the 5 s more of a 9 s cap went better to it)
WIDER_S = 6.0  # ... and this long for the wider one over those pools' (model, offering) pairs
LP_SHARE = 4  # the relaxation and each restricted MIP get at most 1/LP_SHARE of the block's limit
FO_RESERVE_SHARE = 0.03  # fix-and-optimise by model stops with this share of the block's limit left
NO_LIMIT_FO_S = 60.0  # without a limit, fix-and-optimise passes stop after this long at most

# (model, time limit in s or None, mip gap, MIP start or None) -> (solution values or None without a solution,
# proven within the gap); the LP callable returns values only for an optimal relaxation
SolveMip = Callable[[LinearModel, float | None, float, np.ndarray | None], tuple[np.ndarray | None, bool]]
SolveLp = Callable[[LinearModel, float | None], np.ndarray | None]


@dataclass(frozen=True)
class Start:
    """A MIP start (None: none found), how it was found, and the LP relaxation's optimum: a proven lower bound
    on the block (None without an optimal relaxation)."""

    values: np.ndarray | None
    how: str
    bound: float | None


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
              solve_mip: SolveMip) -> Start:
    """A start from the LP relaxation, with the link rows x <= n: without them it solves ~5x
    faster, but its support misses pools the plan needs (coupled 300: 16,506-16,533 USD after both restricted
    MIPs instead of 16,464). Rounding every integer up keeps capacity, link and billing rows with the LP's shares;
    when it breaks no row (a quota, a budget, a type count) that is the start. Otherwise a restricted MIP:
    integers at 0 in the relaxation fixed at 0, the others bounded by their LP value rounded up plus one; then,
    where the block holds several models' pools, fix-and-optimise by model (``neighbourhood.py``) from its
    solution, else a wider restricted MIP over every pool of the (model, offering) pairs either uses
    (``pool_group``); fix-and-optimise stops early once the plan is within ``mip_gap`` of the LP bound."""
    began = time.perf_counter()
    ints = np.flatnonzero(model.integer)
    relaxed = LinearModel(model.names, model.lower, model.upper, [False] * len(model.names), model.cost, model.rows)
    lp_values = solve_lp(relaxed, None if not time_limit_s else time_limit_s / LP_SHARE)
    if lp_values is None:
        return Start(None, "", None)
    bound = float(np.dot(model.cost, lp_values))
    rounded = _rounded_up(model, lp_values)
    if rounded is not None:
        return Start(rounded, "rounded LP relaxation", bound)
    gap = max(mip_gap, 1e-3)
    upper = np.asarray(model.upper, float)
    lp = lp_values[ints]
    bounded = upper.copy()
    bounded[ints] = np.where(lp <= 1e-6, 0.0, np.minimum(upper[ints], np.ceil(lp - 1e-6) + 1))
    first, _ = solve_mip(_restricted(model, bounded), _share(time_limit_s, RESTRICTED_S), gap, None)
    if first is None:
        return Start(None, "", bound)
    how = f"restricted MIP over the {int((bounded[ints] > 0).sum())} integers the LP uses"
    if len(set(model_groups(model.names).tolist()) - {""}) >= 2:
        good_enough = bound / (1 - mip_gap) if bound > 0 and mip_gap < 1 else -math.inf
        values, how = _by_model(model, first, lp_values, how, solve_mip, _fo_deadline(began, time_limit_s),
                                good_enough)
    else:
        values, how = _wider(model, first, lp_values, how, gap, time_limit_s, solve_mip)
    return Start(_integral(model, values), how, bound)


def _integral(model: LinearModel, values: np.ndarray) -> np.ndarray:
    """Integer variables within 1e-6 of a whole number set to it (sub-MIP solutions carry solver noise)."""
    out: np.ndarray = values.copy()
    ints = np.flatnonzero(model.integer)
    near = np.abs(out[ints] - np.round(out[ints])) < 1e-6
    out[ints[near]] = np.round(out[ints[near]])
    return out


def _rounded_up(model: LinearModel, lp_values: np.ndarray) -> np.ndarray | None:
    """The relaxation with every integer rounded up, where that breaks no row other than a link row (a quota,
    a budget, a type count, a pool's share of work once its ``used`` binary is 1): rounding up keeps capacity,
    link and billing rows with the LP's shares."""
    ints = np.flatnonzero(model.integer)
    value: np.ndarray = lp_values.copy()
    value[ints] = np.minimum(np.ceil(value[ints] - 1e-6), np.asarray(model.upper, float)[ints])
    integer = np.asarray(model.integer)
    for row in model.rows:
        _name, idx, coef, lo, hi = row
        if is_link(row, model.integer) or not len(idx) or not integer[idx].any():
            continue
        # both sides: a lower bound breaks too (a pool with a tiny LP share and VMs rounded to a whole used
        # binary no longer carries its 1e-4 of a demand; its VMs then drop out of the plan, and with them the
        # on-demand GPU-hours a spot share counted)
        lhs = float(np.dot(coef, value[idx]))
        if lhs - hi > 1e-7 * max(1.0, abs(hi)) or lo - lhs > 1e-7 * max(1.0, abs(lo)):
            return None
    return value


def _fo_deadline(began: float, time_limit_s: float | None) -> float:
    """When fix-and-optimise stops. Under a limit it may use nearly all of it: the full model's first round of
    root cuts is what would prove a better bound than the LP's, and on the coupled 300 fleet that round alone
    takes 20-35 s and overruns HiGHS's time limit (it checks the clock between rounds), so the backend runs the
    full model after fix-and-optimise only where ample time is left (``backends.FULL_MODEL_MIN_S``)."""
    if not time_limit_s:
        return began + NO_LIMIT_FO_S
    return began + time_limit_s * (1 - FO_RESERVE_SHARE)


def _by_model(model: LinearModel, first: np.ndarray, lp_values: np.ndarray, how: str, solve_mip: SolveMip,
              deadline: float, good_enough: float) -> tuple[np.ndarray, str]:
    """Fix-and-optimise by model from the restricted MIP's plan, the models furthest above the LP first."""
    cost = np.asarray(model.cost, float)
    values, improved = improve_by_model(model, first, solve_mip, deadline, cost * (first - lp_values), good_enough)
    if improved:
        how += f", then {improved} model sub-MIP(s) with the other models fixed"
    return values, how


def _wider(model: LinearModel, first: np.ndarray, lp_values: np.ndarray, how: str, gap: float,
           time_limit_s: float | None, solve_mip: SolveMip) -> tuple[np.ndarray, str]:
    """From the first plan, a restricted MIP over every pool of the (model, offering) pairs the LP or the plan
    uses, each at its full bound."""
    ints = np.flatnonzero(model.integer)
    upper = np.asarray(model.upper, float)
    used = {pool_group(model.names[j]) for j, on in zip(ints, (lp_values[ints] > 1e-6) | (first[ints] > 0.5)) if on}
    keep = np.array([pool_group(model.names[j]) in used for j in ints])
    wider = upper.copy()
    wider[ints] = np.where(keep, upper[ints], 0.0)
    second, _ = solve_mip(_restricted(model, wider), _share(time_limit_s, WIDER_S), gap, first)
    cost = np.asarray(model.cost, float)
    if second is not None and float(cost @ second) < float(cost @ first):
        return second, f"{how}, then over all {int(keep.sum())} pools of their (model, offering) pairs"
    return first, how


def within_gap(objective: float, bound: float | None, mip_gap: float) -> bool:
    """Whether a MIP start is already within ``mip_gap`` of the LP relaxation's bound (then the full model
    could only prove what the LP already proves)."""
    return bound is not None and objective > 0 and (objective - bound) / objective <= mip_gap
