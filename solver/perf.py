"""The model of the machine for one candidate table: memory, KV offloading and latency, vectorised.

* memory per GPU = weights / tp + resident KV cache (GQA-aware) + activation peak <= usable GPU memory; the KV
  that does not fit stays in host memory (offload ratio ``r``), but one layer's KV must stay resident
  (paper Algorithm 1, case 2);
* latency comes from ``serving``: static batches for offline work, continuous batching for online traffic,
  every iteration priced by the per-operator roofline (``roofline``) with calibrated coefficients;
* an online replica's throughput is its *capacity*: the highest request rate at which every SLO holds at its
  percentile (this is what the MILP divides demand by); an offline replica's is ``batch / E2E``.

Pure functions over numpy arrays: one call evaluates a whole candidate table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .calibration import Calibration
from .engines import EngineProfile, find_engine
from .roofline import GIB, Hardware, factorize, weight_bytes
from .schema import ModelCard
from .prefill import static_latency
from .serving import online_capacity, online_state
from .shape import Shape

__all__ = ["GIB", "Estimate", "Hardware", "activation_peak_bytes", "estimate", "kv_cache_bytes", "weight_bytes"]
ACTIVATION_BYTES = 2.0
LOGIT_BYTES = 4.0
IDLE_RATE = 1e-9


def kv_cache_bytes(model: ModelCard, kv_dtype: str, batch: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """KV cache of ``batch`` sequences of ``tokens`` tokens each, all layers."""
    return model.kv_bytes_per_token(kv_dtype) * np.asarray(batch, float) * np.asarray(tokens, float)


def activation_peak_bytes(model: ModelCard, batch: np.ndarray, input_tokens: np.ndarray, chunk_tokens: int,
                          tp: np.ndarray) -> np.ndarray:
    """Peak transient memory of one prefill chunk: hidden states and FFN intermediates, plus fp32 logits.

    tokens_in_chunk * (4h + 2 * active FFN width) * 2 bytes / tp  +  batch * vocab * 4 bytes.
    """
    chunk = np.minimum(np.asarray(batch, float) * input_tokens, chunk_tokens)
    ffn_width = (2 if model.ffn_gated else 1) * model.intermediate_size * model.num_experts_per_token
    hidden = chunk * (4 * model.hidden_size + 2 * ffn_width) * ACTIVATION_BYTES / tp
    return hidden + np.asarray(batch, float) * model.vocab_size * LOGIT_BYTES


@dataclass(frozen=True)
class Estimate:
    """Per-candidate predictions (arrays); times in seconds, memory in bytes per GPU unless named."""

    weights_per_gpu: np.ndarray
    kv_total: np.ndarray
    kv_resident_per_gpu: np.ndarray
    activation_per_gpu: np.ndarray
    gpu_mem_required: np.ndarray
    gpu_mem_usable: np.ndarray
    min_offload_ratio: np.ndarray
    host_kv_bytes: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    tokens_per_s: np.ndarray
    output_tokens_per_s: np.ndarray
    requests_per_s: np.ndarray


@dataclass(frozen=True)
class Serving:
    """How the rows are served: engine, coefficients, mode and (online) the SLO the capacity must keep."""

    engine: EngineProfile
    theta: np.ndarray  # rows x 6 calibrated coefficients
    online: bool = False
    bounds: dict[str, np.ndarray] | None = None  # ttft/tpot/e2e seconds, NaN = none (online capacity)
    percentiles: dict[str, str] | None = None  # ttft/tpot/e2e -> mean|p50|p90|p99
    error_factors: dict[str, np.ndarray] | None = None  # ttft/tpot/e2e: inflate predictions by (confidence)


def make_serving(calibration: Calibration, *, engine: str, dtype: str, mode: str, percentiles: dict[str, str],
                 gpus: np.ndarray, bounds: dict[str, np.ndarray], confidence: float) -> Serving:
    """Serving description of rows on ``gpus``: coefficients per GPU, and the error headroom at ``confidence``
    (TTFT and TPOT from their own residuals, E2E from the throughput residuals)."""
    profile = find_engine(engine)
    names, inverse = factorize(gpus)
    factors = {metric: np.array([calibration.error_factor(profile.engine, g, kind, confidence) for g in names]
                                )[inverse].astype(float)
               for metric, kind in (("ttft", "ttft"), ("tpot", "tpot"), ("e2e", "throughput"))}
    return Serving(engine=profile, theta=calibration.theta_rows(profile, gpus, dtype),
                   online=(mode == "online" and profile.scheduling == "continuous"), bounds=bounds,
                   percentiles=percentiles, error_factors=factors)


def memory(model: ModelCard, hw: Hardware, *, dtype: str, kv_dtype: str, batch: np.ndarray,
           input_tokens: np.ndarray, output_tokens: np.ndarray, tp: np.ndarray, offload_ratio: np.ndarray | float,
           gpu_memory_utilization: float, prefill_chunk_tokens: int) -> dict[str, np.ndarray]:
    """Memory per GPU and the smallest offload ratio that fits (inf where nothing fits)."""
    batch, tp, r = np.asarray(batch, float), np.asarray(tp, float), np.asarray(offload_ratio, float)
    seq = np.asarray(input_tokens, float) + output_tokens
    kv_total = kv_cache_bytes(model, kv_dtype, batch, seq)
    weights = weight_bytes(model, dtype) / tp
    act = activation_peak_bytes(model, batch, input_tokens, prefill_chunk_tokens, tp)
    usable = hw.memory_bytes * gpu_memory_utilization
    layer_kv = kv_total / model.num_layers / tp
    resident = np.maximum((1.0 - r) * kv_total / tp, np.where(r > 0, layer_kv, 0.0))
    avail = usable - weights - act
    min_r = np.where(avail >= kv_total / tp, 0.0, 1.0 - np.maximum(avail, 0.0) * tp / np.maximum(kv_total, 1.0))
    min_r = np.where((avail < layer_kv) | (weights >= usable), np.inf, min_r)
    return dict(weights_per_gpu=np.broadcast_to(weights, batch.shape).astype(float), kv_total=kv_total,
                kv_resident_per_gpu=resident, activation_per_gpu=act, gpu_mem_required=weights + resident + act,
                gpu_mem_usable=usable, min_offload_ratio=min_r, host_kv_bytes=r * kv_total)


def distinct_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct combination of the columns, each row's index into those firsts).

    Columns are 1-D per-row arrays or 2-D (rows x k); rows equal in every value (bit for bit) are one. Each
    column's bit patterns are hashed (``pandas.factorize``) and the codes combined column by column, so no
    wide key is sorted; distinct rows come in order of first appearance."""
    import pandas as pd

    width = max(np.shape(c)[0] for c in columns if np.ndim(c))
    codes, count = np.zeros(width, dtype=np.int64), 1
    for column in columns:
        values = np.asarray(column, float).reshape(width, -1) if np.ndim(column) else np.full((width, 1), float(column))
        for j in range(values.shape[1]):
            bits = np.ascontiguousarray(values[:, j]).view(np.int64)
            part, uniques = pd.factorize(bits)
            if count * len(uniques) >= 2**62:  # keep the combined code in 64 bits: renumber what is there so far
                codes, seen = pd.factorize(codes)
                count = len(seen)
            codes, count = codes * len(uniques) + part, count * len(uniques)
    inverse, distinct = pd.factorize(codes)
    first = np.empty(len(distinct), dtype=np.intp)
    first[inverse[::-1]] = np.arange(width)[::-1]
    return first, np.asarray(inverse, dtype=np.intp)


