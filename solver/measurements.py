"""Published measurements: load and validate the CSV, and say which rows the serving model describes.

``solver.measured`` turns each row into the engine iterations it is made of; ``solver.fitting`` fits them.
"""
from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CatalogError
from .field_checks import check_plain_number
from .io import MAX_CSV_BYTES, read_text
from .schema import DTYPE_BYTES
from .resources import default_measurements

DEFAULT_MEASUREMENTS = default_measurements()
COLUMNS = ("source_id", "model", "gpu", "gpu_count", "engine", "dtype", "kv_dtype", "batch_size", "input_tokens",
           "output_tokens", "metric", "value", "unit", "source", "date")
# Optional columns (a file without them loads as if they were empty). Online (continuous-batching) rows leave
# batch_size empty and give the offered load instead: request_rate_per_s (requests/s; empty or "inf" = all requests
# sent at once) and/or concurrency (max requests in flight). statistic says what a ttft_s/tpot_s/e2e_s value is:
# mean, median, p90 or p99 (empty = mean). num_prompts: the requests of the whole run (a closed loop's first wave,
# sent at once, is concurrency / num_prompts of them; empty = a steady-state measurement).
OPTIONAL_COLUMNS = ("notes", "request_rate_per_s", "concurrency", "statistic", "num_prompts")
STATISTICS = ("mean", "median", "p90", "p99")
METRICS = {"ttft_s": "s", "tpot_s": "s", "e2e_s": "s", "prefill_tokens_per_s": "tokens/s",
           "decode_tokens_per_s": "tokens/s", "output_tokens_per_s": "tokens/s", "tokens_per_s": "tokens/s"}
PHASE = {"ttft_s": "ttft", "prefill_tokens_per_s": "ttft", "tpot_s": "tpot", "decode_tokens_per_s": "tpot",
         "e2e_s": "throughput", "output_tokens_per_s": "throughput", "tokens_per_s": "throughput"}
# TensorRT-LLM's default max_batch_size for saturated-throughput benchmarks (an assumption for rows
# that do not state their batch).
SATURATED_BATCH_CAP = 2048
MEMORY_UTILIZATION = 0.9


MAX_SECONDS = 86_400.0  # a latency above a day is a unit slip (milliseconds given as seconds)
MAX_TOKENS_PER_S = 1e8  # tokens/s of one measured deployment


NUMERIC_COLUMNS = ("gpu_count", "batch_size", "input_tokens", "output_tokens", "value", "request_rate_per_s",
                   "concurrency", "num_prompts")


def _plain_numbers(header: list[str], rows: Iterable[list[str]], path: Path) -> None:
    """Every numeric cell is empty or a plainly written number: pandas would read " 5" as 5 (and refuse "1_0"
    without naming the row)."""
    columns = [(i, h) for i, h in enumerate(header) if h in NUMERIC_COLUMNS]
    for line, row in enumerate(rows, start=2):
        for i, name in columns:
            cell = row[i] if i < len(row) else ""
            if not cell:  # an empty cell is a missing value
                continue
            try:
                check_plain_number(cell)
            except ValueError as exc:
                raise CatalogError(str(exc), path=str(path), where=f"row {line}", field=name) from None


