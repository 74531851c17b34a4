"""Solve time and problem size for random fleets of 10, 100 and 1,000 workloads over the whole catalog.

    python benchmarks/scale.py [--sizes 10 100 1000] [--solver highs] [--gap 0.001]

Each fleet is solved with replicas per workload (``share_replicas: false``, the fleet MILP of issue 2) and with
replicas pooled across the workloads of a model (``share_replicas: true``, a harder bin-packing). Prints, per
fleet size, pooling and with/without pruning: candidate rows, MILP variables/constraints, time to build the
candidate table, time to solve, status and gap. Fleets are random but seeded (mixed models, online and offline,
lengths 128-4096, SLOs that most instances can meet).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from solver.backends import solve  # noqa: E402
from solver.candidates import build_candidates  # noqa: E402
from solver.milp import build_problem  # noqa: E402
from solver.scenario import resolve  # noqa: E402
from solver.schema import Scenario  # noqa: E402

MODELS = ["llama-3.1-8b", "mistral-7b", "qwen2.5-7b", "qwen2.5-14b", "llama-3.1-70b", "qwen2.5-32b",
          "mixtral-8x7b", "llama-3.2-3b"]


def random_fleet(n: int, seed: int = 0, share: bool = True) -> Scenario:
    rng = np.random.default_rng(seed)
    workloads = []
    for i in range(n):
        model = MODELS[rng.integers(len(MODELS))]
        l_in, l_out = int(rng.choice([128, 512, 1024, 2048, 4096])), int(rng.choice([64, 128, 256, 512]))
        if rng.random() < 0.8:
            workloads.append(dict(name=f"w{i}", model=model, input_tokens=l_in, output_tokens=l_out,
                                  request_rate_per_s=float(np.round(rng.uniform(0.2, 20), 2)),
                                  slo=dict(max_ttft_s=float(rng.choice([2.0, 5.0, 10.0])),
                                           max_tpot_s=float(rng.choice([0.05, 0.1, 0.2])))))
        else:
            workloads.append(dict(name=f"w{i}", model=model, mode="offline", input_tokens=l_in, output_tokens=l_out,
                                  num_requests=int(rng.integers(1000, 200000)),
                                  deadline_hours=float(rng.choice([4, 8, 12]))))
    return Scenario(name=f"random-{n}", workloads=workloads, pricing="both", horizon_hours=24, share_replicas=share)


def run(n: int, prune: bool, backend: str, gap: float, share: bool, time_limit: float) -> str:
    resolved = resolve(random_fleet(n, share=share))
    t0 = time.perf_counter()
    cands = build_candidates(resolved.scenario, resolved.instances, resolved.models, resolved.calibration,
                             prune=prune)
    t1 = time.perf_counter()
    problem = build_problem(cands.table, resolved.scenario)
    t2 = time.perf_counter()
    result = solve(problem.model, backend, mip_gap=gap, time_limit_s=time_limit)
    m = problem.model
    return (f"{n:>6} {'yes' if share else 'no':>6} {'yes' if prune else 'no':>6} {cands.stats['rows_evaluated']:>9} {len(cands.table):>8} "
            f"{len(m.names):>8} {m.n_integer:>7} {len(m.rows):>8} {t1 - t0:>8.2f} {t2 - t1:>8.2f} "
            f"{result.wall_s:>8.2f} {result.status.value:>10} {result.gap if result.gap is not None else float('nan'):>9.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--solver", default="highs")
    parser.add_argument("--gap", type=float, default=1e-3)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve")
    parser.add_argument("--no-unpruned-above", type=int, default=100,
                        help="skip the unpruned run for fleets larger than this (memory)")
    args = parser.parse_args()
    if min(args.sizes) < 1 or args.time_limit <= 0 or not 0 <= args.gap <= 1 or args.no_unpruned_above < 0:
        parser.error("--sizes must be >= 1, --time-limit > 0, --gap in [0, 1], --no-unpruned-above >= 0")
    print(f"{'fleet':>6} {'pooled':>6} {'prune':>6} {'evaluated':>9} {'kept':>8} {'vars':>8} {'ints':>7} {'rows':>8} "
          f"{'cand s':>8} {'build s':>8} {'solve s':>8} {'status':>10} {'gap':>9}")
    for n in args.sizes:
        for share in (False, True):
            print(run(n, True, args.solver, args.gap, share, args.time_limit), flush=True)
            if n <= args.no_unpruned_above:
                print(run(n, False, args.solver, args.gap, share, args.time_limit), flush=True)


if __name__ == "__main__":
    main()