def _latency(shape: Shape, batch: np.ndarray, serving: Serving, factors: dict[str, np.ndarray]
             ) -> dict[str, np.ndarray]:
    """Latencies and throughputs of the rows of ``shape`` (online: at their capacity), inflated by ``factors``."""
    l_in, l_out = shape.input_tokens, shape.output_tokens
    if serving.online:
        pct = serving.percentiles or {}
        bounds = {k: np.asarray((serving.bounds or {}).get(k, np.nan), float) * np.ones_like(batch) / factors[k]
                  for k in factors}
        capacity = online_capacity(shape, serving.theta, serving.engine, batch, bounds, pct)
        state = online_state(shape, serving.theta, serving.engine, batch, np.maximum(capacity, IDLE_RATE), pct)
        ttft, tpot, e2e = state.ttft_s, state.tpot_s, state.e2e_s
        rps = capacity
        tokens_per_s, out_per_s = capacity * (l_in + l_out), capacity * l_out
    else:
        ttft, tpot = static_latency(shape, serving.theta, batch, serving.engine.chunk_tokens)
        e2e = ttft + (l_out - 1.0) * tpot
        e2e_f = e2e * factors["e2e"]
        rps = batch / e2e_f
        tokens_per_s, out_per_s = batch * (l_in + l_out) / e2e_f, batch * l_out / e2e_f
    return dict(ttft_s=ttft * factors["ttft"], tpot_s=tpot * factors["tpot"], e2e_s=e2e * factors["e2e"],
                tokens_per_s=tokens_per_s, output_tokens_per_s=out_per_s, requests_per_s=rps)


