"""The MIP start from the LP relaxation (``warmstart.py``) is feasible for the full model, rows' lower sides
included."""
from __future__ import annotations

import math

import numpy as np

from solver.linear_model import LinearModel
from solver.warmstart import _rounded_up, mip_start

EPS = 1e-4  # milp.USED_SHARE: a pool with VMs carries at least this share of some demand
BIG = 1e4
LP = np.array([1e-7, 3.0, 1e-3])  # a relaxation: share 1e-7, three VMs, used 1e-3 (x / EPS = 1e-3 >= y, n <= BIG y)


def used_pool_model() -> LinearModel:
    """One pool: share x of a demand, VMs n <= U y with a large U (the VMs that balance a spot share, milp.vm_bounds),
    and (works) x / EPS >= y, y binary; each VM costs 1.
    (spot) -n <= -3: at least three VMs, as a spot share asks on-demand GPU-hours of an idle pool."""
    m = LinearModel()
    x = m.add_vars("x", ["p@d"], 0.0, 1.0, False)
    n = m.add_vars("n", ["p"], 0.0, BIG, True, 1.0)
    y = m.add_vars("used", ["p"], 0.0, 1.0, True)
    m.add_row("used[p]", np.array([n[0], y[0]]), np.array([1.0, -BIG]), -math.inf, 0.0)
    m.add_row("works[p]", np.array([x[0], y[0]]), np.array([1.0 / EPS, -1.0]), 0.0, math.inf)
    m.add_row("spot_share", np.array([n[0]]), np.array([-1.0]), -math.inf, -3.0)
    return m


def test_rounding_up_a_used_binary_breaks_its_share_of_work():
    # the relaxation pads with VMs on a pool whose used binary is fractional and whose share is ~0: rounded up, y = 1
    # would ask a share of 1e-4 the LP did not give; that start would list VMs the plan then drops (found by a fuzzed
    # fleet under a spot share whose plan failed verification: every GPU-hour on spot)
    model = used_pool_model()
    assert _rounded_up(model, LP) is None
    assert _rounded_up(model, np.array([2e-4, 3.0, 0.3])) is not None  # a share that holds: the start stands


def test_mip_start_then_solves_a_restricted_mip_that_is_feasible():
    model = used_pool_model()
    calls = []

    def solve_mip(m: LinearModel, limit: float | None, gap: float, start: np.ndarray | None):
        calls.append(m)
        return np.array([EPS, 3.0, 1.0]), True

    start = mip_start(model, None, 1e-6, lambda m, limit: LP, solve_mip)
    assert calls and start.how.startswith("restricted MIP")
    values = start.values
    for _name, idx, coef, lo, hi in model.rows:
        assert lo - 1e-9 <= float(np.dot(coef, values[idx])) <= hi + 1e-9
