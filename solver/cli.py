"""``infersave`` command line. Exit codes: 0 ok, 1 infeasible / no instance meets the SLO, 2 bad input,
3 solver failure or time limit with no feasible plan. Errors are one line on stderr, never a traceback.

The CLI starts fast: only typer and the light modules are imported at start; each command imports what it uses
(pandas, the solvers, matplotlib) when it runs, so ``infersave --help`` never loads them.
"""
from __future__ import annotations

import enum
import functools
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from .console import FILE_OUT, file_output, folder_outputs, print_version, run_app
from .environment import check_environment
from .errors import InfeasibleError, InputError, NoCandidatesError, PlannerError
from .io import atomic_write_text, check_output

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,  # plain help: flags without a '<bool>' type column, and no rich import
                  help="Pick the cheapest cloud GPU VMs, batch sizes and KV offloading for LLM workloads.")


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Pick the cheapest cloud GPU VMs, batch sizes and KV offloading for LLM workloads."""


CATALOG_OPTION = typer.Option(None, "--catalog", metavar="PATH", help="catalog CSV or folder of them (SkyPilot "
                              "vms.csv too); replaces the catalog of the same cloud or adds one (repeatable)")
MODELS_OPTION = typer.Option(None, "--models", metavar="DIR", help="folder of model cards (*.yaml) or Hugging Face "
                             "config.json files; extends or overrides the shipped ones (repeatable)")


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


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map every failure to a one-line message and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            # library warnings never reach the user as extra lines (loaders turn those that mean bad input into
            # errors); INFERSAVE_DEBUG=1 shows them
            with warnings.catch_warnings(record=not os.environ.get("INFERSAVE_DEBUG")):
                if not os.environ.get("INFERSAVE_DEBUG"):
                    warnings.simplefilter("ignore")
                check_environment()
                for text, field in folder_outputs():  # typer dropped the slash of `-o newdir/`
                    raise InputError("names a folder (it ends in a path separator); give a file name", path=text,
                                     field=field)
                return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except PlannerError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; no output written", 130)
        except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback reaches the user
            _fail(f"internal error: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}", 3)  # one line

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
              catalog: Optional[list[Path]] = CATALOG_OPTION,
              models: Optional[list[Path]] = MODELS_OPTION,
              format: Format = typer.Option(Format.table, "--format", "-f"),
              out: Optional[Path] = typer.Option(None, "--out", "-o", **FILE_OUT)) -> None:
    """Rank every instance for one workload and pick the cheapest that meets its SLO (the paper's pipeline)."""
    from .recommend import recommend as solver_recommend
    from .report import recommendation_csv, recommendation_payload, recommendation_text, to_json
    from .scenario import input_files, load_scenario

    check_output(out, [scenario])
    resolved = load_scenario(scenario, catalogs=catalog or (), models=models or ())
    check_output(out, input_files(resolved))
    rec = solver_recommend(resolved, workload)
    text = {Format.json: lambda: to_json(recommendation_payload(rec)), Format.csv: lambda: recommendation_csv(rec),
            Format.table: lambda: recommendation_text(rec)}[format]()
    emit(text, out)
    if rec.choice is None:
        raise typer.Exit(1)


@app.command()
@guarded
def plan(scenario: Optional[Path] = typer.Argument(None, metavar="SCENARIO",
                                                  help="fleet scenario YAML (default: the bundled chat fleet)"),
         solver: Backend = typer.Option(Backend.highs, "--solver", help="MILP back end"),
         time_limit: Optional[float] = typer.Option(None, "--time-limit", min=0.1, help="seconds"),
         mip_gap: float = typer.Option(1e-6, "--mip-gap", min=0.0, max=1.0),
         no_prune: bool = typer.Option(False, "--no-prune", help="keep dominated candidates"),
         no_timings: bool = typer.Option(False, "--no-timings", help="omit wall times (byte-identical output)"),
         replay: int = typer.Option(0, "--replay", min=0, max=10_000_000, metavar="N",
                                    help="replay the plan with N requests; re-solve pools that miss an SLO in it"),
         from_melange: bool = typer.Option(False, "--from-melange", help="SCENARIO is a Melange input JSON"),
         melange_fractional: bool = typer.Option(False, "--melange-fractional",
                                                 help="with --from-melange: split buckets freely, not by slices"),
         dump_lp: Optional[Path] = typer.Option(None, "--dump-lp", metavar="FILE", parser=file_output("--dump-lp"),
                                                help="write the MILP there (.mps: MPS, else LP format)"),
         catalog: Optional[list[Path]] = CATALOG_OPTION,
         models: Optional[list[Path]] = MODELS_OPTION,
         format: Format = typer.Option(Format.table, "--format", "-f"),
         out: Optional[Path] = typer.Option(None, "--out", "-o", **FILE_OUT)) -> None:
    """Solve the fleet MILP: which VMs to rent, with what batch and KV offload, at minimum cost."""
    from .report import plan_csv, plan_payload, plan_text, to_json

    if scenario is None:
        from .resources import default_scenario

        scenario = default_scenario()
    options: dict[str, Any] = dict(solver=solver.value, time_limit_s=time_limit, mip_gap=mip_gap, prune=not no_prune,
                   timings=not no_timings, dump_lp=dump_lp)
    check_output(out, [scenario])
    check_output(dump_lp, [scenario, out], field="--dump-lp")
    try:
        if from_melange:
            from .melange import load_melange, solve_melange

            result = solve_melange(load_melange(scenario), fractional=melange_fractional, **options)
        else:
            from .plan import plan as solver_plan
            from .scenario import input_files, load_scenario

            resolved = load_scenario(scenario, catalogs=catalog or (), models=models or ())
            check_output(out, input_files(resolved))
            check_output(dump_lp, input_files(resolved), field="--dump-lp")
            result = solver_plan(resolved, replay_requests=replay, **options)
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
def verify(scenario: Path = typer.Argument(...), plan_file: Path = typer.Argument(..., metavar="PLAN.json"),
           simulate: bool = typer.Option(False, "--simulate", help="then replay the plan request by request"),
           requests: int = typer.Option(20000, "--requests", min=100, max=2_000_000),
           seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1)) -> None:
    """Re-check a JSON plan against its scenario, independently of the MILP; exit 1 listing violations."""
    from .planfile import load_plan
    from .scenario import load_scenario
    from .verify import verify as solver_verify

    resolved = load_scenario(scenario)
    plan_obj = load_plan(plan_file, {w.name for w in resolved.scenario.workloads}, scenario)
    violations = solver_verify(resolved, plan_obj)
    if violations:
        for v in violations:
            typer.echo(f"violated: {v}")
        raise typer.Exit(1)
    typer.echo(f"plan holds: {len(plan_obj.assignments)} assignments, {plan_obj.objective:.2f} USD")
    if simulate:
        from .simulate_report import run_simulate_command
        text, code, _ = run_simulate_command(resolved, plan_file, requests=requests, seed=seed)
        typer.echo(text)
        raise typer.Exit(code)


