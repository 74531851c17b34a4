"""Closed-form block solves (solver/fastpath.py) against HiGHS on random cover and offline blocks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import examples
from solver.backends import Status, _solve_highspy, solve
from solver.fastpath import min_cost_cover, satisfies, solve_fast
from solver.linear_model import LinearModel

# prices of a few instance types, each twice (the same type in two regions: ties the search must settle)
PRICES = [0.75, 0.75, 1.2, 2.4, 2.4, 8.0, 12.3, 30.0]


def cover_block(loads: list[float], prices: list[float], link: bool = True, horizon: float = 24.0) -> LinearModel:
    """One online demand on pools of its own, as milp.py writes it: demand, capacity, link rows; U = ceil(L)."""
    m = LinearModel()
    keys = [str(k) for k in range(len(loads))]
    x = m.add_vars("x", keys, 0.0, 1.0, False)
    n = m.add_vars("n", keys, 0.0, np.ceil(np.array(loads) - 1e-9).clip(min=1), True, np.array(prices) * horizon)
    m.add_row("demand[d]", x, np.ones(len(x)), 1.0, 1.0)
    for k, load in enumerate(loads):
        m.add_row(f"capacity[{k}]", np.array([x[k], n[k]]), np.array([load, -1.0]), -math.inf, 0.0)
    if link:
        for k in range(len(loads)):
            m.add_row(f"link[{k}]", np.array([x[k], n[k]]), np.array([1.0, -1.0]), -math.inf, 0.0)
    return m


def offline_block(loads: list[float], prices: list[float], deadline: float) -> LinearModel:
    """One offline demand with per-second billing, as milp.py's ``_offline_rows`` writes it."""
    m = LinearModel()
    keys = [str(k) for k in range(len(loads))]
    per = np.ceil(np.array(loads) / deadline - 1e-9) + 1
    x = m.add_vars("x", keys, 0.0, 1.0, False)
    n = m.add_vars("n", keys, 0.0, per, True)
    t = m.add_vars("t", keys, 0.0, per * (deadline + 1 / 60), False, np.array(prices))
    m.add_row("demand[d]", x, np.ones(len(x)), 1.0, 1.0)
    for k, load in enumerate(loads):
        m.add_row(f"capacity[{k}]", np.array([x[k], t[k]]), np.array([load, -1.0]), -math.inf, 0.0)
        m.add_row(f"deadline[{k}]", np.array([x[k], n[k]]), np.array([load, -deadline]), -math.inf, 0.0)
        m.add_row(f"fewest[{k}]", np.array([x[k], n[k]]), np.array([-load, deadline]), -math.inf, deadline)
        m.add_row(f"minimum[{k}]", np.array([n[k], t[k]]), np.array([1 / 60, -1.0]), -math.inf, 0.0)
        m.add_row(f"link[{k}]", np.array([x[k], n[k]]), np.array([1.0, -1.0]), -math.inf, 0.0)
    return m


HIGHS_REL = 1e-5  # HiGHS meets rows to its feasibility tolerance (1e-7 scaled), so its optimum may lie ~1e-6 below
# ... and its MIP feasibility tolerance (1e-6) is absolute: on a 0.075 USD block it reported 0.074999 (t 1e-6 short)
HIGHS_ABS = 1e-5


def highs_optimum(model: LinearModel) -> float:
    result = _solve_highspy(model, None, 0.0, None)
    assert result.status is Status.OPTIMAL and result.objective is not None
    return result.objective


loads = st.floats(0.02, 12.0, allow_nan=False)


@settings(max_examples=examples(150))
@given(st.lists(st.tuples(loads, st.sampled_from(PRICES)), min_size=1, max_size=7))
def test_cover_block_matches_highs(pools):
    model = cover_block([p[0] for p in pools], [p[1] for p in pools])
    fast = solve_fast(model)
    assert fast is not None
    values, objective, _ = fast
    assert satisfies(model, values)
    assert objective == pytest.approx(highs_optimum(model), rel=HIGHS_REL, abs=HIGHS_ABS)


