"""Running a sweep: one point at a time in process, on a local process pool, or on Dask."""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import InfeasibleError, InputError, NoCandidatesError, PlannerError
from ..plan import plan
from ..scenario import Resolved
from .axes import LoadedSweep, apply_point
from .results import ASSIGNMENT_FIELDS, results_table

Record = dict[str, Any]  # one solved point: see ``solve_point``

def solve_point(base: Resolved, point: int, values: dict[str, Any], *, solver: str = "highs",
                time_limit_s: float | None = None, mip_gap: float = 1e-6) -> dict[str, Any]:
    """Solve one point; always returns a record.

    status: ``optimal``/``feasible`` (a plan; ``feasible``: the best found when time ran out),
    ``infeasible`` (no plan exists), ``error`` (the point's input is invalid), ``failed`` (solver failure, time
    limit without a plan, or an internal error).
    """
    start = time.perf_counter()
    record: dict[str, Any] = {"point": point, "values": values, "status": "", "objective": math.nan,
                              "online_usd_per_hour": math.nan, "offline_usd": math.nan,
                              "horizon_hours": base.scenario.horizon_hours, "message": "", "assignments": []}
    try:
        resolved = apply_point(base, values)
        result = plan(resolved, solver=solver, time_limit_s=time_limit_s, mip_gap=mip_gap, timings=False)
    except (InfeasibleError, NoCandidatesError) as exc:
        record.update(status="infeasible", message=str(exc))
    except InputError as exc:
        record.update(status="error", message=str(exc))
    except PlannerError as exc:  # SolverFailure: no plan within the limits
        record.update(status="failed", message=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad point must not sink the sweep; it is recorded
        record.update(status="failed", message=f"internal error: {type(exc).__name__}: {exc}")
    else:
        modes = {p.pool: p.mode for p in result.pools}
        costs = {p.pool: p.usd for p in result.pools}
        record.update(status=result.status, objective=result.objective,
                      online_usd_per_hour=result.online_usd_per_hour, offline_usd=result.offline_usd,
                      horizon_hours=result.horizon_hours,
                      assignments=[a.model_dump(include=set(ASSIGNMENT_FIELDS))
                                   | {"mode": modes[a.pool], "pool_usd": costs[a.pool]} for a in result.assignments])
    record["wall_s"] = time.perf_counter() - start
    return record


# ---- executors ---------------------------------------------------------------------------------------------

_WORKER_BASE: Resolved | None = None


def _init_worker(base: Resolved) -> None:
    global _WORKER_BASE
    _WORKER_BASE = base


def _solve_in_worker(point: int, values: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    assert _WORKER_BASE is not None, "worker not initialised"
    return solve_point(_WORKER_BASE, point, values, **options)


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _run_local(loaded: LoadedSweep, points: list[tuple[int, dict]], options: dict, workers: int,
               advance: Callable[[], None]) -> list[dict]:
    if workers <= 1 or len(points) <= 1:
        out = []
        for i, v in points:
            out.append(solve_point(loaded.base, i, v, **options))
            advance()
        return out
    # forkserver: workers fork from a clean server that has imported the engine once (no threads inherited)
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["solver.sweep.execute", "solver.plan"])
    out = []
    with ProcessPoolExecutor(max_workers=min(workers, len(points)), mp_context=ctx, initializer=_init_worker,
                             initargs=(loaded.base,)) as pool:
        futures = [pool.submit(_solve_in_worker, i, v, options) for i, v in points]
        for fut in as_completed(futures):
            out.append(fut.result())
            advance()
    return out


def _run_dask(loaded: LoadedSweep, points: list[tuple[int, dict]], options: dict, scheduler: Any,
              advance: Callable[[], None]) -> list[dict]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise InputError("--scheduler needs Dask distributed: pip install -e '.[dask]'") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout="10s", set_as_default=False) if own else scheduler
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        base = client.scatter(loaded.base, broadcast=True, hash=False)
        futures = client.map(_solve_point_kw, [i for i, _ in points], [v for _, v in points], base=base,
                             pure=False, **options)
        out = []
        for fut in as_completed(futures, loop=client.loop):  # loop: the client need not be the default one
            out.append(fut.result())
            advance()
        return out
    finally:
        if own:
            client.close()


def _solve_point_kw(point: int, values: dict[str, Any], *, base: Resolved, **options: Any) -> dict[str, Any]:
    return solve_point(base, point, values, **options)


def run_sweep(loaded: LoadedSweep, *, workers: int | None = None, scheduler: Any = None, solver: str = "highs",
              time_limit_s: float | None = None, mip_gap: float | None = None,
              progress: bool | None = None) -> pd.DataFrame:
    """Solve every point and return the tidy results table (see ``results_table``).

    ``scheduler``: a Dask scheduler address (``tcp://host:port``) or a ``dask.distributed.Client``; without it
    the points run on a local process pool of ``workers`` processes (default ``min(2, cpus)``; 1 = in process).
    ``progress``: a rich progress bar on stderr; default only when stderr is a terminal.

    The local pool starts workers with ``forkserver`` (``spawn`` where unavailable), never plain ``fork``: a script
    that calls ``run_sweep`` with ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard. Dask workers
    need this package installed (``pip install infersave[dask]``); the resolved base scenario is scattered to them
    once, so they need no access to the scenario or catalog files.
    """
    sw = loaded.sweep
    options = dict(solver=solver, time_limit_s=time_limit_s if time_limit_s is not None else sw.time_limit_s,
                   mip_gap=mip_gap if mip_gap is not None else sw.mip_gap)
    points = list(loaded.points())
    show = sys.stderr.isatty() if progress is None else progress
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]sweep {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not show, transient=False) as bar:
        task = bar.add_task(sw.name, total=len(points))

        def advance() -> None:
            bar.advance(task)

        if scheduler is not None:
            records = _run_dask(loaded, points, options, scheduler, advance)
        else:
            records = _run_local(loaded, points, options, workers or default_workers(), advance)
    return results_table(records, loaded.axis_names)


