"""``infersave`` command line. Exit codes: 0 ok, 1 infeasible / no instance meets the SLO, 2 bad input,
3 solver failure or time limit with no feasible plan. Errors are one line on stderr, never a traceback."""
from __future__ import annotations

import enum
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from pydantic import ValidationError

from .calibration import save_calibration
from .errors import InfeasibleError, InputError, NoCandidatesError, PlannerError
from .io import atomic_write_text
from .melange import load_melange, solve_melange
from .plan import plan as solver_plan
from .plan_types import Plan
from .predict import predict as solver_predict
from .recommend import recommend as solver_recommend
from .report import (plan_csv, plan_payload, plan_text, prediction_csv, prediction_text, recommendation_csv,
                     recommendation_payload, recommendation_text, summary_text, to_json)
from .scenario import load_scenario
from .sweep import SOLVED, exit_code, load_sweep, output_kind, read_results, run_sweep, summary_table, write_results
from .verify import verify as solver_verify

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "chat_fleet.yaml"

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Pick the cheapest cloud GPU VMs, batch sizes and KV offloading for LLM workloads.")


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    csv = "csv"


class Backend(str, enum.Enum):
    highs = "highs"
    cbc = "cbc"
    ortools = "ortools"
    highs_pulp = "highs-pulp"