@settings(max_examples=examples(100))
@given(st.lists(st.tuples(st.floats(0.001, 40.0), st.sampled_from(PRICES)), min_size=1, max_size=6),
       st.sampled_from([0.5, 4.0, 8.0, 12.0]))
@example([(1.0, 1.2), (0.0625, 1.2)], 4.0)  # HiGHS 1e-6 USD below the closed form (its MIP tolerance)
def test_offline_block_matches_highs_or_declines(pools, deadline):
    """Where the best pool's one-minute minimum bill binds the bound is not attained: the block goes to the
    back end (None); otherwise the closed form is HiGHS's optimum."""
    model = offline_block([p[0] for p in pools], [p[1] for p in pools], deadline)
    fast = solve_fast(model)
    best = min(load * price for load, price in pools)
    if fast is None:
        return
    assert fast[1] == pytest.approx(best, rel=1e-12)
    assert fast[1] == pytest.approx(highs_optimum(model), rel=HIGHS_REL, abs=HIGHS_ABS)


def test_cover_search_by_hand():
    # min 3a + 5b s.t. 2a + 4b >= 7 (tests/test_backends.py's first knapsack): b = 2 costs 10
    assert min_cost_cover(np.array([3.0, 5.0]), np.array([2 / 7, 4 / 7]), np.array([10, 10])).tolist() == [0, 2]
    # equally cheap covers: the first pool of the cheaper ratio, then the lower index
    assert min_cost_cover(np.array([2.0, 2.0]), np.array([0.5, 0.5]), np.array([5, 5])).tolist() == [2, 0]
    assert min_cost_cover(np.array([1.0]), np.array([0.25]), np.array([3])) is None  # 3 VMs cover 3/4


def test_blocks_of_other_shapes_go_to_the_back_end():
    shared = cover_block([0.5, 2.5], [1.0, 1.0])
    shared.rows.append(("capacity[extra]", np.array([0, 3]), np.array([1.0, -1.0]), -math.inf, 0.0))
    assert solve_fast(shared) is None  # a share on two capacity rows: not a cover block
    assert solve_fast(cover_block([0.5, 2.5], [1.0, 1.0], link=False)) is None  # x not tied to its VMs
    quota = cover_block([0.5, 2.5], [1.0, 1.2])
    quota.rows.append(("quota[0]", np.array([2]), np.array([1.0]), -math.inf, 0.0))  # the cheap pool banned
    assert solve_fast(quota) is None
    result = solve(quota, "highs")
    assert result.objective == pytest.approx(highs_optimum(quota)) and "closed form" not in result.note
    loose = cover_block([0.5, 2.5], [1.0, 1.2])
    loose.rows.append(("quota[0]", np.array([2, 3]), np.array([1.0, 1.0]), -math.inf, 5.0))  # met: still optimal
    assert solve_fast(loose) is not None and solve_fast(loose)[1] == pytest.approx(highs_optimum(loose))


def test_solve_reports_closed_form_blocks_and_matches_the_back_end():
    model = LinearModel()
    parts = [cover_block([0.3, 1.7, 4.2], [0.75, 1.2, 2.4]), offline_block([3.0, 9.0], [2.4, 0.75], 4.0)]
    for part in parts:  # two independent blocks in one model
        base = len(model.names)
        model.names += [f"{v}#{base}" for v in part.names]
        model.lower += part.lower
        model.upper += part.upper
        model.integer += part.integer
        model.cost += part.cost
        model.rows += [(name, idx + base, c, lo, hi) for name, idx, c, lo, hi in part.rows]
    fast, slow = solve(model, "highs"), solve(model, "highs", fast=False)
    assert fast.status is Status.OPTIMAL and fast.bound == pytest.approx(fast.objective)
    assert fast.objective == pytest.approx(slow.objective, rel=HIGHS_REL)
    assert "2 of 2 blocks solved in closed form" in fast.note and "closed form" not in slow.note
