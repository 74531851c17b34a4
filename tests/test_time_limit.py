"""``--time-limit`` covers the whole run: the solve gets the limit less candidate and model building and a
reserve for extraction, checks and writing; a limit spent before the solve is a one-line SolverFailure."""
from __future__ import annotations

import time

import pytest
from conftest import FLEET_SCENARIOS

import solver.extract as extract
from solver.errors import SolverFailure
from solver.extract import SolveOptions, solve_time_left
from solver.plan import plan


def test_solve_gets_what_is_left(monkeypatch):
    seen = []
    real = extract.solve

    def spy(model, backend, **kw):
        seen.append(kw["time_limit_s"])
        return real(model, backend, **kw)

    monkeypatch.setattr(extract, "solve", spy)
    start = time.perf_counter()
    plan(FLEET_SCENARIOS[0], time_limit_s=30)
    assert seen and all(s is not None for s in seen)
    assert seen[0] <= 30 - 1.0 + 1e-9  # the reserve: min(5 %, 1 s)
    assert seen[0] >= 30 - 1.0 - (time.perf_counter() - start)
    # re-solves (pools whose size mix needs headroom) get only what is left
    assert all(later <= earlier for earlier, later in zip(seen, seen[1:]))


def test_spent_limit_refused():
    with pytest.raises(SolverFailure, match="spent before the solve"):
        solve_time_left(SolveOptions(time_limit_s=1.0, started=time.perf_counter() - 2.0))
    assert solve_time_left(SolveOptions(time_limit_s=None)) is None
    assert solve_time_left(SolveOptions(time_limit_s=10.0)) == pytest.approx(9.5)
