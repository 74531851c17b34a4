"""Solver back ends behind one function: ``solve(model, backend, time_limit_s, mip_gap)``.

``cbc`` and ``highs-pulp`` go through PuLP (pinned below 4, which dropped the bundled CBC class; only this
module names a PuLP solver class), ``highs`` passes the arrays straight to highspy (the same HiGHS, without
PuLP's per-variable Python objects, which dominate on many small blocks), ``ortools`` goes through OR-Tools'
linear solver wrapper with SCIP. Statuses are mapped to one enum: ``OPTIMAL``; ``FEASIBLE`` (an incumbent
with a gap, e.g. at a time limit; never reported as optimal); ``INFEASIBLE``; ``NO_SOLUTION`` (a limit was
reached with nothing to show); ``ERROR``. Every back end receives the model's variable and row names
(sanitised once, ``LinearModel.safe_names``), so ``write_lp`` dumps a model that reads back to candidate ids.
"""
from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .blocks import block_key, block_model, components, rows_by_block
from .errors import SolverFailure
from .fastpath import solve_fast
from .io import atomic_write
from .linear_model import LinearModel
from .parallel import block_share, block_workers, solve_blocks
from .warmstart import mip_start, within_gap

log = logging.getLogger(__name__)
BACKENDS = ("highs", "cbc", "ortools", "highs-pulp")
MIN_BLOCK_S = 1e-3  # a block started under a time limit gets at least this (0 would mean "no limit")
BLOCK_GRACE_S = 1.0  # ... and may take up to this much of the time left, beyond its equal share
WARM_START_MIN_INTEGERS = 200  # blocks with fewer integer variables solve fast enough without a MIP start
# after a MIP start, the full model runs only with this much time left: its first round of root cuts (the only
# way it proves more than the LP bound) ignores the time limit and took 20-35 s on the coupled 300 fleet
FULL_MODEL_MIN_S = 30.0
_HIGHS_RAN = False  # whether HiGHS ran in this process (then blocks are not solved in forked workers)


class Status(str, enum.Enum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"        # a solution, not proven optimal within the requested gap (limit reached)
    INFEASIBLE = "infeasible"
    NO_SOLUTION = "no_solution"  # a limit was reached before any solution was found
    ERROR = "error"


@dataclass(frozen=True)
class SolveResult:
    status: Status
    objective: float | None
    bound: float | None
    values: np.ndarray | None
    backend: str
    wall_s: float
    note: str = ""

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None:
            return None
        return max(0.0, (self.objective - self.bound) / max(abs(self.objective), 1e-9))


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence solver banners written straight to file descriptor 1 (HiGHS prints one on start-up)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def to_pulp(model: LinearModel) -> tuple[Any, list[Any]]:
    """The model as a ``pulp.LpProblem`` with its variables, every variable and row under its own name."""
    import pulp

    var_names, row_names = model.safe_names()
    prob = pulp.LpProblem("fleet", pulp.LpMinimize)
    cats = [pulp.LpInteger if i else pulp.LpContinuous for i in model.integer]
    variables = [pulp.LpVariable(name, lowBound=lo, upBound=None if math.isinf(hi) else hi, cat=c)
                 for name, lo, hi, c in zip(var_names, model.lower, model.upper, cats)]
    prob += pulp.LpAffineExpression([(variables[j], c) for j, c in enumerate(model.cost) if c])
    for name, (_name, idx, coef, lo, hi) in zip(row_names, model.rows):
        expr = pulp.LpAffineExpression([(variables[j], c) for j, c in zip(idx.tolist(), coef.tolist())])
        if lo == hi:
            prob += (expr == lo, name)
        else:
            if not math.isinf(hi):
                prob += (expr <= hi, name if math.isinf(lo) else f"{name}_hi")
            if not math.isinf(lo):
                prob += (expr >= lo, name if math.isinf(hi) else f"{name}_lo")
    return prob, variables


def write_lp(model: LinearModel, path: str | Path) -> Path:
    """Write the model to ``path``: MPS when it ends in ``.mps``, else CPLEX LP format (both readable)."""
    path = Path(path)
    prob, _ = to_pulp(model)

    def write(tmp: Path) -> None:
        if path.suffix.lower() == ".mps":
            prob.writeMPS(str(tmp))
        else:
            prob.writeLP(str(tmp))

    atomic_write(path, write)  # a read-only file is refused, and no half-written model is left
    return path


def _solve_pulp(model: LinearModel, backend: str, time_limit_s: float | None, mip_gap: float,
                threads: int | None) -> SolveResult:
    import pulp

    prob, variables = to_pulp(model)
    if backend == "cbc":
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=mip_gap, threads=threads)
    else:
        solver = pulp.HiGHS(msg=False, timeLimit=time_limit_s, gapRel=mip_gap, threads=threads)
    start = time.perf_counter()
    prob.solve(solver)
    wall = time.perf_counter() - start
    sol = prob.sol_status
    if prob.status == pulp.LpStatusInfeasible or sol == pulp.LpSolutionInfeasible:
        return SolveResult(Status.INFEASIBLE, None, None, None, backend, wall)
    if sol not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        # PuLP reports a limit reached without a solution as "Not Solved"; anything else is a failure
        status = Status.NO_SOLUTION if prob.status == pulp.LpStatusNotSolved else Status.ERROR
        return SolveResult(status, None, None, None, backend, wall, note=pulp.LpStatus[prob.status])
    values = np.array([v.varValue or 0.0 for v in variables])
    objective = float(np.dot(model.cost, values))
    bound = None
    if backend == "highs":
        bound = float(prob.solverModel.getInfo().mip_dual_bound)
        if not math.isfinite(bound):
            bound = objective
    optimal = sol == pulp.LpSolutionOptimal
    if backend == "cbc":
        # PuLP does not return CBC's bound: an optimal solve is within the requested gap; a time-limited one is
        # bounded by the LP relaxation (a weaker but valid bound)
        bound = objective * (1 - mip_gap) if optimal else lp_relaxation_bound(model)
    status = Status.OPTIMAL if optimal else Status.FEASIBLE
    return SolveResult(status, objective, bound, values, backend, wall)


