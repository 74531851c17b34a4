"""``infersave sweep`` end to end: outputs checked before any work, points checkpointed as they finish,
Ctrl-C / SIGTERM stop cleanly with the finished points in ``OUT.partial.<ext>``, ``--resume`` finishes them."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..environment import checkpoint_every_s
from ..io import check_output, remove_stray_temps
from ..provenance import provenance_of
from ..scenario import input_files
from .axes import LoadedSweep, load_sweep
from .execute import SweepStopped, check_limits, run_sweep
from .results import merge_tables, output_kind, partial_path, results_table, resume_table, write_results


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def run_sweep_to_file(sweep_file: Path, out: Path, *, workers: int | None, scheduler: str | None, solver: str,
                      time_limit_s: float | None, timeout_s: float | None, resume: bool, force: bool,
                      progress: bool | None) -> tuple[pd.DataFrame, LoadedSweep, int]:
    """Solve every point not already finished and write ``out``; returns (table, sweep, points kept from before).

    Raises:
        SweepStopped: interrupted or timed out; its message says what was written (the partial file).
    """
    output_kind(out)  # a bad suffix is exit 2 before any solving
    partial = partial_path(out)
    check_output(out, [sweep_file])
    check_output(partial, [sweep_file])
    check_limits(1, workers=workers, time_limit_s=time_limit_s, force=force)
    loaded = load_sweep(sweep_file)
    inputs = [sweep_file, *input_files(loaded.base)]
    check_output(out, inputs)
    check_output(partial, inputs)
    check_limits(loaded.sweep.n_points, force=force, path=str(sweep_file))
    prov = provenance_of(loaded.base)
    done = resume_table(out, loaded) if resume else None
    skip = set(done["point"]) if done is not None else set()
    last_write = [time.monotonic()]
    every_s = checkpoint_every_s()  # read once: the environment does not change during a sweep

    def save_partial(records: list[dict[str, Any]]) -> int:
        table = merge_tables([done, results_table(records, loaded.axis_names) if records else None])
        write_results(table, partial, prov)
        return int(table["point"].nunique())

    def checkpoint(_record: dict[str, Any], records: list[dict[str, Any]]) -> None:
        # at most once a second (INFERSAVE_CHECKPOINT_S): a kill -9 loses at most that much work
        if time.monotonic() - last_write[0] >= every_s:
            save_partial(records)
            last_write[0] = time.monotonic()

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop) if _main_thread() else None
    try:
        new = run_sweep(loaded, workers=workers, scheduler=scheduler, solver=solver, time_limit_s=time_limit_s,
                        progress=progress, skip=skip, timeout_s=timeout_s, on_record=checkpoint)
    except SweepStopped as exc:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the partial file short
            if _main_thread():
                signal.signal(sig, signal.SIG_IGN)
        remove_stray_temps(partial)  # a checkpoint the signal cut short
        if exc.records or done is not None:
            finished = save_partial(exc.records)
            raise SweepStopped(f"{exc}; wrote {partial} (partial: {finished} of {loaded.sweep.n_points} points); "
                               "rerun with --resume to finish", exc.records, exc.exit_code) from None
        partial.unlink(missing_ok=True)
        raise SweepStopped(f"{exc}; nothing written", exc.records, exc.exit_code) from None
    finally:
        if _main_thread():
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    df = merge_tables([done, new])
    write_results(df, out, prov)
    partial.unlink(missing_ok=True)
    return df, loaded, len(skip)