def load_measurements(path: Path | str = DEFAULT_MEASUREMENTS) -> pd.DataFrame:
    """The measurements CSV, validated: known columns, metrics, units, positive finite values."""
    import csv
    import warnings

    path = Path(path)
    text = read_text(path, MAX_CSV_BYTES, CatalogError, "CSV")  # once: the checks and pandas read the same text
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        _plain_numbers(header, reader, path)
    except csv.Error as exc:
        raise CatalogError(f"cannot read CSV: {exc}", path=str(path)) from None
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:  # pandas would rename the second one silently
        raise CatalogError(f"duplicated column(s) {dupes}", path=str(path), where="row 1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a pandas warning here means a malformed file
            frame = pd.read_csv(io.StringIO(text), dtype={"batch_size": "float64"}, keep_default_na=True)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for malformed CSV
        raise CatalogError(f"cannot read CSV: {(str(exc).splitlines() or [type(exc).__name__])[0]}",
                           path=str(path)) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(f"missing column(s) {missing}", path=str(path), where="row 1")
    for col in OPTIONAL_COLUMNS:
        if col not in frame.columns:
            frame[col] = np.nan
    for col in ("request_rate_per_s", "concurrency", "num_prompts"):
        try:
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype("float64")
        except (ValueError, TypeError):
            bad = frame[col][pd.to_numeric(frame[col], errors="coerce").isna() & frame[col].notna()]
            where = f"row {int(bad.index[0]) + 2}" if len(bad) else None
            raise CatalogError("expected a number (or empty)", path=str(path), where=where, field=col) from None
    frame["statistic"] = frame["statistic"].astype("object")
    for i, row in frame.iterrows():
        where = f"row {int(i) + 2}"
        if row["metric"] not in METRICS:
            raise CatalogError(f"unknown metric {row['metric']!r}", path=str(path), where=where, field="metric")
        if row["unit"] != METRICS[row["metric"]]:
            raise CatalogError(f"unit must be {METRICS[row['metric']]!r}", path=str(path), where=where, field="unit")
        for col in ("value", "gpu_count", "input_tokens", "output_tokens"):
            v = row[col]
            if not (isinstance(v, (int, float, np.number)) and np.isfinite(v) and v >= 0):
                raise CatalogError(f"expected a non-negative number, got {v!r}", path=str(path), where=where,
                                   field=col)
        if not row["value"] > 0:
            raise CatalogError("value must be positive", path=str(path), where=where, field="value")
        top = MAX_SECONDS if METRICS[row["metric"]] == "s" else MAX_TOKENS_PER_S
        if row["value"] > top:
            raise CatalogError(f"value {row['value']:.4g} {METRICS[row['metric']]} is above the plausible maximum "
                               f"of {top:g}; check the units", path=str(path), where=where, field="value")
        if not (row["gpu_count"] >= 1 and float(row["gpu_count"]).is_integer()):
            raise CatalogError("gpu_count must be a whole number of GPUs, at least 1", path=str(path), where=where,
                               field="gpu_count")
        if not row["input_tokens"] + row["output_tokens"] >= 1:
            raise CatalogError("a measured request has at least one input or output token", path=str(path),
                               where=where, field="input_tokens")
        if np.isfinite(row["batch_size"]) and not row["batch_size"] >= 1:
            raise CatalogError("batch_size must be at least 1 (or empty)", path=str(path), where=where,
                               field="batch_size")
        for col in ("request_rate_per_s", "concurrency", "num_prompts"):
            v = row[col]
            if np.isfinite(v) and not v > 0:
                raise CatalogError("expected a positive number (or empty)", path=str(path), where=where, field=col)
        stat = row["statistic"]
        if isinstance(stat, str) and stat not in STATISTICS:
            raise CatalogError(f"statistic must be one of {list(STATISTICS)} or empty", path=str(path), where=where,
                               field="statistic")
        if not isinstance(row["source"], str) or not row["source"]:
            raise CatalogError("every measurement needs a source", path=str(path), where=where, field="source")
        for col in ("dtype", "kv_dtype"):
            if row[col] not in DTYPE_BYTES:
                raise CatalogError(f"unknown precision {row[col]!r}; choose one of {', '.join(DTYPE_BYTES)}",
                                   path=str(path), where=where, field=col)
    return frame


# Engines the planner models: batched serving engines with fused GPU kernels. llama.cpp (a single-stream
# desktop engine whose quantised kernels run far from the roofline) and runs that offload weights to host or
# disk describe other systems; they stay in the dataset, scored separately, but never calibrate the planner.
OUT_OF_SCOPE_ENGINES = ("llama.cpp",)
OUT_OF_SCOPE_NOTES = r"SUSPECT|OFFLOADED|offloading: (?:cpu|disk)"


def is_online(frame: pd.DataFrame) -> pd.Series:
    """Rows measured under an offered load (continuous batching: request rate and/or concurrency, no batch)."""
    online = pd.Series(False, index=frame.index)
    for col in ("request_rate_per_s", "concurrency"):
        if col in frame.columns:
            online |= pd.to_numeric(frame[col], errors="coerce").notna()
    if "request_rate_per_s" in frame.columns:  # "inf" = every request sent at t=0 (an online run too)
        online |= frame["request_rate_per_s"].astype(str).str.lower().isin(("inf", "infinity"))
    return online


def in_scope(frame: pd.DataFrame) -> pd.Series:
    """Rows that describe a serving engine with weights and KV cache in GPU memory: static batches, saturated
    throughput and online runs under load alike (the serving model describes all three)."""
    notes = frame.get("notes", pd.Series("", index=frame.index)).fillna("")
    return ~frame["engine"].isin(OUT_OF_SCOPE_ENGINES) & ~notes.str.contains(OUT_OF_SCOPE_NOTES, regex=True)