def _fail(message: str, code: int) -> None:
    typer.echo(f"infersave: error: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: Callable) -> Callable:
    """Map every failure to a one-line message and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except PlannerError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; no output written", 130)
        except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback reaches the user
            _fail(f"internal error: {type(exc).__name__}: {exc}", 3)

    return wrapper


def emit(text: str, out: Optional[Path]) -> None:
    """Write to ``out`` atomically, or to stdout."""
    if out is None:
        sys.stdout.write(text)
        return
    atomic_write_text(out, text)
    typer.echo(f"wrote {out}", err=True)


@app.command()
@guarded
def recommend(scenario: Path = typer.Argument(..., help="scenario YAML (its first workload, or --workload)"),
              workload: Optional[str] = typer.Option(None, help="workload name in the scenario"),
              format: Format = typer.Option(Format.table, "--format", "-f"),
              out: Optional[Path] = typer.Option(None, "--out", "-o")) -> None:
    """Rank every instance for one workload and pick the cheapest that meets its SLO (the paper's pipeline)."""
    rec = solver_recommend(load_scenario(scenario), workload)
    text = {Format.json: lambda: to_json(recommendation_payload(rec)), Format.csv: lambda: recommendation_csv(rec),
            Format.table: lambda: recommendation_text(rec)}[format]()
    emit(text, out)
    if rec.choice is None:
        raise typer.Exit(1)


@app.command()
@guarded
def plan(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="fleet scenario YAML (default: bundled chat fleet)"),
         solver: Backend = typer.Option(Backend.highs, "--solver", help="MILP back end"),
         time_limit: Optional[float] = typer.Option(None, "--time-limit", min=0.1, help="seconds"),
         mip_gap: float = typer.Option(1e-6, "--mip-gap", min=0.0, max=1.0),
         no_prune: bool = typer.Option(False, "--no-prune", help="keep dominated candidates"),
         no_timings: bool = typer.Option(False, "--no-timings", help="omit wall times (byte-identical output)"),
         from_melange: bool = typer.Option(False, "--from-melange", help="SCENARIO is a Melange input JSON"),
         melange_fractional: bool = typer.Option(False, "--melange-fractional",
                                                 help="with --from-melange: split buckets freely, not by slices"),
         dump_lp: Optional[Path] = typer.Option(None, "--dump-lp", metavar="FILE",
                                                help="write the MILP there (.mps: MPS, else LP format)"),
         format: Format = typer.Option(Format.table, "--format", "-f"),
         out: Optional[Path] = typer.Option(None, "--out", "-o")) -> None:
    """Solve the fleet MILP: which VMs to rent, with what batch and KV offload, at minimum cost."""
    options: dict[str, Any] = dict(solver=solver.value, time_limit_s=time_limit, mip_gap=mip_gap, prune=not no_prune,
                   timings=not no_timings, dump_lp=dump_lp)
    try:
        if from_melange:
            result = solve_melange(load_melange(scenario), fractional=melange_fractional, **options)
        else:
            result = solver_plan(load_scenario(scenario), **options)
    except (InfeasibleError, NoCandidatesError) as exc:
        if format is Format.json:
            emit(to_json({"status": "infeasible", "objective": None, "gap": None, "message": str(exc),
                          "assignments": []}), out)
        _fail(str(exc), 1)
        return
    text = {Format.json: lambda: to_json(plan_payload(result)), Format.csv: lambda: plan_csv(result),
            Format.table: lambda: plan_text(result)}[format]()
    emit(text, out)


@app.command()
@guarded
def verify(scenario: Path = typer.Argument(...), plan_file: Path = typer.Argument(..., metavar="PLAN.json")) -> None:
    """Re-check a JSON plan against its scenario, independently of the MILP; exit 1 listing violations."""
    resolved = load_scenario(scenario)
    try:
        data = json.loads(plan_file.read_text(encoding="utf-8"))
        plan_obj = Plan.model_validate(data)
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise InputError(f"not a plan: {str(exc).splitlines()[0]}", path=str(plan_file)) from None
    violations = solver_verify(resolved, plan_obj)
    if violations:
        for v in violations:
            typer.echo(f"violated: {v}")
        raise typer.Exit(1)
    typer.echo(f"plan holds: {len(plan_obj.assignments)} assignments, {plan_obj.objective:.2f} USD")


@app.command()
@guarded
def predict(model: str = typer.Option(..., help="model name, HF id or config.json path"),
            gpu: Optional[str] = typer.Option(None, help="GPU name, e.g. 'A100-80GB' or 'nvidia a100 80gb'"),
            instance: Optional[str] = typer.Option(None, help="instance type, e.g. g5.xlarge"),
            gpus: Optional[int] = typer.Option(None, "--gpus", min=1, help="GPUs (tensor parallel)"),
            batch: int = typer.Option(1, "--batch", min=1), input: int = typer.Option(..., "--input", min=1),
            output: int = typer.Option(..., "--output", min=1), dtype: str = typer.Option("fp16"),
            kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype"),
            offload: Optional[float] = typer.Option(None, "--offload", min=0.0, max=1.0),
            calibration: Optional[str] = typer.Option(None, help="calibration JSON, or 'none' for the roofline"),
            format: Format = typer.Option(Format.table, "--format", "-f")) -> None:
    """Predict TTFT, TPOT, throughput and memory for one configuration (the planner's own numbers)."""
    p = solver_predict(model=model, gpu=gpu, instance=instance, gpu_count=gpus, batch_size=batch, input_tokens=input,
                       output_tokens=output, dtype=dtype, kv_dtype=kv_dtype, offload_ratio=offload,
                       calibration=calibration)
    text = {Format.json: lambda: to_json(p.model_dump()), Format.csv: lambda: prediction_csv(p),
            Format.table: lambda: prediction_text(p)}[format]()
    sys.stdout.write(text)


@app.command()
@guarded
def calibrate(measurements: Path = typer.Argument(..., help="measurements CSV"),
              out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the fitted calibration JSON"),
              test_fraction: float = typer.Option(0.3, min=0.05, max=0.9),
              seed: int = typer.Option(0)) -> None:
    """Fit the CTCF per GPU and phase; print error before/after on a held-out split, then fit on all rows."""
    from .calibrate import calibrate_report  # lazy: fitting imports scipy, which planning never needs

    text, calibration = calibrate_report(measurements, test_fraction=test_fraction, seed=seed)
    typer.echo(text)
    if out is not None:
        save_calibration(calibration, out, {"measurements": str(measurements)})
        typer.echo(f"wrote {out}", err=True)


@app.command()
@guarded
def sweep(sweep_file: Path = typer.Argument(..., metavar="SWEEP.yaml", help="sweep file: a base scenario and axes"),
          out: Path = typer.Option(..., "--out", "-o", help="results table: .parquet or .csv"),
          workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                                help="local processes (default min(2, CPUs); 1 = in process)"),
          scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                                  help="Dask scheduler address, e.g. tcp://host:8786 (needs .[dask])"),
          solver: Backend = typer.Option(Backend.highs, "--solver", help="MILP back end"),
          time_limit: Optional[float] = typer.Option(None, "--time-limit", min=0.1, help="seconds per point"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Solve a scenario over the Cartesian product of sweep axes; write one row per point x assignment.

    Exit 0 when every point has a plan, 1 when some point is infeasible (the results are still written),
    2 bad input, 3 a point hit a solver failure."""
    output_kind(out)  # a bad suffix is exit 2 before any solving
    loaded = load_sweep(sweep_file)
    df = run_sweep(loaded, workers=workers, scheduler=scheduler, solver=solver.value, time_limit_s=time_limit,
                   progress=False if quiet else None)
    write_results(df, out)
    typer.echo(f"wrote {out} ({len(df)} rows, {loaded.sweep.n_points} points)", err=True)
    summary = summary_table(df)
    sys.stdout.write(summary_text(summary, loaded.sweep.name))
    code = exit_code(df)
    if code:
        bad = summary[~summary["status"].isin(SOLVED)]
        _fail(f"{len(bad)} of {len(summary)} points have no plan ({', '.join(sorted(set(bad['status'])))}); "
              "results written", code)


@app.command()
@guarded
def plot(results: Path = typer.Argument(..., metavar="RESULTS", help="sweep results (.parquet or .csv)"),
         out: Path = typer.Option(..., "--out", "-o", help="directory for the PNG files")) -> None:
    """Draw PNGs from sweep results: cost vs SLO, fleet composition per point, cost vs price shock."""
    from .plots import plot_all  # lazy: matplotlib is slow to import

    written, skipped = plot_all(read_results(results), out)
    for path in written:
        typer.echo(f"wrote {path}", err=True)
    for name, reason in skipped.items():
        typer.echo(f"skipped {name}: {reason}", err=True)


def main() -> None:  # pragma: no cover - console entry point
    logging.basicConfig(level=logging.WARNING, format="infersave: %(levelname)s: %(message)s")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