def lp_relaxation_bound(model: LinearModel) -> float | None:
    """Optimal value of the model with integrality dropped (a lower bound on the MILP), or None."""
    relaxed = LinearModel(model.names, model.lower, model.upper, [False] * len(model.names), model.cost, model.rows)
    result = _solve_highspy(relaxed, None, 0.0, None)
    return result.objective if result.status is Status.OPTIMAL else None


def _solve_highspy(model: LinearModel, time_limit_s: float | None, mip_gap: float, threads: int | None,
                   warm_start: bool = True, start: np.ndarray | None = None) -> SolveResult:
    """HiGHS through highspy; ``start``: a MIP start, or with ``warm_start`` one from ``warmstart.mip_start``
    (blocks with ``WARM_START_MIN_INTEGERS`` integers or more)."""
    import highspy

    global _HIGHS_RAN
    _HIGHS_RAN = True  # its worker threads now exist: a forked copy of this process would inherit them broken

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", mip_gap)
    if time_limit_s:
        h.setOptionValue("time_limit", float(time_limit_s))
    if threads:
        h.setOptionValue("threads", int(threads))
    inf = highspy.kHighsInf
    n = len(model.names)
    upper = np.where(np.isinf(model.upper), inf, model.upper)
    h.addVars(n, np.asarray(model.lower, float), upper.astype(float))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), np.asarray(model.cost, float))
    ints = np.flatnonzero(model.integer).astype(np.int32)
    if len(ints):
        h.changeColsIntegrality(len(ints), ints, np.full(len(ints), highspy.HighsVarType.kInteger))
    if model.rows:
        lo = np.array([-inf if math.isinf(r[3]) else r[3] for r in model.rows], float)
        hi = np.array([inf if math.isinf(r[4]) else r[4] for r in model.rows], float)
        starts = np.cumsum([0] + [len(r[1]) for r in model.rows[:-1]]).astype(np.int32)
        index = np.concatenate([r[1] for r in model.rows]).astype(np.int32)
        value = np.concatenate([r[2] for r in model.rows]).astype(float)
        h.addRows(len(model.rows), lo, hi, len(index), starts, index, value)
    var_names, row_names = model.safe_names()
    for j, name in enumerate(var_names):
        h.passColName(j, name)
    for k, name in enumerate(row_names):
        h.passRowName(k, name)
    began = time.perf_counter()
    note = how = ""
    if warm_start and len(ints) >= WARM_START_MIN_INTEGERS and os.environ.get("INFERSAVE_WARM_START", "1") != "0":
        def lp(relaxed: LinearModel, seconds: float | None) -> np.ndarray | None:
            result = _solve_highspy(relaxed, seconds, 0.0, threads)
            return result.values if result.status is Status.OPTIMAL else None

        def mip(sub: LinearModel, seconds: float | None, gap: float,
                begin: np.ndarray | None) -> tuple[np.ndarray | None, bool]:
            result = _solve_highspy(sub, seconds, gap, threads, warm_start=False, start=begin)
            return result.values, result.status is Status.OPTIMAL

        found = mip_start(model, time_limit_s, mip_gap, lp, mip)
        start, how = found.values, found.how
        if start is not None:
            note = f"MIP start from the {how} ({float(np.dot(model.cost, start)):.6g})"
            objective = float(np.dot(model.cost, start))
            left = None if not time_limit_s else float(time_limit_s) - (time.perf_counter() - began)
            if within_gap(objective, found.bound, mip_gap):
                return SolveResult(Status.OPTIMAL, objective, found.bound, start, "highs", time.perf_counter() - began,
                                   note=f"{note}, within the gap of the LP relaxation's bound: full model not run")
            if left is not None and left < FULL_MODEL_MIN_S and found.bound is not None:
                return SolveResult(Status.FEASIBLE, objective, found.bound, start, "highs",
                                   time.perf_counter() - began, note=f"{note}; bound of the LP relaxation: the full "
                                   f"model's root cuts need more than the {left:.1f} s left")
        if time_limit_s:
            h.setOptionValue("time_limit", max(MIN_BLOCK_S, float(time_limit_s) - (time.perf_counter() - began)))
    if note and how != "rounded LP relaxation":
        # the start came from restricted MIPs (warmstart.py); HiGHS's own sub-MIP heuristics rarely beat it on
        # the full model and took ~13 of 37 s at the root on the coupled 300 fleet: those seconds go to cuts
        for option in ("mip_heuristic_run_rins", "mip_heuristic_run_rens", "mip_heuristic_run_root_reduced_cost",
                       "mip_heuristic_run_feasibility_jump"):
            h.setOptionValue(option, False)
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = np.asarray(start, float).tolist()
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    wall = time.perf_counter() - began
    status = h.getModelStatus()
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    if status == highspy.HighsModelStatus.kInfeasible:
        return SolveResult(Status.INFEASIBLE, None, None, None, "highs", wall)
    if not has_solution:
        limited = status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit)
        return SolveResult(Status.NO_SOLUTION if limited else Status.ERROR, None, None, None, "highs", wall,
                           note=h.modelStatusToString(status))
    values = np.asarray(h.getSolution().col_value, float)
    objective = float(np.dot(model.cost, values))
    bound = float(info.mip_dual_bound) if len(ints) else objective
    if not math.isfinite(bound):
        bound = objective
    optimal = status == highspy.HighsModelStatus.kOptimal
    return SolveResult(Status.OPTIMAL if optimal else Status.FEASIBLE, objective, bound, values, "highs", wall,
                       note=note)


