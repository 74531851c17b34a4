"""Sweep throughput: points solved per second, in process, on a local process pool, and on a Dask LocalCluster.

    python benchmarks/sweep.py [--points 48|24] [--workers 1 2] [--no-dask]

The sweep is the bundled price-shock sweep (scenarios/sweep_price_shock.yaml, 24 points), with a
``demand_growth: [1, 1.5]`` axis added for 48 points. Timings include pool / cluster start-up (that is what a user
waits for); the Dask line also reports the time with the cluster already running. Every run must produce the same
table, which is checked.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from solver.resources import scenario_dir
from solver.sweep import load_sweep, make_sweep, run_sweep  # noqa: E402

SWEEP = scenario_dir() / "sweep_price_shock.yaml"


def build(points: int, sweep_file: Path = SWEEP):
    loaded = load_sweep(sweep_file)
    axes = dict(loaded.sweep.axes)
    if points > loaded.sweep.n_points:
        axes["demand_growth"] = [1.0, 1.5]
    return make_sweep(loaded.base, axes, name=f"bench-{points}")


def same(a, b) -> bool:
    return a.drop(columns=["wall_s"]).equals(b.drop(columns=["wall_s"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, choices=(24, 48), default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--sweep", type=Path, default=SWEEP, help="sweep file (default: the bundled price shock)")
    args = parser.parse_args()
    if min(args.workers) < 1:
        parser.error("--workers must be >= 1")
    loaded = build(args.points, args.sweep)
    n = loaded.sweep.n_points
    print(f"sweep: {n} points ({', '.join(loaded.axis_names)}); {os.cpu_count()} CPUs")
    print(f"{'executor':<38} {'wall s':>8} {'points/s':>9}")
    reference = None
    for w in args.workers:
        t = time.perf_counter()
        df = run_sweep(loaded, workers=w, progress=False)
        wall = time.perf_counter() - t
        label = "in process (workers=1)" if w == 1 else f"local process pool, {w} processes"
        print(f"{label:<38} {wall:8.2f} {n / wall:9.2f}")
        reference = df if reference is None else reference
        assert same(df, reference), "process pool results differ"
    if args.no_dask:
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        print("dask.distributed not installed (pip install -e .[dask]): Dask line skipped")
        return
    t = time.perf_counter()
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        up = time.perf_counter() - t
        t2 = time.perf_counter()
        df = run_sweep(loaded, scheduler=client, progress=False)
        solve = time.perf_counter() - t2
    wall = up + solve
    print(f"{'Dask LocalCluster, 2 workers':<38} {wall:8.2f} {n / wall:9.2f}   "
          f"(cluster start {up:.2f} s; {n / solve:.2f} points/s once running)")
    assert reference is None or same(df, reference), "Dask results differ"


if __name__ == "__main__":
    main()
