"""Sweep results: the tidy table (one row per point x assignment), the per-point summary, files, exit code."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import atomic_write, csv_safe, file_kind
from ..provenance import provenance_columns, write_parquet
from .axes import number

AXIS_PREFIX = "axis."
POINT_FIELDS = ["status", "objective", "online_usd_per_hour", "offline_usd", "horizon_hours", "message", "wall_s"]
ASSIGNMENT_FIELDS = ["workload", "demand", "model", "pool", "cloud", "instance_type", "region", "pricing", "gpu",
                     "gpu_count", "tensor_parallel", "count", "share", "batch_size", "offload_ratio", "ttft_s",
                     "tpot_s", "e2e_s", "tokens_per_s", "requests_per_s_per_vm", "share_usd_per_hour"]
# the tidy table's per-assignment columns: the plan's assignment fields plus its pool's mode (online/offline) and
# the pool's whole cost (USD over the horizon, or for the offline job; repeated on each assignment of the pool)
TABLE_FIELDS = ASSIGNMENT_FIELDS[:3] + ["mode"] + ASSIGNMENT_FIELDS[3:] + ["pool_usd"]
INT_FIELDS = ["gpu_count", "tensor_parallel", "count", "batch_size"]
FLOAT_FIELDS = ["objective", "online_usd_per_hour", "offline_usd", "horizon_hours", "wall_s", "share", "offload_ratio",
                "ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "requests_per_s_per_vm", "share_usd_per_hour", "pool_usd"]
COLUMN_TYPES = {"point": "int64", **{c: "Int64" for c in INT_FIELDS}, **{c: "float64" for c in FLOAT_FIELDS}}
SOLVED = ("optimal", "feasible")  # statuses of a point with a plan (feasible: a time-limited incumbent, gap > goal)

def axis_cell(value: Any) -> Any:
    """An axis value as a table cell: region lists become 'a,b'; numbers become floats."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    x = number(value)
    return x if x is not None else value

# ---- tables ------------------------------------------------------------------------------------------------


def results_table(records: list[dict[str, Any]], axis_names: list[str]) -> pd.DataFrame:
    """Tidy table: one row per point x assignment; a point without a plan keeps one row of empty fields."""
    rows = []
    for rec in sorted(records, key=lambda r: r["point"]):
        head = {"point": rec["point"]}
        head |= {AXIS_PREFIX + n: axis_cell(rec["values"][n]) for n in axis_names}
        head |= {k: rec[k] for k in POINT_FIELDS}
        for a in rec["assignments"] or [{}]:
            rows.append(head | {f: a.get(f) for f in TABLE_FIELDS})
    columns = ["point", *(AXIS_PREFIX + n for n in axis_names), *POINT_FIELDS, *TABLE_FIELDS]
    return typed(pd.DataFrame(rows, columns=columns))


def typed(df: pd.DataFrame, path: Path | None = None) -> pd.DataFrame:
    """The results table's column types (also for a table read back from a file: with its ``path``, a cell of the
    wrong kind is ``InputError`` naming the column)."""
    df = df.copy()
    for col, dtype in COLUMN_TYPES.items():
        try:
            df[col] = df[col].astype(dtype)
        except (ValueError, TypeError, OverflowError):
            if path is None:
                raise
            whole = " whole" if dtype != "float64" else ""
            raise InputError(f"not a sweep results table: a cell is not a{whole} number", path=str(path),
                             field=col) from None
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
    out = Path(out)
    kind = output_kind(out)
    if provenance is not None:
        df = df.assign(**provenance_columns(provenance))
    if kind == "parquet":
        atomic_write(out, lambda tmp: write_parquet(df, tmp, provenance))
    else:
        atomic_write(out, lambda tmp: csv_safe(df).to_csv(tmp, index=False))


def partial_path(out: str | Path) -> Path:
    """Where an interrupted sweep writes the points finished so far: ``results.partial.parquet`` beside
    ``results.parquet`` (the complete file is only ever written when every point is solved)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def _same_cell(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        x, y = number(a), number(b)
        return x is not None and y is not None and abs(x - y) <= 1e-12 * max(1.0, abs(x))
    return str(a) == str(b)


def resume_table(out: str | Path, loaded: Any) -> pd.DataFrame | None:
    """Rows already solved for ``--resume``: from the partial file beside ``out``, else ``out`` itself; None when
    neither exists. A table of another sweep (other axes, or other values at a point) is bad input (exit 2)."""
    for candidate in (partial_path(out), Path(out)):
        if not candidate.is_file():
            continue
        df = read_results(candidate)
        expected = [AXIS_PREFIX + n for n in loaded.axis_names]
        if axis_columns(df) != expected:
            raise InputError(f"was written by another sweep (axes {axis_columns(df)}, this sweep has {expected})",
                             path=str(candidate), field="--resume")
        values = dict(loaded.points())
        for _, row in df.drop_duplicates("point").iterrows():
            point = int(row["point"])
            if point not in values or not all(_same_cell(row[AXIS_PREFIX + n], axis_cell(values[point][n]))
                                              for n in loaded.axis_names):
                raise InputError(f"point {point} does not match this sweep's axes", path=str(candidate),
                                 field="--resume")
        keep = [c for c in df.columns if not c.startswith("provenance.")]
        df = df[keep]
        if "message" in df:
            df = df.assign(message=df["message"].fillna(""))
        return typed(df)
    return None


def merge_tables(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Tables of disjoint points as one, ordered by point (rows of a point keep their order)."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        raise ValueError("no rows")
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    return typed(pd.concat(parts, ignore_index=True).sort_values("point", kind="stable").reset_index(drop=True))


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
        raise InputError(f"results file {file_kind(path)}", path=str(path))
    try:
        df = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow/pandas raise many types for a damaged file
        raise InputError(f"cannot read results: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                         path=str(path)) from None
    missing = [c for c in ("point", *POINT_FIELDS, *TABLE_FIELDS) if c not in df.columns]
    if missing:
        raise InputError(f"not a sweep results table (missing columns {missing})", path=str(path))
    numbers = typed(df, path)
    solved = numbers["status"].isin(SOLVED)
    cost = numbers["objective"]
    bad = solved & ~(np.isfinite(cost) & (cost >= 0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is row 1
        raise InputError(f"row {row}: a solved point's objective must be a finite cost >= 0", path=str(path),
                         field="objective")
    if (numbers["point"] < 0).any():
        raise InputError("point numbers must be >= 0", path=str(path), field="point")
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
