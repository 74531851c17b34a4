"""Published measurements -> the linear terms the CTCF is fitted on, and predictions to score against them.

Each measured metric is turned into a time that is linear in the five CTCF coefficients
(prefill alpha, prefill beta per layer, decode alpha, decode beta per layer, all-reduce factor g):

    TTFT        = ap*P + bp*n + g*cP                     (P: roofline prefill, n: layers, cP: all-reduce)
    TPOT        = ad*D + bd*n + g*cD                     (D: roofline decode step at mean context)
    E2E         = TTFT + (L_out - 1) * TPOT
and throughputs are inverted into those times (prefill tok/s -> TTFT, decode tok/s -> TPOT, output or total
tok/s -> E2E). Rows without a batch size are saturated-throughput runs: they are predicted at the largest batch
whose KV cache fits, capped at ``SATURATED_BATCH_CAP``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import CATALOG_DIR, find_gpu, find_model
from .schema import GPUSpec, ModelCard
from .errors import CatalogError, PlannerError
from .perf import GIB, Hardware, activation_peak_bytes, allreduce_s, decode_context, decode_theory_s, \
    prefill_theory_s, weight_bytes

DEFAULT_MEASUREMENTS = CATALOG_DIR / "measurements" / "published.csv"
COLUMNS = ("source_id", "model", "gpu", "gpu_count", "engine", "dtype", "kv_dtype", "batch_size", "input_tokens",
           "output_tokens", "metric", "value", "unit", "source", "date")
METRICS = {"ttft_s": "s", "tpot_s": "s", "e2e_s": "s", "prefill_tokens_per_s": "tokens/s",
           "decode_tokens_per_s": "tokens/s", "output_tokens_per_s": "tokens/s", "tokens_per_s": "tokens/s"}
PHASE = {"ttft_s": "ttft", "prefill_tokens_per_s": "ttft", "tpot_s": "tpot", "decode_tokens_per_s": "tpot",
         "e2e_s": "throughput", "output_tokens_per_s": "throughput", "tokens_per_s": "throughput"}
# TensorRT-LLM's default max_batch_size for saturated-throughput benchmarks (an assumption for rows
# that do not state their batch).
SATURATED_BATCH_CAP = 2048
MEMORY_UTILIZATION = 0.9


def load_measurements(path: Path | str = DEFAULT_MEASUREMENTS) -> pd.DataFrame:
    """The measurements CSV, validated: known columns, metrics, units, positive finite values."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"batch_size": "float64"}, keep_default_na=True)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for malformed CSV
        raise CatalogError(f"cannot read CSV: {str(exc).splitlines()[0]}", path=str(path)) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(f"missing column(s) {missing}", path=str(path), where="row 1")
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
        if not isinstance(row["source"], str) or not row["source"]:
            raise CatalogError("every measurement needs a source", path=str(path), where=where, field="source")
    return frame


# Engines the planner models: batched serving engines with fused GPU kernels. llama.cpp (a single-stream
# desktop engine whose quantised kernels run far from the roofline) and runs that offload weights to host or
# disk describe other systems; they stay in the dataset, scored separately, but never calibrate the planner.
OUT_OF_SCOPE_ENGINES = ("llama.cpp",)
OUT_OF_SCOPE_NOTES = r"SUSPECT|OFFLOADED|offloading: (?:cpu|disk)"


def in_scope(frame: pd.DataFrame) -> pd.Series:
    """Rows that describe a serving engine with weights and KV cache in GPU memory."""
    notes = frame.get("notes", pd.Series("", index=frame.index)).fillna("")
    return ~frame["engine"].isin(OUT_OF_SCOPE_ENGINES) & ~notes.str.contains(OUT_OF_SCOPE_NOTES, regex=True)


@dataclass(frozen=True)
class Terms:
    """Per-row linear terms: measured_time = A @ (ap, bp, ad, bd, comm) + c."""

    A: np.ndarray
    c: np.ndarray
    measured_time: np.ndarray
    batch: np.ndarray
    rows: pd.DataFrame


def _saturated_batch(model: ModelCard, spec: GPUSpec, dtype: str, kv_dtype: str, tp: int, input_tokens: float,
                     output_tokens: float) -> int:
    usable = spec.memory_gib * GIB * MEMORY_UTILIZATION
    free = usable - weight_bytes(model, dtype) / tp
    per_seq = model.kv_bytes_per_token(kv_dtype) * (input_tokens + output_tokens) / tp
    act = float(activation_peak_bytes(model, np.array(1.0), np.array(float(input_tokens)), 8192, np.array(tp)))
    return int(max(1, min(SATURATED_BATCH_CAP, (free - act) // max(per_seq, 1.0))))


def linear_terms(frame: pd.DataFrame) -> Terms:
    """Linear CTCF terms for every usable row (rows whose model or GPU is unknown are dropped)."""
    A, c, measured, batches, kept = [], [], [], [], []
    for i, row in frame.iterrows():
        try:
            model, spec = find_model(row["model"]), find_gpu(row["gpu"])
        except PlannerError:
            continue
        dtype = str(row["dtype"])
        kv_dtype = str(row["kv_dtype"]) if isinstance(row["kv_dtype"], str) else dtype
        kv_dtype = "fp16" if kv_dtype in ("int4", "int8") and dtype in ("int4", "int8") else kv_dtype
        tp, l_in, l_out = int(row["gpu_count"]), float(row["input_tokens"]), float(row["output_tokens"])
        if weight_bytes(model, dtype) / tp > spec.memory_gib * GIB:
            continue  # layer-split or offloaded runs our single-node model does not describe
        b = row["batch_size"]
        batch = float(b) if np.isfinite(b) else float(_saturated_batch(model, spec, dtype, kv_dtype, tp, l_in, l_out))
        hw = Hardware.from_specs([spec], dtype)
        n = model.num_layers
        P = float(prefill_theory_s(model, dtype, hw, np.array(batch), np.array(max(l_in, 1.0)), np.array(tp))[0])
        ctx = decode_context(np.array(l_in), np.array(l_out))
        D = float(decode_theory_s(model, dtype, kv_dtype, hw, np.array(batch), ctx, np.array(tp))[0])
        cP = float(allreduce_s(model, hw, np.array(batch * l_in), np.array(tp))[0])
        cD = float(allreduce_s(model, hw, np.array(batch), np.array(tp))[0])
        metric, value = row["metric"], float(row["value"])
        phase = PHASE[metric]
        if phase == "ttft":
            a, const = [P, n, 0.0, 0.0, cP], 0.0
            time = value if metric == "ttft_s" else batch * l_in / value
        elif phase == "tpot":
            a, const = [0.0, 0.0, D, n, cD], 0.0
            time = value if metric == "tpot_s" else batch / value
        else:
            steps = max(l_out - 1.0, 0.0)
            a, const = [P, n, steps * D, steps * n, cP + steps * cD], 0.0
            tokens = l_out if metric == "output_tokens_per_s" else l_in + l_out
            time = value if metric == "e2e_s" else batch * tokens / value
        A.append(a)
        c.append(const)
        measured.append(time)
        batches.append(batch)
        kept.append(i)
    return Terms(np.array(A, float).reshape(-1, 5), np.array(c, float), np.array(measured, float),
                 np.array(batches, float), frame.loc[kept].reset_index(drop=True))
