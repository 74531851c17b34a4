"""Scenario sweeps: solve the fleet MILP over the Cartesian product of named axes (price shocks, SLOs, demand).

A sweep file names a base scenario and the axes to vary::

    name: price-shock
    base: sweep_base.yaml            # relative to the sweep file
    axes:
      price.gpu.H100: [0.5, 1.0, 2.0]
      slo_scale: [0.5, 1, 2]
      pricing: [on_demand, both]

Axes (every value list is non-empty; the sweep is the product of all of them, in the order written):

=========================  ==============================================================================
``price.gpu.<GPU>``        multiply on-demand and spot prices of instances with that GPU (e.g. ``H100``)
``price.cloud.<cloud>``    ... of one cloud (``aws``, ``gcp``, ``azure``)
``price.family.<family>``  ... of one instance family: the type name up to a ``.``, ``-`` or ``_`` (``g6e``)
``price.type.<type>``      ... of one instance type (``p5.4xlarge``)
``price_multiplier``       ... of every instance
``reserved_discount``      multiply on-demand prices by ``1 - d`` (``0 <= d < 1``); spot prices unchanged
``spot_share``             at most this share of the fleet's GPUs on spot VMs (sets ``pricing: both``
                           unless a ``pricing`` axis says otherwise)
``pricing``                the scenario's ``on_demand`` / ``spot`` / ``both`` (workloads that pin their own
                           ``pricing`` keep it)
``slo_scale``              multiply every TTFT/TPOT/E2E bound; divide every min-TPS bound (deadlines of
                           offline jobs are not latency bounds and stay)
``demand_growth``          multiply request rates and offline request counts
``regions``                a list of region lists, e.g. ``[[us-east-1], [us-east-1, us-west-2]]``
=========================  ==============================================================================

Prices change by transforming ``Resolved.instances`` (the catalog the base scenario resolved to); the scenario
itself changes with ``model_copy``. Each point is one ``plan()`` call. A point without a plan (no instance meets
the SLO, or the limits cannot all hold) is recorded with status ``infeasible`` and its reason, never raised.

Results are a tidy table, one row per point x assignment (a point without a plan has one row with empty
assignment fields). Axis values are the columns ``axis.<name>`` (region lists are joined with ``,``), so an
axis named like a plan field (``pricing``) never clashes with the assignment's own column.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError, PlannerError, ScenarioError
from .scenario import Resolved, _line_of, load_scenario, read_yaml, validation_error
from .schema import SLO, Instance, Scenario, Workload

AXIS_PREFIX = "axis."
PRICE_KEYS = ("gpu", "cloud", "family", "type")
PLAIN_AXES = ("price_multiplier", "reserved_discount", "pricing", "spot_share", "slo_scale", "demand_growth",
              "regions")
PRICINGS = ("on_demand", "spot", "both")
POINT_FIELDS = ["status", "objective", "online_usd_per_hour", "offline_usd", "horizon_hours", "message", "wall_s"]
ASSIGNMENT_FIELDS = ["workload", "demand", "model", "pool", "cloud", "instance_type", "region", "pricing", "gpu",
                     "gpu_count", "tensor_parallel", "count", "share", "batch_size", "offload_ratio", "ttft_s",
                     "tpot_s", "e2e_s", "tokens_per_s", "requests_per_s_per_vm", "usd_per_hour"]
# the tidy table's per-assignment columns: the plan's assignment fields plus its pool's mode (online/offline) and
# the pool's whole cost (USD over the horizon, or for the offline job; repeated on each assignment of the pool)
TABLE_FIELDS = ASSIGNMENT_FIELDS[:3] + ["mode"] + ASSIGNMENT_FIELDS[3:] + ["pool_usd"]
INT_FIELDS = ["gpu_count", "tensor_parallel", "count", "batch_size"]
SOLVED = ("optimal", "feasible", "time_limit")  # statuses of a point with a plan (time_limit: incumbent, gap > goal)


class Sweep(BaseModel):
    """A sweep file: a base scenario and the axes whose Cartesian product is solved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "sweep"
    description: str = ""
    base: str = Field(min_length=1, description="scenario YAML, relative to the sweep file")
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(min_length=1)
    time_limit_s: float | None = Field(default=None, gt=0, description="per point")
    mip_gap: float = Field(default=1e-6, ge=0, le=1)

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for v in self.axes.values())


