"""Mélange's problem class: generated instances solved with our MILP, beside Mélange's own ILP (PuLP + CBC).

Instances are Mélange configs (``gpu_info``, ``workload_distribution``, ``total_request_rate``,
``slice_factor``): square grids of 2x2 to 10x10 request-size buckets, 4 or 6 GPU types, slice factors 1 and 4,
several seeds. Prices are per-GPU on-demand list prices (L4 0.70, A10G 1.01, L40S 1.86, A100-40GB 2.94,
A100-80GB 3.67, H100 7.50 USD/h). Throughputs come from a small roofline of an 8B GQA model in fp16 (weights
16 GB, KV 128 KiB/token): batch limited by KV memory and a 100 ms TPOT bound, prefill at half the dense fp16
peak, decode at 70 % of HBM bandwidth, with +-10 % log-normal noise per cell; a GPU whose prefill of the
bucket's input misses a 4 s TTFT bound, or whose KV cannot hold one request, gets tput 0 (some long-input
buckets on L4 / A10G). Input lengths 64..32768 and output lengths 16..2048 tokens, geometric. Traffic is a
Dirichlet(0.6) mix over the buckets, total rate 20..200 requests/s.

For each instance it prints: grid, GPU types, slice factor, seed, our status, cost (USD/h), gap and time
(candidate table + MILP build + solve + plan extraction + independent check), Mélange's ILP time and whether
both optima are equal, and the fractional-split cost. Then a summary per size and the target check (every
instance up to 8x8 x 6 types x slice 4 optimal in <= 1 s), and a time-limited solve of a very large instance.

    python benchmarks/melange_class.py            # all sizes, 5 seeds, Mélange ILP up to 8x8
    python benchmarks/melange_class.py --quick    # 2 seeds, sizes 2, 4, 6, 8

Mélange's ILP is re-expressed from melange/solver.py of github.com/tyler-griggs/melange-release: binary
x[slice, gpu] (a bucket's rate cut into ``slice_factor`` equal slices), integer y[gpu], min sum cost*y,
each slice on exactly one GPU, per GPU sum x * slice_rate / tput <= y. Upstream divides by zero on a zero
tput; here such x are fixed to 0 (the same meaning our importer gives a zero tput).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from solver.melange import Melange, gpu_counts, parse_melange, solve_melange  # noqa: E402

# name: (USD/h per GPU, memory GiB, HBM GB/s, dense fp16 TFLOPS)
GPUS = {
    "A10G": (1.01, 24, 600, 70),
    "L4": (0.70, 24, 300, 121),
    "A100-80GB": (3.67, 80, 2039, 312),
    "H100": (7.50, 80, 3350, 990),
    "L40S": (1.86, 48, 864, 362),
    "A100-40GB": (2.94, 40, 1555, 312),
}
WEIGHTS_GB, KV_BYTES_PER_TOKEN, PARAMS = 16.0, 131072.0, 8e9
MAX_BATCH, TPOT_MAX_S, TTFT_MAX_S, MEM_UTIL = 256, 0.1, 4.0, 0.9


def lengths(n: int, lo: int, hi: int) -> np.ndarray:
    return np.round(lo * (hi / lo) ** (np.arange(n) / max(n - 1, 1))).astype(int)


def gpu_tputs(gpu: str, ins: np.ndarray, outs: np.ndarray, rng: np.random.Generator) -> list[list[float]]:
    _cost, mem, bw, tflops = GPUS[gpu]
    kv_budget = mem * 1.073741824 * MEM_UTIL - WEIGHTS_GB  # GB for KV
    prefill_tok_s = tflops * 1e12 * 0.5 / (2 * PARAMS)
    out = []
    for i in ins:
        row = []
        for o in outs:
            tokens = i + o
            batch = min(MAX_BATCH, int(kv_budget * 1e9 // (tokens * KV_BYTES_PER_TOKEN)))
            ctx = i + o / 2

            def step(b: int) -> float:
                return (WEIGHTS_GB * 1e9 + b * ctx * KV_BYTES_PER_TOKEN) / (bw * 1e9 * 0.7)

            while batch >= 1 and step(batch) > TPOT_MAX_S:
                batch -= max(1, batch // 8)
            if batch < 1 or i / prefill_tok_s > TTFT_MAX_S:
                row.append(0.0)
                continue
            seconds = batch * i / prefill_tok_s + o * step(batch)
            row.append(round(float(batch / seconds * rng.lognormal(0.0, 0.1)), 4))
        out.append(row)
    return out


def instance(n: int, n_gpus: int, slice_factor: int, seed: int, rate: float | None = None) -> Melange:
    rng = np.random.default_rng([n, n_gpus, slice_factor, seed])
    ins, outs = lengths(n, 64, 32768), lengths(n, 16, 2048)
    names = list(GPUS)[:n_gpus]
    gpu_info = {g: {"cost": GPUS[g][0], "tputs": gpu_tputs(g, ins, outs, rng)} for g in names}
    dist = rng.dirichlet(np.full(n * n, 0.6))
    dist[dist < 0.1 / (n * n)] = 0.0  # some empty buckets
    dist = dist / dist.sum()
    data = {"gpu_info": gpu_info, "workload_distribution": dist.reshape(n, n).tolist(),
            "total_request_rate": float(rate if rate is not None else round(rng.uniform(20, 200), 1)),
            "slice_factor": slice_factor}
    return parse_melange(data, f"gen-{n}x{n}-g{n_gpus}-s{slice_factor}-seed{seed}")


def melange_ilp(m: Melange, time_limit_s: float | None = 60.0, threads: int | None = None) -> tuple[float | None, float, str]:
    """Mélange's own formulation (melange/solver.py), with PuLP and CBC: (cost or None, seconds, status)."""
    import pulp

    s = m.spec
    gpu_types = list(s.gpu_info)
    cost_vector = [s.gpu_info[g].cost for g in gpu_types]
    slices, slice_tputs = [], {g: [] for g in gpu_types}
    for i, row in enumerate(s.workload_distribution):
        for j, f in enumerate(row):
            for _ in range(s.slice_factor):
                slices.append(f * s.total_request_rate / s.slice_factor)
                for g in gpu_types:
                    slice_tputs[g].append(s.gpu_info[g].tputs[i][j])
    start = time.perf_counter()
    x = [[pulp.LpVariable(f"x_{i}_{j}", cat=pulp.LpInteger, lowBound=0,
                          upBound=1 if slice_tputs[gpu_types[j]][i] > 0 else 0)
          for j in range(len(gpu_types))] for i in range(len(slices))]
    y = [pulp.LpVariable(f"y_{j}", cat=pulp.LpInteger, lowBound=0) for j in range(len(gpu_types))]
    problem = pulp.LpProblem("GpuAllocation", pulp.LpMinimize)
    problem += pulp.lpSum([y[j] * cost_vector[j] for j in range(len(y))])
    for i in range(len(x)):
        problem += pulp.lpSum(x[i]) == 1
    for j, g in enumerate(gpu_types):
        problem += pulp.lpSum([x[i][j] * (1.0 / slice_tputs[g][i]) * slices[i]
                               for i in range(len(x)) if slice_tputs[g][i] > 0]) <= y[j]
    problem.solve(pulp.PULP_CBC_CMD(msg=0, timeLimit=time_limit_s, threads=threads))
    wall = time.perf_counter() - start
    status = pulp.LpStatus[problem.status]
    if status != "Optimal" or problem.sol_status != pulp.LpSolutionOptimal:
        return None, wall, "time_limit" if status in ("Optimal", "Not Solved") else status.lower()
    return float(sum(y[j].value() * cost_vector[j] for j in range(len(y)))), wall, "optimal"


