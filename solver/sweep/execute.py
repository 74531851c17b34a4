"""Running a sweep: one point at a time in process, on a local process pool, or on Dask."""
from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
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

# Limits (README "Limits"): points per sweep and seconds per point; workers at most the CPUs unless forced.
MAX_POINTS = 10_000
MAX_POINT_TIME_LIMIT_S = 3600.0
DASK_TIMEOUT_S = 3600.0  # whole-sweep limit on a Dask scheduler unless --timeout says otherwise
IN_FLIGHT_PER_WORKER = 2  # points submitted ahead of the results (bounded batches, never the whole sweep)


class SweepStopped(PlannerError):
    """The sweep stopped before every point was solved (interrupt, signal or time-out). ``records`` are the
    points finished so far; ``exit_code`` 130 for an interrupt, 3 for a time-out or a lost Dask cluster."""

    def __init__(self, message: str, records: list[Record], exit_code: int = 130) -> None:
        super().__init__(message)
        self.records = records
        self.exit_code = exit_code


def check_limits(n_points: int, *, workers: int | None = None, time_limit_s: float | None = None,
                 force: bool = False, path: str | None = None) -> None:
    """Refuse (exit 2) a sweep over ``MAX_POINTS`` points, more workers than CPUs (unless ``force``) and a
    per-point time limit over ``MAX_POINT_TIME_LIMIT_S``."""
    if n_points > MAX_POINTS and not force:
        raise InputError(f"{n_points:,} points exceed the limit of {MAX_POINTS:,} per sweep (split the axes, or "
                         "--force)", path=path, field="axes")
    cpus = os.cpu_count() or 1
    if workers is not None and workers > cpus and not force:
        raise InputError(f"{workers} workers exceed the {cpus} CPUs of this machine (--force to override)",
                         field="--workers")
    if time_limit_s is not None and not 0 < time_limit_s <= MAX_POINT_TIME_LIMIT_S:
        raise InputError(f"{time_limit_s:g} s per point is outside (0, {MAX_POINT_TIME_LIMIT_S:g}] s",
                         field="--time-limit")

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
    # Ctrl-C reaches the whole process group: the parent stops the workers, they must not print tracebacks
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _solve_in_worker(point: int, values: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    assert _WORKER_BASE is not None, "worker not initialised"
    return solve_point(_WORKER_BASE, point, values, **options)


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


class _Deadline:
    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.end = None if timeout_s is None else time.monotonic() + timeout_s

    def left(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def _timed_out(deadline: _Deadline, records: list[Record], total: int, where: str = "") -> SweepStopped:
    return SweepStopped(f"sweep did not finish within {deadline.timeout_s:g} s{where} ({len(records)} of {total} "
                        "points done)", records, exit_code=3)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Terminate the workers now (a running solve is not waited for) and reap them."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    stop = time.monotonic() + 1.0
    for p in procs:
        p.join(max(0.0, stop - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(0.5)
    pool.shutdown(wait=False, cancel_futures=True)


def _run_local(loaded: LoadedSweep, points: list[tuple[int, dict[str, Any]]], options: dict[str, Any], workers: int,
               done: Callable[[Record], None], deadline: _Deadline) -> None:
    records: list[Record] = []

    def finish(rec: Record) -> None:
        records.append(rec)
        done(rec)

    try:
        if workers <= 1 or len(points) <= 1:
            for i, v in points:
                if deadline.passed():
                    raise _timed_out(deadline, records, len(points))
                finish(solve_point(loaded.base, i, v, **options))
            return
        # forkserver: workers fork from a clean server that has imported the engine once (no threads inherited)
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["solver.sweep.execute", "solver.plan"])
        n = min(workers, len(points))
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(loaded.base,))
        try:
            queue = iter(points)
            in_flight: set[Future[Any]] = set()
            while True:
                while len(in_flight) < n * IN_FLIGHT_PER_WORKER:  # bounded batches, never all points at once
                    item = next(queue, None)
                    if item is None:
                        break
                    in_flight.add(pool.submit(_solve_in_worker, item[0], item[1], options))
                if not in_flight:
                    break
                finished, in_flight = wait(in_flight, timeout=deadline.left(), return_when=FIRST_COMPLETED)
                if not finished and deadline.passed():
                    raise _timed_out(deadline, records, len(points))
                for fut in finished:
                    finish(fut.result())
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)
    except KeyboardInterrupt:
        raise SweepStopped(f"interrupted ({len(records)} of {len(points)} points done)", records) from None


def _run_dask(loaded: LoadedSweep, points: list[tuple[int, dict[str, Any]]], options: dict[str, Any], scheduler: Any,
              done: Callable[[Record], None], deadline: _Deadline) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise InputError("--scheduler needs Dask distributed: pip install -e '.[dask]'") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout="10s", set_as_default=False) if own else scheduler
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}", field="--scheduler") from None
    records: list[Record] = []
    futures: list[Any] = []
    try:
        base = client.scatter(loaded.base, broadcast=True, hash=False)
        window = max(4, IN_FLIGHT_PER_WORKER * max(1, sum(client.nthreads().values())))
        queue = iter(points)

        def submit() -> Any:
            item = next(queue, None)
            if item is None:
                return None
            fut = client.submit(_solve_point_kw, item[0], item[1], base=base, pure=False, **options)
            futures.append(fut)
            return fut

        first = [f for f in (submit() for _ in range(window)) if f is not None]
        ready = as_completed(first, loop=client.loop, timeout=deadline.left())
        for fut in ready:  # loop: the client need not be the default one
            records.append(fut.result())
            done(records[-1])
            nxt = submit()
            if nxt is not None:
                ready.add(nxt)
    except KeyboardInterrupt:
        raise SweepStopped(f"interrupted ({len(records)} of {len(points)} points done)", records) from None
    except (TimeoutError, asyncio.TimeoutError):
        raise _timed_out(deadline, records, len(points), " on the Dask scheduler") from None
    except PlannerError:
        raise
    except Exception as exc:  # noqa: BLE001 - a lost worker or scheduler: one line, the finished points kept
        first_line = (str(exc).splitlines() or [""])[0]
        raise SweepStopped(f"Dask sweep failed: {type(exc).__name__}: {first_line}", records, exit_code=3) from None
    finally:
        try:
            client.cancel([f for f in futures if not f.done()])
        except Exception:  # noqa: BLE001 - best effort while stopping
            pass
        if own:
            client.close()


