"""Fix-and-optimise by model: improve a feasible plan one model's pools at a time, every other variable fixed at
the plan's value.

Why: on a coupled fleet (GPU quotas and a budget across all models in one block) the restricted MIPs of
``warmstart.py`` stop at plans ~1 % above the optimum, and the full model spends its time on cut rounds. Once the
other models are fixed, one model's sub-MIP is small (its own pools and shares, the quota rows with what the
others leave), HiGHS solves it to a tight gap in seconds, and the quota a model frees is picked up by the next.
On coupled 300: 16,572 -> 16,448 USD in two passes (the full model's root bound is ~16,306).

Each sub-MIP keeps every row with the fixed variables moved to its bounds, so its solutions are feasible for the
full model: the result only replaces the MIP start, never the model, and changes no optimum.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .linear_model import LinearModel, Row

SUB_GAP = 1e-4  # relative gap of each model's sub-MIP (on its own cost, a fraction of the plan's)
SUB_CAP_S = 3.0  # at most this long per sub-MIP: a hard model must not eat the passes of the others
# (coupled 300 in 60 s: 3 s caps reached 16,445-16,453 USD, 5 s caps 16,459-16,484, 2 s caps 16,459)

# (model, time limit in s, mip gap, MIP start) -> (values or None, proven within the gap)
SolveSub = Callable[[LinearModel, float, float, np.ndarray], tuple[np.ndarray | None, bool]]


@dataclass(frozen=True)
class Matrix:
    """The model's rows as one compressed sparse row matrix (a fixed contribution per row in one pass)."""

    starts: np.ndarray  # row k holds nonzeros starts[k]:starts[k + 1]
    index: np.ndarray
    coef: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    names: list[str]


def as_matrix(model: LinearModel) -> Matrix:
    sizes = np.array([len(r[1]) for r in model.rows], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    empty = np.zeros(0)
    index = np.concatenate([r[1] for r in model.rows] or [empty]).astype(np.int64)
    coef = np.concatenate([r[2] for r in model.rows] or [empty]).astype(float)
    return Matrix(starts, index, coef, np.array([r[3] for r in model.rows], float),
                  np.array([r[4] for r in model.rows], float), [r[0] for r in model.rows])


def model_groups(names: list[str]) -> np.ndarray:
    """Per variable, the model its pool serves: ``kind[model|offering|...]`` -> ``model`` (``milp.py``'s pool
    ids, shares ``x[pool@demand]`` alike); "" for a variable of no pool (e.g. an instance type's ``use[...]``),
    which stays fixed in every sub-MIP."""
    out = []
    for name in names:
        inner = name[name.find("[") + 1:]
        out.append(inner.split("|", 1)[0] if "|" in inner else "")
    return np.array(out, dtype=object)


def restrict(model: LinearModel, matrix: Matrix, free: np.ndarray, values: np.ndarray) -> LinearModel:
    """The sub-MIP over the variables ``free`` (a boolean mask), every other variable fixed at ``values``: rows
    that hold a free variable keep their free part, their bounds shifted by the fixed part; the others go (the
    plan ``values`` satisfies them)."""
    fixed_part = np.where(free[matrix.index], 0.0, matrix.coef * values[matrix.index])
    row_of = np.repeat(np.arange(len(matrix.lower)), np.diff(matrix.starts))
    shift = np.bincount(row_of, weights=fixed_part, minlength=len(matrix.lower))
    has_free = np.bincount(row_of, weights=free[matrix.index].astype(float), minlength=len(matrix.lower)) > 0
    local = np.full(len(model.names), -1, dtype=np.int64)
    keep = np.flatnonzero(free)
    local[keep] = np.arange(len(keep))
    rows: list[Row] = []
    for k in np.flatnonzero(has_free):
        a, b = matrix.starts[k], matrix.starts[k + 1]
        on = free[matrix.index[a:b]]
        rows.append((matrix.names[k], local[matrix.index[a:b][on]], matrix.coef[a:b][on],
                     float(matrix.lower[k] - shift[k]), float(matrix.upper[k] - shift[k])))
    pick = keep.tolist()
    return LinearModel([model.names[j] for j in pick], [model.lower[j] for j in pick],
                       [model.upper[j] for j in pick], [model.integer[j] for j in pick],
                       [model.cost[j] for j in pick], rows)


def improve_by_model(model: LinearModel, start: np.ndarray, solve_sub: SolveSub, deadline: float,
                     priority: np.ndarray | None = None, good_enough: float = -math.inf) -> tuple[np.ndarray, int]:
    """(values, sub-MIPs that improved the plan): passes over the models (most ``priority`` first, e.g. the
    cost above the LP relaxation) until ``deadline`` (``time.perf_counter()``), until the plan costs at most
    ``good_enough`` or until no model can improve: a model whose sub-MIP was proven within ``SUB_GAP`` is
    skipped until another model changes the plan."""
    groups = model_groups(model.names)
    names = sorted(g for g in set(groups.tolist()) if g)
    if len(names) < 2:
        return start, 0
    if priority is not None:
        names.sort(key=lambda g: -float(priority[groups == g].sum()))
    matrix = as_matrix(model)
    cost = np.asarray(model.cost, float)
    values, improved = start.copy(), 0
    settled: set[str] = set()  # proven optimal against the current plan
    while len(settled) < len(names):
        for name in names:
            left = deadline - time.perf_counter()
            if left <= 0.5 or float(cost @ values) <= good_enough:
                return values, improved
            if name in settled:
                continue
            free = groups == name
            sub, proven = solve_sub(restrict(model, matrix, free, values), min(SUB_CAP_S, left), SUB_GAP,
                                    values[free])
            if sub is not None and float(cost[free] @ sub) < float(cost[free] @ values[free]) - 1e-6:
                values = values.copy()
                values[free] = sub
                improved += 1
                settled = set()  # what this model frees or takes changes every other model's sub-MIP
            if proven:
                settled.add(name)
    return values, improved