@app.command()
@guarded
def simulate(scenario: Path = typer.Argument(..., metavar="SCENARIO.yaml"),
             plan_file: Path = typer.Argument(..., metavar="PLAN.json"),
             requests: int = typer.Option(20000, "--requests", min=100, max=2_000_000,
                                          help="requests per online workload"),
             seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
             arrivals: str = typer.Option("poisson", "--arrivals", help="poisson | gamma:CV | trace:FILE"),
             format: Format = typer.Option(Format.table, "--format", "-f"),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the report here",
                                                **FILE_OUT)) -> None:
    """Replay a plan request by request through each replica's scheduler; exit 1 when an SLO percentile misses."""
    from .simulate_report import run_simulate_command

    check_output(out, [scenario, plan_file, arrivals[6:] if arrivals.startswith("trace:") else None])
    text, code, missed = run_simulate_command(scenario, plan_file, requests=requests, seed=seed, arrivals=arrivals,
                                              fmt="json" if format is Format.json else "table", out=out)
    typer.echo(text)
    if missed and format is Format.json:  # the table ends with it; the JSON keeps stdout one document
        typer.echo(missed, err=True)
    raise typer.Exit(code)


@app.command()
@guarded
def predict(model: str = typer.Option(..., help="model name, HF id or config.json path"),
            gpu: Optional[str] = typer.Option(None, help="GPU name, e.g. 'A100-80GB' or 'nvidia a100 80gb'"),
            instance: Optional[str] = typer.Option(None, help="instance type, e.g. g5.xlarge"),
            gpus: Optional[int] = typer.Option(None, "--gpus", min=1, help="GPUs (tensor parallel)"),
            # the bound is field_checks.MAX_BATCH, written out: the CLI's import does not load pydantic
            batch: int = typer.Option(1, "--batch", min=1, max=65_536),
            input: int = typer.Option(..., "--input", min=1),
            output: int = typer.Option(..., "--output", min=1), dtype: str = typer.Option("fp16"),
            kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype"),
            offload: Optional[float] = typer.Option(None, "--offload", min=0.0, max=1.0),
            calibration: Optional[str] = typer.Option(None, help="calibration JSON, or 'none' for the roofline"),
            catalog: Optional[list[Path]] = CATALOG_OPTION,
            models: Optional[list[Path]] = MODELS_OPTION,
            format: Format = typer.Option(Format.table, "--format", "-f")) -> None:
    """Predict TTFT, TPOT, throughput and memory for one configuration (the planner's own numbers)."""
    from .predict import predict as solver_predict
    from .report import prediction_csv, prediction_text, to_json

    p = solver_predict(model=model, gpu=gpu, instance=instance, gpu_count=gpus, batch_size=batch, input_tokens=input,
                       output_tokens=output, dtype=dtype, kv_dtype=kv_dtype, offload_ratio=offload,
                       calibration=calibration, catalogs=catalog or (), models=models or ())
    text = {Format.json: lambda: to_json(p.model_dump()), Format.csv: lambda: prediction_csv(p),
            Format.table: lambda: prediction_text(p)}[format]()
    sys.stdout.write(text)