def _solve_point_kw(point: int, values: dict[str, Any], *, base: Resolved, **options: Any) -> dict[str, Any]:
    return solve_point(base, point, values, **options)


def run_sweep(loaded: LoadedSweep, *, workers: int | None = None, scheduler: Any = None, solver: str = "highs",
              time_limit_s: float | None = None, mip_gap: float | None = None,
              progress: bool | None = None, skip: Iterable[int] = (), timeout_s: float | None = None,
              on_record: Callable[[Record, list[Record]], None] | None = None) -> pd.DataFrame:
    """Solve every point and return the tidy results table (see ``results_table``).

    ``scheduler``: a Dask scheduler address (``tcp://host:port``) or a ``dask.distributed.Client``; without it
    the points run on a local process pool of ``workers`` processes (default ``min(2, cpus)``; 1 = in process).
    ``progress``: a rich progress bar on stderr; default only when stderr is a terminal.
    ``skip``: point ids already solved (``--resume``); they are not solved and not in the returned table.
    ``timeout_s``: a limit on the whole sweep (default: none locally, ``DASK_TIMEOUT_S`` on Dask).
    ``on_record(record, records_so_far)``: called after each finished point (checkpoints).

    Points are submitted in bounded batches (``IN_FLIGHT_PER_WORKER`` per worker ahead of the results). Ctrl-C
    (``KeyboardInterrupt``) or a time-out stops the workers at once and raises ``SweepStopped`` with the points
    finished so far.

    The local pool starts workers with ``forkserver`` (``spawn`` where unavailable), never plain ``fork``: a script
    that calls ``run_sweep`` with ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard. Dask workers
    need this package installed (``pip install infersave[dask]``); the resolved base scenario is scattered to them
    once, so they need no access to the scenario or catalog files.
    """
    sw = loaded.sweep
    options = dict(solver=solver, time_limit_s=time_limit_s if time_limit_s is not None else sw.time_limit_s,
                   mip_gap=mip_gap if mip_gap is not None else sw.mip_gap)
    skipped = set(skip)
    points = [(i, v) for i, v in loaded.points() if i not in skipped]
    if timeout_s is None and scheduler is not None:
        timeout_s = DASK_TIMEOUT_S
    deadline = _Deadline(timeout_s)
    show = sys.stderr.isatty() if progress is None else progress
    console = Console(stderr=True)
    records: list[Record] = []
    with Progress(TextColumn("[bold]sweep {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not show, transient=False) as bar:
        task = bar.add_task(sw.name, total=len(points))

        def done(rec: Record) -> None:
            records.append(rec)
            bar.advance(task)
            if on_record is not None:
                on_record(rec, records)

        if scheduler is not None:
            _run_dask(loaded, points, options, scheduler, done, deadline)
        else:
            _run_local(loaded, points, options, workers or default_workers(), done, deadline)
    return results_table(records, loaded.axis_names)