def _solve_ortools(model: LinearModel, time_limit_s: float | None, mip_gap: float,
                   threads: int | None) -> SolveResult:
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("SCIP")
    if solver is None:
        raise SolverFailure("OR-Tools was built without SCIP")
    inf = solver.infinity()
    var_names, row_names = model.safe_names()
    variables = [solver.IntVar(lo, inf if math.isinf(hi) else hi, name) if integer else
                 solver.NumVar(lo, inf if math.isinf(hi) else hi, name)
                 for name, lo, hi, integer in zip(var_names, model.lower, model.upper, model.integer)]
    for row_name, (_name, idx, coef, lo, hi) in zip(row_names, model.rows):
        row = solver.RowConstraint(-inf if math.isinf(lo) else lo, inf if math.isinf(hi) else hi, row_name)
        for j, c in zip(idx.tolist(), coef.tolist()):
            row.SetCoefficient(variables[j], c)
    objective = solver.Objective()
    for j, c in enumerate(model.cost):
        if c:
            objective.SetCoefficient(variables[j], c)
    objective.SetMinimization()
    if time_limit_s:
        solver.SetTimeLimit(int(time_limit_s * 1000))
    if threads:
        solver.SetNumThreads(threads)
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, mip_gap)
    start = time.perf_counter()
    code = solver.Solve(params)
    wall = time.perf_counter() - start
    if code == pywraplp.Solver.INFEASIBLE:
        return SolveResult(Status.INFEASIBLE, None, None, None, "ortools", wall)
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        status = Status.NO_SOLUTION if code == pywraplp.Solver.NOT_SOLVED and time_limit_s else Status.ERROR
        return SolveResult(status, None, None, None, "ortools", wall, note=f"code {code}")
    values = np.array([v.solution_value() for v in variables])
    status = Status.OPTIMAL if code == pywraplp.Solver.OPTIMAL else Status.FEASIBLE
    return SolveResult(status, float(np.dot(model.cost, values)), float(objective.BestBound()), values,
                       "ortools", wall)