@app.command()
@guarded
def calibrate(measurements: list[Path] = typer.Argument(..., help="measurements: our CSV schema, or vLLM "
                                                        "benchmark_serving / GuideLLM result JSON"),
              out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the fitted calibration JSON",
                                                 **FILE_OUT),
              model: Optional[str] = typer.Option(None, help="model of the JSON results (they do not record it)"),
              gpu: Optional[str] = typer.Option(None, help="GPU of the JSON results"),
              gpus: int = typer.Option(1, "--gpus", min=1, help="GPUs (tensor parallel) of the JSON results"),
              engine: str = typer.Option("vllm", help="engine of the JSON results"),
              dtype: str = typer.Option("fp16", help="weight precision of the JSON results"),
              with_published: bool = typer.Option(False, "--with-published",
                                                  help="add the shipped published measurements to yours")) -> None:
    """Fit the serving model per (engine, GPU); print held-out error (one source document out at a time)."""
    from .calibrate import calibrate_report
    from .calibration import calibration_payload, check_payload
    from .measurements import DEFAULT_MEASUREMENTS, load_measurements
    from .userbench import read_user_benchmark

    frames, paths = [], list(measurements) + ([DEFAULT_MEASUREMENTS] if with_published else [])
    check_output(out, paths)
    for path in paths:
        if path.suffix.lower() == ".json":
            if model is None or gpu is None:
                raise InputError("benchmark JSON does not record the model and GPU: give --model and --gpu",
                                 path=str(path), field="--model")
            frames.append(read_user_benchmark(path, model=model, gpu=gpu, gpu_count=gpus, engine=engine, dtype=dtype))
        else:
            frames.append(load_measurements(path))
    text, calibration = calibrate_report(paths, frames)
    typer.echo(text)
    if out is not None:
        payload = calibration_payload(calibration, {"measurements": [str(p) for p in paths]})
        check_payload(payload, out)
        atomic_write_text(out, json.dumps(payload, indent=2, sort_keys=True) + "\n")
        typer.echo(f"wrote {out}", err=True)