def estimate(model: ModelCard, hw: Hardware, *, dtype: str, kv_dtype: str, batch: np.ndarray,
             input_tokens: np.ndarray, output_tokens: np.ndarray, tp: np.ndarray,
             offload_ratio: np.ndarray | float, serving: Serving, gpu_memory_utilization: float = 0.9,
             prefill_chunk_tokens: int = 8192, latency_rows: np.ndarray | None = None) -> Estimate:
    """Memory and latency of one engine replica (``tp`` GPUs); ``batch`` is the static batch (offline) or the
    concurrency cap, max running sequences (online).

    Latencies are computed once per distinct row: a candidate table repeats the same replica on every VM size
    of a GPU and for every demand of the same shape, and an online row's capacity search is the costly part.
    With ``latency_rows`` (a mask) only those rows get latencies, the others NaN (memory is computed for all)."""
    batch = np.asarray(batch, float)
    l_in, l_out = np.asarray(input_tokens, float), np.asarray(output_tokens, float)
    r = np.broadcast_to(np.asarray(offload_ratio, float), batch.shape)
    mem = memory(model, hw, dtype=dtype, kv_dtype=kv_dtype, batch=batch, input_tokens=l_in, output_tokens=l_out,
                 tp=tp, offload_ratio=r, gpu_memory_utilization=gpu_memory_utilization,
                 prefill_chunk_tokens=prefill_chunk_tokens)
    ones = np.ones_like(batch)
    shape = Shape(model, hw, dtype, kv_dtype, np.asarray(tp, float) * ones, l_in * ones, l_out * ones, r)
    factors = {k: np.asarray((serving.error_factors or {}).get(k, 1.0), float) * ones for k in ("ttft", "tpot", "e2e")}
    bounds = {k: np.asarray((serving.bounds or {}).get(k, np.nan), float) * ones for k in factors}
    theta = np.asarray(serving.theta, float) * ones[:, None] if len(ones) else np.asarray(serving.theta, float)
    rows = np.arange(len(ones)) if latency_rows is None else np.flatnonzero(latency_rows)
    columns = [getattr(hw, k) * ones for k in Hardware.__dataclass_fields__]
    columns += [shape.tp, batch, shape.input_tokens, shape.output_tokens, r, theta, *factors.values(), *bounds.values()]
    first, inverse = distinct_rows(*(c[rows] for c in columns)) if len(rows) else (np.arange(0), np.arange(0))
    first = rows[first]
    distinct = Serving(engine=serving.engine, theta=theta[first], online=serving.online,
                       bounds={k: b[first] for k, b in bounds.items()}, percentiles=serving.percentiles)
    out = _latency(shape.take(first), batch[first], distinct, {k: f[first] for k, f in factors.items()})
    if latency_rows is None:
        return Estimate(**mem, **{k: v[inverse] for k, v in out.items()})
    full = {k: np.full(len(ones), np.nan) for k in out}
    for k, v in out.items():
        full[k][rows] = v[inverse]
    return Estimate(**mem, **full)