def solve(model: LinearModel, backend: str = "highs", *, time_limit_s: float | None = None,
          mip_gap: float = 1e-6, threads: int | None = None, fallback: bool = True,
          decompose: bool = True, fast: bool = True, reuse: dict[str, SolveResult] | None = None) -> SolveResult:
    """Solve block by block when the model splits into independent blocks (exact: the optimum of a sum of
    independent problems is the sum of their optima): with ``fast``, in closed form where
    ``fastpath.solve_fast`` proves a block's optimum (one demand on pools of its own), the others with the chosen
    back end, in worker processes where ``parallel.block_workers`` allows (``INFERSAVE_WORKERS=1``: here).
    ``reuse``: proven block optima by content, filled and read across calls (one plan's re-solves share one)."""
    blocks = components(model) if decompose else [np.arange(len(model.names))]
    fast = fast and os.environ.get("INFERSAVE_FAST_BLOCKS", "1") != "0"
    if len(blocks) == 1 and not fast:
        return solve_block(model, backend, time_limit_s=time_limit_s, mip_gap=mip_gap, threads=threads,
                           fallback=fallback)
    rows_of = rows_by_block(model, blocks)
    start = time.perf_counter()
    values = np.zeros(len(model.names))
    objective = bound = wall = 0.0
    statuses: list[Status] = []
    notes: list[str] = []
    used: set[str] = set()
    # small blocks first; under a time limit each block gets an equal share of what is left, so one hard
    # block cannot starve the others, and the limit caps the whole solve: once it is spent, no block starts
    pending: list[tuple[np.ndarray, LinearModel]] = []
    for k in sorted(range(len(blocks)), key=lambda k: len(blocks[k])):
        block = blocks[k]
        sub = block_model(model, block, rows_of[k])
        exact = solve_fast(sub) if fast else None
        if exact is None:
            pending.append((block, sub))
            continue
        values[block] = exact[0]  # a proven optimum: objective = bound
        objective, bound, wall = objective + exact[1], bound + exact[1], wall + exact[2]
        statuses.append(Status.OPTIMAL)
        used.add(backend)
    if len(pending) < len(blocks):
        notes.append(f"{len(blocks) - len(pending)} of {len(blocks)} blocks solved in closed form (fastpath.py)")
    # blocks proven optimal before with the same rows, bounds and costs (a re-solve after a few pools changed)
    keys = [block_key(sub, backend, mip_gap) if reuse is not None else "" for _, sub in pending]
    known = [reuse.get(k) if reuse is not None else None for k in keys]
    for (block, _sub), hit in zip(pending, known):
        if hit is not None:
            values[block] = hit.values
            objective, bound = objective + (hit.objective or 0.0), bound + (hit.bound or 0.0)
            statuses.append(hit.status)
            used.add(hit.backend)
    if any(hit is not None for hit in known):
        notes.append(f"{sum(hit is not None for hit in known)} block(s) unchanged since an earlier solve, reused")
        blocks_left = [(b, sub, k) for (b, sub), k, hit in zip(pending, keys, known) if hit is None]
        pending, keys = [(b, sub) for b, sub, _ in blocks_left], [k for _, _, k in blocks_left]
    left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - start)
    results = _solve_rest([sub for _, sub in pending], backend, left, mip_gap, threads, fallback)
    for key, result in zip(keys, results):
        if reuse is not None and result is not None and result.status is Status.OPTIMAL and result.values is not None:
            reuse[key] = result
    for position, ((block, _sub), result) in enumerate(zip(pending, results)):
        if result is None:
            notes.append(f"time limit of {time_limit_s:g} s spent after {len(blocks) - len(pending) + position} "
                         f"of {len(blocks)} blocks")
            return SolveResult(Status.NO_SOLUTION, None, None, None, "+".join(sorted(used)) or backend, wall,
                               "; ".join(notes))
        statuses.append(result.status)
        used.add(result.backend)
        notes += [result.note] if result.note else []
        wall += result.wall_s
        if result.values is None:
            return SolveResult(result.status, None, None, None, result.backend, wall, "; ".join(notes))
        values[block] = result.values
        objective += result.objective or 0.0
        bound += result.bound if result.bound is not None else (result.objective or 0.0)
    status = Status.OPTIMAL if all(s is Status.OPTIMAL for s in statuses) else Status.FEASIBLE
    return SolveResult(status, float(np.dot(model.cost, values)), bound, values, "+".join(sorted(used)), wall,
                       "; ".join(notes))


