"""Request-level simulator: speed, and the analytic continuous-batching model against it.

    python benchmarks/simulate.py [--requests 100000] [--compare-requests 15000] [--plan-requests 150000] [--seed 0]

1. Speed: requests simulated per second at ``--requests`` requests (llama-3.1-8b on H100, vLLM, 128 slots,
   1024 -> 256 tokens, Poisson at 10 %, 50 % and 90 % of the analytic capacity).
2. Accuracy of ``serving.online_state``: for (model, GPU, tp) pairs under calibration PRIORS and vLLM, at
   10..90 % of ``serving.online_capacity`` (no SLO: the concurrency-cap limit), the analytic mean and p99 TTFT
   and TPOT against the simulator's (Poisson arrivals, first 10 % of requests dropped as warm-up). Rows where
   they differ by more than 10 % are flagged with ``*``; the simulator is the reference.
3. Every bundled scenario with online workloads: the plan's promise (``slo_report``: each bound's statistic
   predicted at the planned load, shipped calibration) against the simulated statistic of the same plan, at
   ``--plan-requests`` requests: pools planned near their knee queue in long excursions, and 15,000 requests
   left a mean wait up to 2.8x off its converged value.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

import solver
from solver.calibration import PRIORS
from solver.catalog import find_gpu, find_model
from solver.engines import find_engine
from solver.errors import PlannerError
from solver.resources import scenario_dir
from solver.promise import slo_report
from solver.roofline import Hardware
from solver.scenario import Resolved
from solver.serving import Shape, online_capacity, online_state
from solver.simulate import simulate_replica
from solver.simulate_report import kv_capacity_tokens, simulate_plan

PAIRS = [("llama-3.1-8b", "H100", 1), ("llama-3.1-8b", "A10G", 1), ("llama-3.1-8b", "L4", 1),
         ("llama-3.1-70b", "A100-80GB", 4)]
LOADS = (0.1, 0.3, 0.5, 0.7, 0.9)
L_IN, L_OUT = 1024, 256
ENGINE = find_engine("vllm")


def shape_of(model: str, gpu: str, tp: int) -> tuple[Shape, np.ndarray]:
    hw = Hardware.from_specs([find_gpu(gpu)], "fp16")
    shape = Shape(find_model(model), hw, "fp16", "fp16", np.array([tp]), np.array([L_IN]), np.array([L_OUT]),
                  np.array([0.0]))
    return shape, PRIORS.theta_rows(ENGINE, [gpu], "fp16")


def slots_for(shape: Shape) -> int:
    """Concurrency cap: 128, or what the KV memory holds at full length (what a planner would pick)."""
    return int(max(1, min(128, kv_capacity_tokens(shape, 0.9) // (L_IN + L_OUT))))


def speed(n: int, seed: int) -> None:
    shape, theta = shape_of("llama-3.1-8b", "H100", 1)
    cap = float(online_capacity(shape, theta, ENGINE, np.array([128.0]), {}, {})[0])
    print(f"speed: llama-3.1-8b / H100, 128 slots, {L_IN}->{L_OUT} tokens, {n:,} Poisson requests "
          f"(capacity {cap:.2f} req/s)")
    for frac in LOADS[::2]:
        arr = np.cumsum(np.random.default_rng(seed).exponential(1.0 / (frac * cap), n))
        t0 = time.perf_counter()
        r = simulate_replica(shape, theta[0], ENGINE, 128, arr, np.full(n, L_IN), np.full(n, L_OUT))
        wall = time.perf_counter() - t0
        print(f"  load {frac:4.0%}: {wall:6.2f} s, {n / wall:10,.0f} requests/s, {r.iterations:,} iterations")


def compare(n: int, seed: int) -> list[tuple]:
    print(f"\nanalytic online_state vs simulator ({n:,} requests per point, {L_IN}->{L_OUT} tokens, vLLM, PRIORS; "
          "* = differs by > 10 %)")
    head = f"{'model':<14}{'gpu':<10}{'tp':>3}{'slots':>6}{'load':>6}{'rate/s':>8}"
    for m in ("TTFT mean", "TTFT p99", "TPOT mean", "TPOT p99"):
        head += f"{m + ' an/sim ms':>26}"
    print(head)
    rows = []
    for model, gpu, tp in PAIRS:
        shape, theta = shape_of(model, gpu, tp)
        slots = slots_for(shape)
        cap = float(online_capacity(shape, theta, ENGINE, np.array([float(slots)]), {}, {})[0])
        for frac in LOADS:
            rate = frac * cap
            arr = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))
            r = simulate_replica(shape, theta[0], ENGINE, slots, arr, np.full(n, L_IN), np.full(n, L_OUT))
            keep = slice(n // 10, None)
            sim = [np.mean(r.ttft_s[keep]), np.percentile(r.ttft_s[keep], 99),
                   np.mean(r.tpot_s[keep]), np.percentile(r.tpot_s[keep], 99)]
            mean = online_state(shape, theta, ENGINE, np.array([float(slots)]), np.array([rate]), {})
            p99 = online_state(shape, theta, ENGINE, np.array([float(slots)]), np.array([rate]),
                               {"ttft": "p99", "tpot": "p99"})
            ana = [mean.ttft_s[0], p99.ttft_s[0], mean.tpot_s[0], p99.tpot_s[0]]
            line = f"{model:<14}{gpu:<10}{tp:>3}{slots:>6}{frac:>6.0%}{rate:>8.2f}"
            for a, s in zip(ana, sim):
                flag = "*" if not abs(a / s - 1.0) <= 0.10 else " "
                line += f"{a * 1e3:>11.1f} /{s * 1e3:>9.1f} {a / s - 1:+5.0%}{flag}"[-26:]
            print(line)
            rows.append((model, gpu, tp, slots, frac, rate, *ana, *sim))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--compare-requests", type=int, default=15000)
    ap.add_argument("--plan-requests", type=int, default=150_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenarios", type=Path, nargs="*", default=None,
                    help="scenario files for part 3 (default: the bundled online scenarios)")
    args = ap.parse_args()
    if min(args.requests, args.compare_requests, args.plan_requests) < 100:
        ap.error("--requests, --compare-requests and --plan-requests must be >= 100")
    speed(args.requests, args.seed)
    compare(args.compare_requests, args.seed)
    bundled(args.scenarios or BUNDLED, args.plan_requests, args.seed)


BUNDLED = [scenario_dir() / f"{name}.yaml"
           for name in ("chat_fleet", "mixed_spot_quota", "bucketed_mix", "sweep_base")]


def at_p99(resolved: Resolved) -> Resolved:
    """The same scenario with every latency bound held at p99 (to read the model's p99 at the planned load)."""
    workloads = [w.model_copy(update={"slo": w.slo.model_copy(update={
        "percentile": "p99", "ttft_percentile": None, "tpot_percentile": None, "e2e_percentile": None})})
        for w in resolved.scenario.workloads]
    return dataclasses.replace(resolved, scenario=resolved.scenario.model_copy(update={"workloads": workloads}))


def bundled(paths: list[Path], requests: int, seed: int) -> None:
    """The plan's promise against the simulator on each scenario: the statistic each SLO bound is held at, and the
    p99 of the same bounds (the model's p99 at the planned load against the replay's)."""
    print(f"\nplan promise vs simulator at the planned load ({requests:,} requests per scenario; * = > 10 %)")
    print(f"{'scenario':18s} {'workload':16s} {'metric':6s} {'stat':5s} {'bound ms':>9s} {'promised ms':>12s} "
          f"{'simulated ms':>13s} {'diff':>6s}   {'p99 model ms':>12s} {'p99 sim ms':>11s} {'diff':>6s}")
    for path in paths:
        try:
            plan = solver.plan(str(path))
        except PlannerError as exc:
            print(f"{path.stem:18s} no plan: {exc}")
            continue
        resolved = solver.load_scenario(str(path))
        p99 = {(p.workload, p.metric): p.predicted_s for p in slo_report(at_p99(resolved), plan)}
        report = simulate_plan(str(path), plan.model_dump(), requests=requests, seed=seed)
        simulated = {w["workload"]: w for w in report.workloads if w.get("mode") == "online"}
        for p in plan.slo_report:
            sim = simulated.get(p.workload, {}).get(p.metric, {})
            if sim.get(p.statistic) is None:
                continue
            diff = p.predicted_s / sim[p.statistic] - 1.0
            line = (f"{path.stem:18s} {p.workload:16s} {p.metric:6s} {p.statistic:5s} {p.bound_s * 1e3:9.1f} "
                    f"{p.predicted_s * 1e3:12.1f} {sim[p.statistic] * 1e3:13.1f} {diff:+6.0%}{'*' if abs(diff) > 0.10 else ' '}")
            model99, sim99 = p99.get((p.workload, p.metric)), sim.get("p99")
            if model99 is not None and sim99:
                d99 = model99 / sim99 - 1.0
                line += f"  {model99 * 1e3:12.1f} {sim99 * 1e3:11.1f} {d99:+6.0%}{'*' if abs(d99) > 0.10 else ' '}"
            print(line)


if __name__ == "__main__":
    main()
