"""``predict``: the planner's own numbers for one configuration, for people who want to check them."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .calibration import load_calibration
from .catalog import find_gpu, find_model, load_catalog, suggest
from .errors import InputError, UnknownNameError
from .field_checks import MAX_TENSOR_PARALLEL
from .perf import GIB, Hardware, estimate, make_serving
from .schema import DTYPE_BYTES, Frozen, Settings, default_kv_dtype
from .table import offload_fits


class Prediction(Frozen):
    model: str
    gpu: str
    gpu_count: int
    batch_size: int
    input_tokens: int
    output_tokens: int
    dtype: str
    kv_dtype: str
    ttft_s: float | None
    tpot_s: float | None
    e2e_s: float | None
    tokens_per_s: float | None
    output_tokens_per_s: float | None
    gpu_mem_gib: float
    gpu_mem_usable_gib: float
    offload_ratio: float | None
    fits: bool
    online_requests_per_s: float | None  # one replica under continuous batching, at most batch_size running
    why: str
    calibration: str


def predict(*, model: str, gpu: str | None = None, instance: str | None = None, gpu_count: int | None = None,
            batch_size: int = 1, input_tokens: int, output_tokens: int, dtype: str = "fp16",
            kv_dtype: str | None = None, offload_ratio: float | None = None,
            calibration: str | None = None, gpu_memory_utilization: float = 0.9,
            engine: str = "vllm", catalogs: Sequence[Path] = (), models: Sequence[Path] = ()) -> Prediction:
    """Predict one configuration. ``offload_ratio=None`` picks the smallest ratio that fits GPU memory.

    ``gpu_count`` is the tensor-parallel degree (default: 1 for a GPU, all the instance's GPUs for an instance).
    ``catalogs`` (catalog files or folders) and ``models`` (model-card folders) extend or override the shipped
    data, as ``--catalog`` and ``--models`` do.
    """
    for name, value in (("dtype", dtype), ("kv_dtype", kv_dtype)):
        if value is not None and value not in DTYPE_BYTES:
            raise InputError(f"unknown precision {value!r}; choose one of {', '.join(DTYPE_BYTES)}", field=name)
    if min(batch_size, input_tokens, output_tokens) <= 0:
        raise InputError("batch, input and output must be positive", field="batch_size")
    if (gpu is None) == (instance is None):
        raise InputError("give exactly one of gpu or instance", field="gpu")
    card = find_model(model, dirs=models)
    if instance is not None:
        offers = load_catalog(extra=catalogs)
        matches = [i for i in offers if i.instance_type.lower() == instance.lower()]
        if not matches:
            types = sorted({i.instance_type for i in offers})
            raise UnknownNameError(f"unknown instance type {instance!r}{suggest(instance, types)}", field="instance")
        spec, gpu_count = find_gpu(matches[0].gpu), gpu_count or matches[0].gpu_count
        host_gib, vm_gpus = matches[0].host_mem_gib, matches[0].gpu_count
    else:
        spec, gpu_count = find_gpu(str(gpu)), gpu_count or 1
        host_gib, vm_gpus = None, gpu_count
    if card.num_attention_heads % gpu_count or gpu_count > MAX_TENSOR_PARALLEL:
        raise InputError(f"{gpu_count} GPUs do not split {card.name}'s {card.num_attention_heads} attention heads "
                         f"evenly (tensor parallelism divides the heads; at most {MAX_TENSOR_PARALLEL})",
                         field="gpus")
    kv = default_kv_dtype(dtype, kv_dtype)
    if input_tokens + output_tokens > card.max_position_embeddings:
        raise InputError(f"{input_tokens + output_tokens} tokens exceed {card.name}'s context window of "
                         f"{card.max_position_embeddings}", field="input_tokens")
    calib = load_calibration(calibration)
    serving = make_serving(calib, engine=engine, dtype=dtype, mode="offline", percentiles={},
                           gpus=np.array([spec.gpu]), bounds={}, confidence=0.5)
    args: dict[str, Any] = dict(dtype=dtype, kv_dtype=kv, batch=np.array([batch_size]), input_tokens=np.array([input_tokens]),
                output_tokens=np.array([output_tokens]), tp=np.array([gpu_count]), serving=serving,
                gpu_memory_utilization=gpu_memory_utilization)
    hw = Hardware.from_specs([spec], dtype)
    probe = estimate(card, hw, offload_ratio=0.0, **args)
    min_r = float(probe.min_offload_ratio[0])
    # the planner's offload levels: the smallest multiple of the step at or above the minimum
    step = Settings().offload_step
    ratio = min(math.ceil(round(min_r / step, 9)) * step, 1.0) if offload_ratio is None and math.isfinite(min_r) \
        else (min_r if offload_ratio is None else offload_ratio)
    fits = bool(offload_fits(ratio, min_r))
    why = ""
    if not math.isfinite(min_r):
        why = (f"weights alone need {probe.weights_per_gpu[0] / GIB:.1f} GiB per GPU of "
               f"{probe.gpu_mem_usable[0] / GIB:.1f} usable" if probe.weights_per_gpu[0] >= probe.gpu_mem_usable[0]
               else "not even one layer's KV cache fits beside the weights")
    elif not fits:
        why = f"needs at least {min_r:.0%} of the KV cache offloaded to host memory"
    est = estimate(card, hw, offload_ratio=ratio if math.isfinite(ratio) else 0.0, **args)
    # the same configuration as an online pool with no latency bound: the capacity the planner divides demand by
    online = make_serving(calib, engine=engine, dtype=dtype, mode="online", percentiles={},
                          gpus=np.array([spec.gpu]), bounds={}, confidence=0.5)
    capacity = estimate(card, hw, offload_ratio=ratio if math.isfinite(ratio) else 0.0,
                        **{**args, "serving": online}).requests_per_s
    host_need_gib = float(est.host_kv_bytes[0]) * (vm_gpus // gpu_count) / GIB
    if fits and host_gib is not None and host_need_gib > host_gib * Settings().host_memory_utilization:
        fits, why = False, (f"offloaded KV needs {host_need_gib:.1f} GiB of host memory; the instance has "
                            f"{host_gib:g} GiB ({Settings().host_memory_utilization:.0%} usable)")

    def val(x: np.ndarray) -> float | None:
        return float(x[0]) if fits else None

    return Prediction(
        model=card.name, gpu=spec.gpu, gpu_count=gpu_count, batch_size=batch_size, input_tokens=input_tokens,
        output_tokens=output_tokens, dtype=dtype, kv_dtype=kv, ttft_s=val(est.ttft_s), tpot_s=val(est.tpot_s),
        e2e_s=val(est.e2e_s), tokens_per_s=val(est.tokens_per_s), output_tokens_per_s=val(est.output_tokens_per_s),
        gpu_mem_gib=float(est.gpu_mem_required[0]) / GIB, gpu_mem_usable_gib=float(est.gpu_mem_usable[0]) / GIB,
        offload_ratio=round(ratio, 6) if math.isfinite(ratio) else None, fits=fits, why=why,
        online_requests_per_s=float(capacity[0]) if fits and online.online else None, calibration=calib.source,
    )

