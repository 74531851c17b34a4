"""Whole-run time, bound, gap and peak memory for random fleets over the whole catalog.

    python benchmarks/scale.py [--sizes 10 100 1000] [--coupled 300] [--kinds per-workload pooled]
                               [--solver highs] [--gap 0.001] [--time-limit 60] [--no-unpruned-above 100]
                               [--no-warm-start] [--solve-limit] [--spot-share S]

Each random fleet (80 % online, 20 % offline, 8 models) is solved with replicas per workload
(``share_replicas: false``, the fleet MILP of issue 2: one block per workload, most solved in closed form by
``fastpath.py``) and with replicas pooled across the workloads of a model (``share_replicas: true``, a harder
bin-packing); without quotas or budgets it splits into one block per model (and one per offline workload).
``--coupled N`` adds a coupled fleet: N online workloads, pooled replicas, spot and on-demand, GPU quotas
(A100, A100-80GB), an instance quota (AWS spot) and an hourly budget, all binding, so the MILP is one block.

``--time-limit`` covers the whole run, as ``infersave plan --time-limit`` does: the solve gets the limit less the
time spent building candidates and the model (``--solve-limit``: the limit caps the solve alone). Each case runs
in a fresh process (not a daemon: candidates and blocks may go to two forked workers, see ``INFERSAVE_WORKERS``).
Prints per case: candidate rows, MILP size, candidate/build/solve/total seconds, status, objective and proven
bound (USD over the 24 h horizon), gap, ``peak MiB`` (ru_maxrss of the case's process) and ``tree MiB`` (the
peak proportional set size of that process and its workers together, sampled every 50 ms on Linux: pages shared
after a fork count once).

Measured on this 2-core machine with nothing else running (the README's scale section has the table):
``--sizes 1000 --time-limit 10``: per workload optimal in 3.1-3.2 s, pooled 8.9e-04 gap in 8.5-8.6 s;
``--sizes 10000 --kinds per-workload --no-unpruned-above 0 --time-limit 60``: optimal in 18.1-19.5 s, tree peak
2.1-2.2 GB. With another job on one of the two cores, the workers compete with it and the runs take ~1.5-2x.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from solver.backends import components, solve  # noqa: E402
from solver.candidates import build_candidates  # noqa: E402
from solver.errors import SolverFailure  # noqa: E402
from solver.extract import SolveOptions, solve_time_left  # noqa: E402
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


# Limits of the coupled fleet, per 300 workloads (scaled with the fleet size): unconstrained, the 300-workload
# optimum costs 745.1 USD/h (shipped calibration of 1162 rows); the GPU and AWS-spot quotas bind it (852 USD/h at a
# 1 % gap) and the budget leaves ~9 % above that, as it did with the earlier calibration (585 -> 668.5 USD/h, 745).
COUPLED_LIMITS = dict(a100_gpus=1100, a100_80gb_gpus=200, aws_spot_instances=120, usd_per_hour=925.0)


def coupled_fleet(n: int, seed: int = 0) -> Scenario:
    """``random_fleet``'s workloads, all online (offline jobs become online workloads with a random rate and a
    5 s / 100 ms SLO), pooled, spot and on-demand, with binding GPU and instance quotas and an hourly budget."""
    rng = np.random.default_rng(seed + 1)
    workloads = []
    for w in random_fleet(n, seed, share=True).workloads:
        d = w.model_dump(exclude_none=True, exclude_defaults=True)
        if d.get("mode") == "offline":
            for key in ("mode", "num_requests", "deadline_hours"):
                d.pop(key)
            d |= dict(request_rate_per_s=float(np.round(rng.uniform(0.2, 20), 2)),
                      slo=dict(max_ttft_s=5.0, max_tpot_s=0.1))
        workloads.append(d)
    k = n / 300
    lim = COUPLED_LIMITS
    quotas = [dict(gpu="A100", max_gpus=round(lim["a100_gpus"] * k)),
              dict(gpu="A100-80GB", max_gpus=round(lim["a100_80gb_gpus"] * k)),
              dict(cloud="aws", pricing="spot", max_instances=round(lim["aws_spot_instances"] * k))]
    return Scenario(name=f"coupled-{n}", workloads=workloads, pricing="both", horizon_hours=24, share_replicas=True,
                    quotas=quotas, budget_usd_per_hour=lim["usd_per_hour"] * k)


def coupled_yaml(n: int) -> str:
    """The coupled fleet as a scenario file (``benchmarks/coupled_300.yaml`` is this for 300 workloads)."""
    head = (f"# The coupled {n}-workload fleet of benchmarks/scale.py (``--coupled {n}``), written by\n"
            f"# ``python benchmarks/scale.py --write-coupled FILE``: plan it with\n"
            f"# ``infersave plan FILE --time-limit 60``.\n")
    return head + yaml.safe_dump(coupled_fleet(n).model_dump(mode="json", exclude_none=True, exclude_defaults=True),
                                 sort_keys=False)


def run(n: int, kind: str, prune: bool, backend: str, gap: float, time_limit: float | None,
        warm: bool, whole_run: bool = True, spot_share: float | None = None) -> str:
    os.environ["INFERSAVE_WARM_START"] = "1" if warm else "0"
    sc = coupled_fleet(n) if kind == "coupled" else random_fleet(n, share=kind == "pooled")
    if spot_share is not None:  # one block: the share couples every pool, spot and on-demand, online and offline
        sc = sc.model_copy(update={"max_spot_share": spot_share})
    started = time.perf_counter()
    resolved = resolve(sc)
    t0 = time.perf_counter()
    cands = build_candidates(resolved.scenario, resolved.instances, resolved.models, resolved.calibration,
                             prune=prune)
    t1 = time.perf_counter()
    problem = build_problem(cands.table, resolved.scenario)
    t2 = time.perf_counter()
    m = problem.model
    blocks = len(components(m))
    try:
        left = solve_time_left(SolveOptions(time_limit_s=time_limit, started=started)) if whole_run else time_limit
        result = solve(m, backend, mip_gap=gap, time_limit_s=left)
        status, objective, bound, rgap = result.status.value, result.objective, result.bound, result.gap
    except SolverFailure:
        status, objective, bound, rgap = "limit spent", None, None, None
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def num(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    return (f"{n:>6} {kind:>12} {'yes' if prune else 'no':>5} {len(cands.table):>8} {len(m.names):>8} "
            f"{m.n_integer:>7} {len(m.rows):>8} {blocks:>6} {t1 - t0:>7.2f} {t2 - t1:>7.2f} {t3 - t2:>7.2f} "
            f"{t3 - started:>7.2f} {status:>11} {num(objective, '12.2f')} {num(bound, '12.2f')} "
            f"{num(rgap, '9.2e')} {peak:>8.0f}")


def _tree_pss_mib(pid: int) -> float:
    """Proportional set size of a process and its descendants (MiB): pages shared after a fork count once."""
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next((float(line.split()[1]) for line in f if line.startswith("Pss:")), 0.0) / 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def _case(args: tuple, out: multiprocessing.queues.Queue[str]) -> None:
    """One case in this (fresh, non-daemonic: it may start workers) process; the line goes to ``out``. Memory:
    ru_maxrss of this process, and (Linux) the peak PSS of it and its worker processes, sampled every 50 ms."""
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _tree_pss_mib(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    if os.path.exists("/proc/self/smaps_rollup"):
        sampler.start()
    line = run(*args)
    done.set()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(f"{line} {max(peak[0], own):>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--coupled", type=int, nargs="*", default=[], help="sizes of coupled fleets")
    parser.add_argument("--kinds", nargs="+", default=["per-workload", "pooled"],
                        choices=["per-workload", "pooled"], help="random fleets to run per size")
    parser.add_argument("--solver", default="highs")
    parser.add_argument("--gap", type=float, default=1e-3)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per case, whole run")
    parser.add_argument("--no-unpruned-above", type=int, default=100,
                        help="skip the unpruned run for fleets larger than this (memory)")
    parser.add_argument("--no-warm-start", action="store_true", help="no MIP start for HiGHS")
    parser.add_argument("--solve-limit", action="store_true",
                        help="--time-limit caps the solve alone (to measure the solver when candidates are slow)")
    parser.add_argument("--spot-share", type=float, default=None, metavar="S",
                        help="give every fleet max_spot_share S (at most a share S of GPU-hours on spot)")
    parser.add_argument("--write-coupled", type=Path, metavar="YAML",
                        help="write the 300-workload coupled fleet as a scenario file and exit")
    args = parser.parse_args()
    if args.write_coupled:
        args.write_coupled.write_text(coupled_yaml(300), encoding="utf-8")
        return
    sizes = args.sizes + args.coupled
    if (sizes and min(sizes) < 1) or args.time_limit <= 0 or not 0 <= args.gap <= 1 or args.no_unpruned_above < 0 \
            or not 0 <= (args.spot_share or 0.0) <= 1:
        parser.error("sizes must be >= 1, --time-limit > 0, --gap and --spot-share in [0, 1], --no-unpruned-above >= 0")
    print(f"{'fleet':>6} {'kind':>12} {'prune':>5} {'kept':>8} {'vars':>8} {'ints':>7} {'rows':>8} {'blocks':>6} "
          f"{'cand s':>7} {'build s':>7} {'solve s':>7} {'total s':>7} {'status':>11} {'objective':>12} "
          f"{'bound':>12} {'gap':>9} {'peak MiB':>8} {'tree MiB':>9}")
    cases = []
    for n in args.sizes:
        for kind in args.kinds:
            cases.append((n, kind, True))
            if n <= args.no_unpruned_above:
                cases.append((n, kind, False))
    cases += [(n, "coupled", True) for n in args.coupled]
    ctx = multiprocessing.get_context("spawn")
    for n, kind, prune in cases:
        out = ctx.Queue()  # a fresh process per case: its peaks are this case's own
        proc = ctx.Process(target=_case, args=((n, kind, prune, args.solver, args.gap, args.time_limit,
                                                not args.no_warm_start, not args.solve_limit, args.spot_share), out))
        proc.start()
        print(out.get(), flush=True)
        proc.join()


if __name__ == "__main__":
    main()