@app.command()
@guarded
def sweep(sweep_file: Path = typer.Argument(..., metavar="SWEEP.yaml", help="sweep file: a base scenario and axes"),
          out: Path = typer.Option(..., "--out", "-o", help="results table: .parquet or .csv", **FILE_OUT),
          workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                                help="local processes (default min(2, CPUs); 1 = in process; "
                                                     "at most the CPUs unless --force)"),
          scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                                  help="Dask scheduler address, e.g. tcp://host:8786 (needs .[dask])"),
          solver: Backend = typer.Option(Backend.highs, "--solver", help="MILP back end"),
          time_limit: Optional[float] = typer.Option(None, "--time-limit",
                                                     help="seconds per point (at most 3600)"),
          timeout: Optional[float] = typer.Option(None, "--timeout", min=1,
                                                  help="seconds for the whole sweep (default: none locally, "
                                                       "3600 on Dask)"),
          resume: bool = typer.Option(False, "--resume", help="keep the points of OUT.partial (or OUT) and solve "
                                                              "the rest"),
          force: bool = typer.Option(False, "--force", help="allow more workers than CPUs and over 10,000 points"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Solve a scenario over the Cartesian product of sweep axes; write one row per point x assignment. Exit 0 when
    every point has a plan, 1 when some is infeasible (results still written), 2 bad input, 3 a solver failure or
    time-out, 130 interrupted (Ctrl-C/SIGTERM: finished points in OUT.partial.parquet; --resume finishes them)."""
    from .report import summary_text
    from .sweep import SOLVED, SweepStopped, exit_code, summary_table
    from .sweep.command import run_sweep_to_file

    try:
        df, loaded, kept = run_sweep_to_file(sweep_file, out, workers=workers, scheduler=scheduler,
                                             solver=solver.value, time_limit_s=time_limit, timeout_s=timeout,
                                             resume=resume, force=force, progress=False if quiet else None)
    except SweepStopped as exc:
        return _fail(str(exc), exc.exit_code)
    typer.echo(f"wrote {out} ({len(df)} rows, {loaded.sweep.n_points} points"
               + (f", {kept} kept from before" if kept else "") + ")", err=True)
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
    from .plots import plot_all
    from .provenance import table_provenance
    from .sweep import read_results

    check_output(out, [results], folder=True)
    df = read_results(results)
    written, skipped = plot_all(df, out, prov=table_provenance(df, results))
    for path in written:
        typer.echo(f"wrote {path}", err=True)
    for name, reason in skipped.items():
        typer.echo(f"skipped {name}: {reason}", err=True)


@app.command()
@guarded
def report(target: Path = typer.Argument(..., metavar="PLAN.json|RESULTS.parquet", help="plan JSON or sweep table"),
           out: Path = typer.Option(..., "--out", "-o", help="HTML file to write", **FILE_OUT),
           scenario: Optional[Path] = typer.Option(None, "--scenario", help="the plan's scenario (SLO bounds)")
           ) -> None:
    """One self-contained HTML page: fleet summary, pools, run-rate and one-off costs, SLO margins, plots."""
    from .htmlreport import write_report

    check_output(out, [target, scenario])
    typer.echo(f"wrote {write_report(target, out, scenario)}", err=True)


ExportTarget = enum.Enum("ExportTarget", {"skypilot": "skypilot", "vllm": "vllm"}, type=str)


@app.command()
@guarded
def export(plan_file: Path = typer.Argument(..., metavar="PLAN.json", help="plan from 'infersave plan -f json'"),
           out_dir: Optional[Path] = typer.Argument(None, metavar="DIR", help="output folder (needed for skypilot)"),
           to: ExportTarget = typer.Option(..., "--to", help="skypilot: one YAML per pool; vllm: command lines"),
           scenario: Optional[Path] = typer.Option(None, "--scenario", help="the plan's scenario: exact lengths, KV dtype"),
           offload_flag: str = typer.Option("kv-offloading", "--offload-flag",
                                            help="kv-offloading (vLLM >= 0.11) or swap-space (older vLLM)")) -> None:
    """Turn a plan into SkyPilot service/task YAML per pool, or vLLM command lines."""
    from .export import OFFLOAD_FLAGS, pool_launches, vllm_text, write_skypilot
    from .planfile import load_plan_view

    if offload_flag not in OFFLOAD_FLAGS:
        raise InputError(f"must be one of {', '.join(OFFLOAD_FLAGS)}, got {offload_flag!r}", field="--offload-flag")
    if to is ExportTarget.skypilot and out_dir is None:
        raise InputError("--to skypilot needs an output folder: infersave export PLAN.json DIR --to skypilot")
    check_output(out_dir, [plan_file, scenario], folder=True, field="DIR")
    view = load_plan_view(plan_file)
    launches, skipped = pool_launches(view, scenario=scenario, path=str(plan_file))
    if skipped:
        typer.echo(f"skipped {len(skipped)} pool(s) without traffic in the plan (no assignment or 0 VM-hours): "
                   + ", ".join(sorted(skipped)[:3]) + (", ..." if len(skipped) > 3 else ""), err=True)
    if to is ExportTarget.vllm:
        target = None if out_dir is None else out_dir / "vllm_commands.sh"
        check_output(target, [plan_file, scenario], field="DIR")
        emit(vllm_text(view, launches, offload_flag), target)
        return
    for path in write_skypilot(view, out_dir or Path("."), launches, offload_flag):  # out_dir checked above
        typer.echo(f"wrote {path}", err=True)


catalog_app = typer.Typer(no_args_is_help=True, help="Show GPU offerings and prices; import SkyPilot catalogs.")
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("show")
@guarded
def catalog_show(gpu: Optional[str] = typer.Option(None, "--gpu", help="e.g. H100, 'a100 80gb'"),
                 cloud: Optional[str] = typer.Option(None, "--cloud"),
                 region: Optional[str] = typer.Option(None, "--region"),
                 catalog: Optional[list[Path]] = typer.Option(None, "--catalog", help="catalog CSV (repeatable)"),
                 format: Format = typer.Option(Format.table, "--format", "-f")) -> None:
    """GPU offerings: GPU, count, instance, on-demand and spot USD/h per region, catalog date (like sky show-gpus)."""
    from .catalog_tools import offerings, offerings_text
    from .io import csv_safe
    from .report import to_json

    df = offerings(catalog or None, gpu=gpu, cloud=cloud, region=region)
    render: dict[Any, Callable[[], str]] = {
        Format.json: lambda: to_json({"offerings": df.astype(object).where(df.notna(), None)
                                      .to_dict(orient="records")}),
        Format.csv: lambda: csv_safe(df).to_csv(index=False), Format.table: lambda: offerings_text(df)}
    text = render[format]()
    emit(text, None)


@catalog_app.command("import")
@guarded
def catalog_import(skypilot: Path = typer.Option(..., "--skypilot", help="SkyPilot catalog: DIR/<cloud>/vms.csv"),
                   out: Path = typer.Option(..., "--out", "-o", help="folder for <cloud>.csv"),
                   source: Optional[str] = typer.Option(None, "--source", help="URL recorded per row"),
                   retrieved: Optional[str] = typer.Option(None, "--retrieved", help="YYYY-MM-DD (default today)")
                   ) -> None:
    """Convert SkyPilot vms.csv files into this project's catalog CSVs (one row per type and region)."""
    from .catalog_tools import import_skypilot

    check_output(out, [skypilot], folder=True)
    written, reports = import_skypilot(skypilot, out, source=source, retrieved=retrieved)
    for rep in reports:
        typer.echo(rep.line(), err=True)
    for path in written:
        typer.echo(f"wrote {path}", err=True)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: usage errors (unknown option, bad choice, missing argument) are one line, exit 2."""
    logging.basicConfig(level=logging.WARNING, format="infersave: %(levelname)s: %(message)s")
    sys.exit(run_app(app, argv))


if __name__ == "__main__":  # pragma: no cover
    main()
