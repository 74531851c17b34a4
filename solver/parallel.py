"""Independent blocks of a MILP solved side by side in forked worker processes.

The blocks of a model share no row, so solving them in separate processes gives each the result it gets alone
(threads do not: highspy crashed when two HiGHS runs shared a process, and ``threads=1`` made each run ~14x
slower). Workers are forked, so the blocks are not pickled on the way in (only results come back); a fork is
only taken where it is safe and pays (``block_workers``). Under a time limit each block, when it starts, gets
``block_share`` of what is left, as in one process, counting only the blocks its own worker still has to run.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from .environment import workers_cap
from .linear_model import LinearModel

MAX_WORKERS = 2
PARALLEL_MIN_VARIABLES = 2000  # blocks for the back end with fewer variables than this in all: one process
Result = TypeVar("Result")
_STATE: dict[str, Any] = {}  # what forked workers inherit: the blocks, the solve function, the clock


def block_share(remaining: float, after: int, minimum: float, grace: float) -> float:
    """Seconds for a block that starts with ``remaining`` seconds left and ``after`` blocks to run after it:
    an equal share, but up to ``grace`` beyond it while each later block keeps ``minimum`` (at 10,000 blocks the
    equal share, ~2 ms, is too short for a solver call to return any solution)."""
    return max(minimum, remaining / (after + 1), min(grace, remaining - minimum * after))


def block_workers(blocks: list[LinearModel], forbidden: bool = False) -> int:
    """Worker processes for these blocks: up to ``MAX_WORKERS`` and the CPUs this process may use when there
    are two blocks or more with ``PARALLEL_MIN_VARIABLES`` variables in all; 1 (this process) when ``forbidden``
    (a fork would inherit a solver's threads in an unknown state), inside a daemonic process, without ``fork``,
    or with ``INFERSAVE_WORKERS=1`` (a number caps it)."""
    cap = workers_cap(MAX_WORKERS)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if forbidden or len(blocks) < 2 or sum(len(b.names) for b in blocks) < PARALLEL_MIN_VARIABLES \
            or multiprocessing.current_process().daemon or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(cap, cpus, len(blocks)))


def _run(k: int) -> Any:
    state = _STATE
    with state["started"].get_lock():
        state["started"].value += 1
        started = state["started"].value
    limit = None
    if state["deadline"] is not None:
        remaining = state["deadline"] - time.monotonic()
        if remaining <= 0:
            return None
        # the blocks this worker may still have to start after this one
        after = math.ceil((state["n"] - started) / state["workers"])
        limit = block_share(remaining, after, *state["share"])
    return state["solve"](state["blocks"][k], limit)


def solve_blocks(blocks: list[LinearModel], solve: Callable[[LinearModel, float | None], Result],
                 time_limit_s: float | None, workers: int, share: tuple[float, float]) -> list[Result | None]:
    """``solve(block, seconds)`` for each block in ``workers`` forked processes, blocks started in the order
    given; None for a block not started because the limit was spent. ``share``: (minimum, grace) of
    ``block_share``."""
    ctx = multiprocessing.get_context("fork")
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    _STATE.update(blocks=blocks, solve=solve, deadline=deadline, n=len(blocks), workers=workers, share=share,
                  started=ctx.Value("i", 0))
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_run, k) for k in range(len(blocks))]
            return [f.result() for f in futures]
    finally:
        _STATE.clear()