def _solve_rest(subs: list[LinearModel], backend: str, time_limit_s: float | None, mip_gap: float,
                threads: int | None, fallback: bool) -> list[SolveResult | None]:
    """``solve_block`` on each block, in this order, under one limit (``parallel.block_share`` per block);
    None for blocks not started once the limit is spent. The list stops after a block without a solution."""
    def one(sub: LinearModel, seconds: float | None) -> SolveResult:
        return solve_block(sub, backend, time_limit_s=seconds, mip_gap=mip_gap, threads=threads, fallback=fallback)

    if time_limit_s is not None and time_limit_s <= 0:
        return [None] * len(subs)
    workers = block_workers(subs, forbidden=_HIGHS_RAN)
    if workers > 1:
        return solve_blocks(subs, one, time_limit_s, workers, (MIN_BLOCK_S, BLOCK_GRACE_S))
    deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s
    out: list[SolveResult | None] = []
    for position, sub in enumerate(subs):
        seconds = None
        if deadline is not None:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return out + [None] * (len(subs) - position)
            seconds = block_share(remaining, len(subs) - position - 1, MIN_BLOCK_S, BLOCK_GRACE_S)
        result = one(sub, seconds)
        out.append(result)
        if result.values is None:
            break
    return out


def solve_block(model: LinearModel, backend: str = "highs", *, time_limit_s: float | None = None,
                mip_gap: float = 1e-6, threads: int | None = None, fallback: bool = True) -> SolveResult:
    """Solve with the chosen back end; if it is missing or crashes, fall back to the next one and say so."""
    if backend not in BACKENDS:
        raise SolverFailure(f"unknown solver {backend!r}; choose one of {', '.join(BACKENDS)}")
    order = [backend] + ([b for b in BACKENDS if b != backend] if fallback else [])
    errors = []
    for name in order:
        try:
            with _quiet_stdout():
                if name == "ortools":
                    result = _solve_ortools(model, time_limit_s, mip_gap, threads)
                elif name == "highs":
                    result = _solve_highspy(model, time_limit_s, mip_gap, threads)
                else:
                    result = _solve_pulp(model, "cbc" if name == "cbc" else "highs", time_limit_s, mip_gap, threads)
        except (ImportError, OSError, RuntimeError, SolverFailure, Exception) as exc:  # noqa: BLE001 - any crash
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            log.warning("solver %s failed (%s); trying the next back end", name, exc)
            continue
        if result.status is Status.ERROR:
            errors.append(f"{name}: {result.note}")
            continue
        if name != backend:
            result = SolveResult(result.status, result.objective, result.bound, result.values, name,
                                 result.wall_s, note=f"fell back from {backend}: {'; '.join(errors)}")
        return result
    raise SolverFailure("every solver back end failed: " + "; ".join(errors))