@dataclasses.dataclass(frozen=True)
class LoadedSweep:
    """A validated sweep with its base scenario resolved."""

    sweep: Sweep
    base: Resolved
    path: str

    @property
    def axis_names(self) -> list[str]:
        return list(self.sweep.axes)

    def points(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(point id, {axis: value}) over the Cartesian product, the last axis varying fastest."""
        names = self.axis_names
        for i, values in enumerate(itertools.product(*(self.sweep.axes[n] for n in names))):
            yield i, dict(zip(names, values))


# ---- loading and validation --------------------------------------------------------------------------------


def _family(instance_type: str) -> str:
    for i, ch in enumerate(instance_type):
        if ch in ".-_":
            return instance_type[:i]
    return instance_type


def _matches(kind: str, key: str, inst: Instance) -> bool:
    if kind == "gpu":
        return inst.gpu == key
    if kind == "cloud":
        return inst.cloud == key
    if kind == "type":
        return inst.instance_type == key
    # family: g6e matches g6e.xlarge; a2-highgpu matches a2-highgpu-1g
    t = inst.instance_type
    return t == key or (t.startswith(key) and t[len(key)] in ".-_")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check_axis(name: str, values: list[Any], instances: list[Instance], fail: Callable[..., ScenarioError]) -> None:
    """Raise a ScenarioError (file:line:axes.NAME[.i]) for an unknown axis or a bad value."""
    from .catalog import suggest

    if name.startswith("price."):
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[1] not in PRICE_KEYS or not parts[2]:
            raise fail(f"a price axis is price.<{'|'.join(PRICE_KEYS)}>.<name>, e.g. price.gpu.H100", name)
        kind, key = parts[1], parts[2]
        if not any(_matches(kind, key, inst) for inst in instances):
            known = sorted({_family(i.instance_type) if kind == "family" else
                            getattr(i, {"type": "instance_type"}.get(kind, kind)) for i in instances})
            raise fail(f"no instance in the base scenario's catalog has {kind} {key!r}{suggest(key, known)}", name)
        kind = "multiplier"
    elif name in PLAIN_AXES:
        kind = {"price_multiplier": "multiplier"}.get(name, name)
    else:
        axes = ["price.gpu.<GPU>", "price.cloud.<cloud>", "price.family.<family>", "price.type.<type>", *PLAIN_AXES]
        raise fail(f"unknown axis{suggest(name, list(PLAIN_AXES))}; known axes: {', '.join(axes)}", name)
    if len({repr(v) for v in values}) != len(values):
        raise fail("repeated value: each point of an axis must be distinct", name)
    known_regions = {i.region for i in instances}
    for i, v in enumerate(values):
        x = _number(v)
        if kind in ("multiplier", "slo_scale", "demand_growth") and (x is None or x <= 0):
            raise fail(f"expected a positive number, got {v!r}", name, i)
        if kind == "spot_share" and (x is None or not 0 <= x <= 1):
            raise fail(f"expected a share 0 <= s <= 1, got {v!r}", name, i)
        if kind == "reserved_discount" and (x is None or not 0 <= x < 1):
            raise fail(f"expected a discount 0 <= d < 1, got {v!r}", name, i)
        if kind == "pricing" and v not in PRICINGS:
            raise fail(f"expected one of {', '.join(PRICINGS)}, got {v!r}", name, i)
        if kind == "regions":
            if not isinstance(v, list) or not v or not all(isinstance(r, str) for r in v):
                raise fail(f"expected a non-empty list of region names, got {v!r}", name, i)
            for r in v:
                if r not in known_regions:
                    raise fail(f"unknown region {r!r}{suggest(r, sorted(known_regions))}", name, i)


def parse_sweep(data: Any, path: str = "<sweep>", node: yaml.Node | None = None) -> Sweep:
    if not isinstance(data, dict):
        raise ScenarioError("a sweep file must be a YAML mapping with 'base' and 'axes'", path=path)
    try:
        return Sweep(**data)
    except ValidationError as exc:
        raise validation_error(exc, path, node) from None


def load_sweep(path: str | Path, base: Resolved | None = None) -> LoadedSweep:
    """Read and validate a sweep file and resolve its base scenario (or use ``base``)."""
    path = Path(path)
    data, node = read_yaml(path)
    sweep = parse_sweep(data, str(path), node)
    if base is None:
        base_path = Path(sweep.base)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        if not base_path.is_file():
            line = _line_of(node, ("base",))
            raise ScenarioError(f"base scenario {str(base_path)!r} not found", path=str(path),
                                where=f"line {line}" if line else None, field="base")
        base = load_scenario(base_path)

    def fail(message: str, axis: str, index: int | None = None) -> ScenarioError:
        loc = ("axes", axis) if index is None else ("axes", axis, index)
        line = _line_of(node, loc)
        field = f"axes.{axis}" if index is None else f"axes.{axis}[{index}]"
        return ScenarioError(message, path=str(path), where=f"line {line}" if line else None, field=field)

    for name, values in sweep.axes.items():
        _check_axis(name, values, base.instances, fail)
    return LoadedSweep(sweep, base, str(path))


def make_sweep(base: Resolved, axes: dict[str, list[Any]], **fields: Any) -> LoadedSweep:
    """A sweep from Python: ``make_sweep(load_scenario(p), {"slo_scale": [0.5, 1, 2]})``."""
    sweep = Sweep(base=base.path, axes=axes, **fields)

    def fail(message: str, axis: str, index: int | None = None) -> ScenarioError:
        return ScenarioError(message, field=f"axes.{axis}" + ("" if index is None else f"[{index}]"))

    for name, values in sweep.axes.items():
        _check_axis(name, values, base.instances, fail)
    return LoadedSweep(sweep, base, "<sweep>")


# ---- one point ---------------------------------------------------------------------------------------------


def _scale_slo(slo: SLO, s: float) -> SLO:
    def mul(v: float | None) -> float | None:
        return None if v is None else v * s

    return slo.model_copy(update=dict(max_ttft_s=mul(slo.max_ttft_s), max_tpot_s=mul(slo.max_tpot_s),
                                      max_e2e_s=mul(slo.max_e2e_s),
                                      min_tokens_per_s=None if slo.min_tokens_per_s is None
                                      else slo.min_tokens_per_s / s))


def _grow(w: Workload, g: float) -> Workload:
    return w.model_copy(update=dict(
        request_rate_per_s=None if w.request_rate_per_s is None else w.request_rate_per_s * g,
        num_requests=None if w.num_requests is None else max(1, round(w.num_requests * g))))


def apply_point(base: Resolved, values: dict[str, Any]) -> Resolved:
    """The base scenario and catalog with one point's axis values applied."""
    sc: Scenario = base.scenario
    workloads = list(sc.workloads)
    update: dict[str, Any] = {}
    on_demand_factor: dict[int, float] = {}
    spot_factor: dict[int, float] = {}
    for name, v in values.items():
        if name.startswith("price.") or name == "price_multiplier":
            kind, key = name.split(".", 2)[1:] if name.startswith("price.") else ("all", "")
            for k, inst in enumerate(base.instances):
                if kind == "all" or _matches(kind, key, inst):
                    on_demand_factor[k] = on_demand_factor.get(k, 1.0) * float(v)
                    spot_factor[k] = spot_factor.get(k, 1.0) * float(v)
        elif name == "reserved_discount":
            for k in range(len(base.instances)):
                on_demand_factor[k] = on_demand_factor.get(k, 1.0) * (1.0 - float(v))
        elif name == "pricing":
            update["pricing"] = v
        elif name == "spot_share":
            update["max_spot_share"] = float(v)
            update.setdefault("pricing", "both")
        elif name == "slo_scale":
            workloads = [w.model_copy(update={"slo": _scale_slo(w.slo, float(v))}) for w in workloads]
        elif name == "demand_growth":
            workloads = [_grow(w, float(v)) for w in workloads]
        elif name == "regions":
            update["regions"] = list(v)
        else:  # pragma: no cover - load_sweep rejects unknown axes
            raise ScenarioError(f"unknown axis {name!r}")
    instances = base.instances
    if on_demand_factor or spot_factor:
        instances = []
        for k, inst in enumerate(base.instances):
            od, sp = on_demand_factor.get(k, 1.0), spot_factor.get(k, 1.0)
            if od == 1.0 and sp == 1.0:
                instances.append(inst)
                continue
            instances.append(inst.model_copy(update=dict(
                usd_per_hour=inst.usd_per_hour * od,
                spot_usd_per_hour=None if inst.spot_usd_per_hour is None else inst.spot_usd_per_hour * sp)))
    scenario = sc.model_copy(update=update | {"workloads": workloads})
    return dataclasses.replace(base, scenario=scenario, instances=instances)


def axis_cell(value: Any) -> Any:
    """An axis value as a table cell: region lists become 'a,b'; numbers become floats."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    x = _number(value)
    return x if x is not None else value


def solve_point(base: Resolved, point: int, values: dict[str, Any], *, solver: str = "highs",
                time_limit_s: float | None = None, mip_gap: float = 1e-6) -> dict[str, Any]:
    """Solve one point; always returns a record.

    status: ``optimal``/``feasible``/``time_limit`` (a plan; ``time_limit``: the best found when time ran out),
    ``infeasible`` (no plan exists), ``error`` (the point's input is invalid), ``failed`` (solver failure, time
    limit without a plan, or an internal error).
    """
    from .errors import InfeasibleError, NoCandidatesError
    from .plan import plan

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


def _solve_in_worker(point: int, values: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    assert _WORKER_BASE is not None, "worker not initialised"
    return solve_point(_WORKER_BASE, point, values, **options)


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _run_local(loaded: LoadedSweep, points: list[tuple[int, dict]], options: dict, workers: int,
               advance: Callable[[], None]) -> list[dict]:
    if workers <= 1 or len(points) <= 1:
        out = []
        for i, v in points:
            out.append(solve_point(loaded.base, i, v, **options))
            advance()
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # forkserver: workers fork from a clean server that has imported the engine once (no threads inherited)
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["solver.sweep", "solver.plan"])
    out = []
    with ProcessPoolExecutor(max_workers=min(workers, len(points)), mp_context=ctx, initializer=_init_worker,
                             initargs=(loaded.base,)) as pool:
        futures = [pool.submit(_solve_in_worker, i, v, options) for i, v in points]
        for fut in as_completed(futures):
            out.append(fut.result())
            advance()
    return out


def _run_dask(loaded: LoadedSweep, points: list[tuple[int, dict]], options: dict, scheduler: Any,
              advance: Callable[[], None]) -> list[dict]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise InputError("--scheduler needs Dask distributed: pip install -e '.[dask]'") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout="10s", set_as_default=False) if own else scheduler
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        base = client.scatter(loaded.base, broadcast=True, hash=False)
        futures = client.map(_solve_point_kw, [i for i, _ in points], [v for _, v in points], base=base,
                             pure=False, **options)
        out = []
        for fut in as_completed(futures, loop=client.loop):  # loop: the client need not be the default one
            out.append(fut.result())
            advance()
        return out
    finally:
        if own:
            client.close()


def _solve_point_kw(point: int, values: dict[str, Any], *, base: Resolved, **options: Any) -> dict[str, Any]:
    return solve_point(base, point, values, **options)


def run_sweep(loaded: LoadedSweep, *, workers: int | None = None, scheduler: Any = None, solver: str = "highs",
              time_limit_s: float | None = None, mip_gap: float | None = None,
              progress: bool | None = None) -> pd.DataFrame:
    """Solve every point and return the tidy results table (see ``results_table``).

    ``scheduler``: a Dask scheduler address (``tcp://host:port``) or a ``dask.distributed.Client``; without it
    the points run on a local process pool of ``workers`` processes (default ``min(2, cpus)``; 1 = in process).
    ``progress``: a rich progress bar on stderr; default only when stderr is a terminal.

    The local pool starts workers with ``forkserver`` (``spawn`` where unavailable), never plain ``fork``: a script
    that calls ``run_sweep`` with ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard. Dask workers
    need this package installed (``pip install infersave[dask]``); the resolved base scenario is scattered to them
    once, so they need no access to the scenario or catalog files.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    sw = loaded.sweep
    options = dict(solver=solver, time_limit_s=time_limit_s if time_limit_s is not None else sw.time_limit_s,
                   mip_gap=mip_gap if mip_gap is not None else sw.mip_gap)
    points = list(loaded.points())
    show = sys.stderr.isatty() if progress is None else progress
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]sweep {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not show, transient=False) as bar:
        task = bar.add_task(sw.name, total=len(points))

        def advance() -> None:
            bar.advance(task)

        if scheduler is not None:
            records = _run_dask(loaded, points, options, scheduler, advance)
        else:
            records = _run_local(loaded, points, options, workers or default_workers(), advance)
    return results_table(records, loaded.axis_names)


# ---- tables ------------------------------------------------------------------------------------------------


def results_table(records: list[dict], axis_names: list[str]) -> pd.DataFrame:
    """Tidy table: one row per point x assignment; a point without a plan keeps one row of empty fields."""
    rows = []
    for rec in sorted(records, key=lambda r: r["point"]):
        head = {"point": rec["point"]}
        head |= {AXIS_PREFIX + n: axis_cell(rec["values"][n]) for n in axis_names}
        head |= {k: rec[k] for k in POINT_FIELDS}
        for a in rec["assignments"] or [{}]:
            rows.append(head | {f: a.get(f) for f in TABLE_FIELDS})
    columns = ["point", *(AXIS_PREFIX + n for n in axis_names), *POINT_FIELDS, *TABLE_FIELDS]
    df = pd.DataFrame(rows, columns=columns)
    df["point"] = df["point"].astype("int64")
    for col in INT_FIELDS:
        df[col] = df[col].astype("Int64")
    for col in ("objective", "online_usd_per_hour", "offline_usd", "horizon_hours", "wall_s", "share",
                "offload_ratio", "ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "requests_per_s_per_vm",
                "usd_per_hour", "pool_usd"):
        df[col] = df[col].astype("float64")
    return df


def axis_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith(AXIS_PREFIX)]


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per point: axis values, status, costs, VMs (pools counted once), GPUs, types, worst latencies."""
    axes = axis_columns(df)
    out = []
    for point, g in df.groupby("point", sort=True):
        first = g.iloc[0]
        pools = g.dropna(subset=["pool"]).drop_duplicates("pool")
        online = g[g["mode"] == "online"]  # latency of online traffic; offline jobs only have deadlines
        row = {"point": int(point), **{c: first[c] for c in axes}}
        row |= {k: first[k] for k in ("status", "objective", "online_usd_per_hour", "offline_usd")}
        row |= {"vms": int(pools["count"].sum()) if len(pools) else 0,
                "gpus": int((pools["count"] * pools["gpu_count"]).sum()) if len(pools) else 0,
                "instance_types": ",".join(sorted(pools["instance_type"].unique())) if len(pools) else "",
                "worst_ttft_s": online["ttft_s"].max(), "worst_tpot_s": online["tpot_s"].max(),
                "wall_s": first["wall_s"], "message": first["message"]}
        out.append(row)
    return pd.DataFrame(out)


def exit_code(df: pd.DataFrame) -> int:
    """0 every point has a plan; 1 some point is infeasible; 2 a point is bad input; 3 a solver failure."""
    statuses = set(df.drop_duplicates("point")["status"])
    for status, code in (("failed", 3), ("error", 2), ("infeasible", 1)):
        if status in statuses:
            return code
    return 0


def write_results(df: pd.DataFrame, out: str | Path, provenance: dict[str, Any] | None = None) -> None:
    """Parquet (``.parquet``/``.pq``) or CSV (``.csv``) by suffix, written atomically. With ``provenance``
    (``solver.provenance.provenance()``) the table gets ``provenance.*`` columns and, in Parquet, the whole
    record as schema metadata."""
    from .io import atomic_write

    out = Path(out)
    kind = output_kind(out)
    if provenance is not None:
        from .provenance import provenance_columns

        df = df.assign(**provenance_columns(provenance))
    if kind == "parquet":
        from .provenance import write_parquet

        atomic_write(out, lambda tmp: write_parquet(df, tmp, provenance))
    else:
        atomic_write(out, lambda tmp: df.to_csv(tmp, index=False))


def output_kind(out: str | Path) -> str:
    suffix = Path(out).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise InputError(f"results file must end in .parquet or .csv, got {suffix or 'no suffix'!r}", path=str(out))


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results table written by ``write_results`` (Parquet or CSV by suffix)."""
    path = Path(path)
    kind = output_kind(path)
    if not path.is_file():
        raise InputError("results file not found", path=str(path))
    try:
        df = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow/pandas raise many types for a damaged file
        raise InputError(f"cannot read results: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                         path=str(path)) from None
    missing = [c for c in ("point", "status", "objective", "instance_type", "count") if c not in df.columns]
    if missing:
        raise InputError(f"not a sweep results table (missing columns {missing})", path=str(path))
    return df


def label_axis(name: str, value: Any) -> str:
    """A short human label for one axis value: 'H100 x0.5', 'SLO x2', 'spot+on-demand'."""
    name = name.removeprefix(AXIS_PREFIX)
    if name.startswith("price."):
        kind, key = name.split(".", 2)[1:]
        return f"{key}{'*' if kind == 'family' else ''} x{value:g}"
    fmt = {"price_multiplier": lambda v: f"price x{v:g}", "reserved_discount": lambda v: f"RI -{v:.0%}",
           "slo_scale": lambda v: f"SLO x{v:g}", "demand_growth": lambda v: f"demand x{v:g}",
           "pricing": lambda v: {"on_demand": "on-demand", "spot": "spot", "both": "spot+on-demand"}.get(v, str(v)),
           "regions": lambda v: str(v)}
    try:
        return fmt[name](value)
    except (KeyError, TypeError, ValueError):
        return f"{name}={value}"


def summary_text(summary: pd.DataFrame, title: str = "sweep") -> str:
    """The per-point summary as a plain-text table (the ``infersave sweep`` stdout)."""
    from rich.table import Table

    from .report import render_text

    axes = [c for c in summary.columns if c.startswith(AXIS_PREFIX)]
    n_ok = int(summary["status"].isin(SOLVED).sum())
    table = Table(title=f"Sweep {title!r}: {n_ok} of {len(summary)} points have a plan")
    for col in ["point", *(c.removeprefix(AXIS_PREFIX) for c in axes), "status", "total USD", "online $/h",
                "offline USD", "VMs", "GPUs", "instance types"]:
        table.add_column(col, justify="left" if col in ("status", "instance types", "pricing", "regions") else "right")
    for row in summary.to_dict(orient="records"):
        cells = [str(row["point"])]
        cells += [f"{row[c]:g}" if isinstance(row[c], float) else str(row[c]) for c in axes]
        ok = row["status"] in SOLVED
        cells += [row["status"], f"{row['objective']:,.2f}" if ok else "-",
                  f"{row['online_usd_per_hour']:,.2f}" if ok else "-", f"{row['offline_usd']:,.2f}" if ok else "-",
                  str(row["vms"]) if ok else "-", str(row["gpus"]) if ok else "-", row["instance_types"] or "-"]
        table.add_row(*cells)
    text = render_text(table)
    bad = summary[~summary["status"].isin(SOLVED)]
    for r in bad.itertuples(index=False):
        text += f"point {r.point}: {r.status}: {r.message}\n"
    return text