def run_one(m: Melange, melange_limit: float | None, threads: int) -> dict:
    start = time.perf_counter()
    plan = solve_melange(m, threads=threads)
    ours_s = time.perf_counter() - start
    frac = solve_melange(m, fractional=True, threads=threads)
    row = dict(name=m.path, n=m.shape[0], gpus=len(m.gpus), slice=m.spec.slice_factor, status=plan.status,
               cost=plan.objective, gap=plan.gap or 0.0, ours_s=ours_s, solve_s=plan.solver.wall_s,
               frac_cost=frac.objective, counts=gpu_counts(plan), mel_cost=None, mel_s=None, mel_status="skipped")
    assert frac.objective <= plan.objective + 1e-6, (m.path, frac.objective, plan.objective)
    if melange_limit is not None:
        row["mel_cost"], row["mel_s"], row["mel_status"] = melange_ilp(m, melange_limit)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, grids 2, 4, 6, 8")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-grid", type=int, default=10)
    ap.add_argument("--grids", type=int, nargs="*", help="only these grid sizes (e.g. --grids 8)")
    ap.add_argument("--melange-up-to", type=int, default=8, help="run Mélange's ILP on grids up to this size")
    ap.add_argument("--melange-limit", type=float, default=30.0, help="CBC time limit for Mélange's ILP (s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--big", type=int, default=40, help="grid of the time-limited demonstration (0: skip it)")
    ap.add_argument("--big-limit", type=float, default=0.5, help="time limit of the demonstration (s)")
    args = ap.parse_args()
    if args.seeds < 1 or args.max_grid < 1 or args.big < 0 or args.big_limit <= 0 or args.threads < 1:
        ap.error("--seeds, --max-grid and --threads must be >= 1, --big >= 0 and --big-limit > 0")
    if args.grids is not None and (not args.grids or min(args.grids) < 1):
        ap.error("--grids takes grid sizes >= 1")
    grids = args.grids or ([2, 4, 6, 8] if args.quick else list(range(2, args.max_grid + 1)))
    seeds = range(2 if args.quick else args.seeds)
    print(f"cores visible: {os.cpu_count()}, threads: {args.threads}")
    head = (f"{'grid':>5} {'gpus':>4} {'slc':>3} {'seed':>4} {'status':>8} {'cost $/h':>10} {'gap':>8} {'ours s':>7} "
            f"{'melange s':>9} {'equal':>5} {'frac $/h':>10}  GPUs")
    print(head)
    print("-" * len(head))
    rows = []
    for n in grids:
        for n_gpus in (4, 6):
            for sf in (1, 4):
                for seed in seeds:
                    m = instance(n, n_gpus, sf, seed)
                    r = run_one(m, args.melange_limit if n <= args.melange_up_to else None, args.threads)
                    rows.append(r)
                    equal = "n/a" if r["mel_cost"] is None else (
                        "yes" if abs(r["mel_cost"] - r["cost"]) <= 1e-6 * max(1, r["cost"]) else "NO")
                    mel = "-" if r["mel_s"] is None else f"{r['mel_s']:.2f}" + ("*" if r["mel_cost"] is None else "")
                    counts = " ".join(f"{g}:{c}" for g, c in sorted(r["counts"].items()))
                    print(f"{n}x{n:<3} {n_gpus:>4} {sf:>3} {seed:>4} {r['status']:>8} {r['cost']:>10.2f} "
                          f"{r['gap']:>8.1e} {r['ours_s']:>7.3f} {mel:>9} {equal:>5} {r['frac_cost']:>10.2f}  {counts}",
                          flush=True)
    print("\n(* = Mélange's ILP hit its CBC time limit without proving optimality)\n")
    print("summary per size (over seeds): our max time, Mélange ILP max time, all optimal, equal optima, "
          "mean fractional saving")
    print(f"{'grid':>5} {'gpus':>4} {'slc':>3} {'ours max s':>10} {'melange max s':>13} {'optimal':>8} {'equal':>7} "
          f"{'frac saving':>11}")
    for n in grids:
        for n_gpus in (4, 6):
            for sf in (1, 4):
                grp = [r for r in rows if r["n"] == n and r["gpus"] == n_gpus and r["slice"] == sf]
                if not grp:
                    continue
                mel = [r["mel_s"] for r in grp if r["mel_s"] is not None]
                comp = [r for r in grp if r["mel_cost"] is not None]
                eq = sum(abs(r["mel_cost"] - r["cost"]) <= 1e-6 * max(1, r["cost"]) for r in comp)
                timeouts = sum(r["mel_s"] is not None and r["mel_cost"] is None for r in grp)
                saving = np.mean([1 - r["frac_cost"] / r["cost"] for r in grp])
                mel_text = (f"{max(mel):.2f}" + (f" ({timeouts} TL)" if timeouts else "")) if mel else "-"
                print(f"{n}x{n:<3} {n_gpus:>4} {sf:>3} {max(r['ours_s'] for r in grp):>10.3f} {mel_text:>13} "
                      f"{sum(r['status'] == 'optimal' for r in grp):>4}/{len(grp):<3} "
                      f"{(f'{eq}/{len(comp)}' if comp else '-'):>7} {saving:>10.1%}")
    target = [r for r in rows if r["n"] <= 8]
    ok = all(r["status"] == "optimal" and r["ours_s"] <= 1.0 for r in target)
    mismatch = [r["name"] for r in rows if r["mel_cost"] is not None
                and abs(r["mel_cost"] - r["cost"]) > 1e-6 * max(1, r["cost"])]
    at8 = [r for r in rows if r["n"] == 8 and r["gpus"] == 6 and r["slice"] == 4]
    print(f"\ninstances: {len(rows)}; optimal: {sum(r['status'] == 'optimal' for r in rows)}; "
          f"max time overall {max(r['ours_s'] for r in rows):.3f} s")
    if at8:
        mel8 = [r["mel_s"] for r in at8 if r["mel_s"] is not None]
        print(f"8x8 x 6 GPUs x slice 4 over {len(at8)} seeds: ours max {max(r['ours_s'] for r in at8):.3f} s "
              f"(mean {np.mean([r['ours_s'] for r in at8]):.3f} s); Mélange ILP (CBC) "
              + (f"max {max(mel8):.2f} s (mean {np.mean(mel8):.2f} s)" if mel8 else "not run"))
    if target:
        worst = max(target, key=lambda r: r["ours_s"])
        print(f"target (every instance up to 8x8 x 6 GPUs x slice 4 optimal in <= 1 s): {'PASS' if ok else 'FAIL'} "
              f"(worst {worst['name']}: {worst['status']}, {worst['ours_s']:.3f} s)")
    else:
        print("target (every instance up to 8x8 x 6 GPUs x slice 4 optimal in <= 1 s): not run (no grid <= 8)")
    print(f"optimal cost equal to Mélange's ILP wherever it proved optimality: "
          f"{'yes' if not mismatch else 'NO: ' + ', '.join(mismatch)}")

    if args.big == 0:
        print("\ntime-limited demo: skipped (--big 0)")
        return 0 if ok and not mismatch else 1
    big = instance(args.big, 6, 16, 0, rate=2000.0)
    start = time.perf_counter()
    plan = solve_melange(big, time_limit_s=args.big_limit, threads=args.threads)
    wall = time.perf_counter() - start
    print(f"\ntime-limited demo: {args.big}x{args.big} buckets x 6 GPUs x slice 16, 2000 req/s, limit "
          f"{args.big_limit} s -> status {plan.status}, cost {plan.objective:.2f} $/h, bound {plan.bound}, gap "
          f"{plan.gap if plan.gap is None else f'{plan.gap:.2%}'}, {wall:.2f} s wall, "
          f"{len(plan.assignments)} assignments, GPUs {gpu_counts(plan)}")
    return 0 if ok and not mismatch else 1


if __name__ == "__main__":
    raise SystemExit(main())
