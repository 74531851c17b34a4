"""The performance-model side of ``verify``: a plan's rows re-predicted, and the memory and SLO rules of a row.

Every (workload, request size, pool) row goes through ``perf.estimate`` in one vectorised call per kind of row
(model, precisions, engine, mode and SLO statistics: what one call must share), not one call per row: a call
costs ~25 ms whatever its length (serving description, hardware, capacity bisection), so verifying a
1,000-workload pooled plan row by row took ~28 s. The model is elementwise, so a row's prediction alone or in a
batch agrees to rounding (~1e-13 relative, far inside the checks' 1e-6). Like ``verify`` it uses only the
scenario, the catalog and the performance model, never the candidate table or the MILP.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .catalog import find_gpu
from .perf import GIB, Estimate, Hardware, Serving, estimate, make_serving
from .plan_types import Pool
from .scenario import Resolved
from .schema import Bucket, Instance, Workload

REL_TOL = 1e-6
Row = tuple[Workload, Bucket, Pool]
Kind = tuple[str, str, str, str, str, tuple[tuple[str, str], ...]]


def _kind(w: Workload) -> Kind:
    """What the rows of one ``estimate`` call share: model, precisions, engine, mode, SLO statistics."""
    return w.model, w.dtype, w.effective_kv_dtype, w.engine, w.mode, tuple(sorted(w.slo.percentiles().items()))


def _serving(resolved: Resolved, workloads: list[Workload], gpus: np.ndarray) -> Serving:
    """The rows' SLOs as the online capacity must keep them (the offline deadline is checked separately)."""
    w = workloads[0]
    bounds = {k: np.array([v if v is not None else np.nan for v in values], float)
              for k, values in (("ttft", [x.slo.max_ttft_s for x in workloads]),
                                ("tpot", [x.slo.max_tpot_s for x in workloads]),
                                ("e2e", [x.slo.max_e2e_s for x in workloads]))}
    return make_serving(resolved.calibration, engine=w.engine, dtype=w.dtype, mode=w.mode,
                        percentiles=w.slo.percentiles(), gpus=gpus, bounds=bounds,
                        confidence=resolved.scenario.confidence)


def predict_rows(resolved: Resolved, rows: Sequence[Row]) -> Estimate:
    """The model's predictions for every row, as arrays in the order of ``rows``."""
    out = {f.name: np.full(len(rows), np.nan) for f in dataclasses.fields(Estimate)}
    groups: defaultdict[Kind, list[int]] = defaultdict(list)
    for k, (w, _, _) in enumerate(rows):
        groups[_kind(w)].append(k)
    s = resolved.scenario.settings
    for index in groups.values():
        workloads = [rows[k][0] for k in index]
        buckets = [rows[k][1] for k in index]
        pools = [rows[k][2] for k in index]
        w, gpus = workloads[0], np.array([p.gpu for p in pools])
        est = estimate(resolved.models[w.model], Hardware.for_rows(gpus, w.dtype, find_gpu), dtype=w.dtype,
                       kv_dtype=w.effective_kv_dtype, batch=np.array([p.batch_size for p in pools]),
                       input_tokens=np.array([b.input_tokens for b in buckets]),
                       output_tokens=np.array([b.output_tokens for b in buckets]),
                       tp=np.array([p.tensor_parallel for p in pools]),
                       offload_ratio=np.array([p.offload_ratio for p in pools], float),
                       serving=_serving(resolved, workloads, gpus), gpu_memory_utilization=s.gpu_memory_utilization,
                       prefill_chunk_tokens=s.prefill_chunk_tokens)
        for name, column in out.items():
            column[index] = np.broadcast_to(getattr(est, name), (len(index),))
    return Estimate(**out)


def row_rules(resolved: Resolved, w: Workload, p: Pool, inst: Instance, est: Estimate, k: int) -> list[str]:
    """Memory and SLO of one demand of ``w`` on pool ``p``, from row ``k`` of ``est``."""
    bad = []
    need = float(est.gpu_mem_required[k]) / GIB
    if not math.isfinite(float(est.min_offload_ratio[k])) or need > float(est.gpu_mem_usable[k]) / GIB + 1e-9 \
            or p.offload_ratio + 1e-9 < est.min_offload_ratio[k]:
        bad.append(f"memory[{w.name}@{p.pool}]: needs {need:.2f} GiB per GPU at offload {p.offload_ratio:.0%}")
    host = float(est.host_kv_bytes[k]) * (inst.gpu_count // max(p.tensor_parallel, 1)) / GIB
    if host > inst.host_mem_gib * resolved.scenario.settings.host_memory_utilization + 1e-9:
        bad.append(f"memory[{w.name}@{p.pool}]: {host:.1f} GiB offloaded KV exceeds host RAM")
    deadline = w.deadline_hours if w.mode == "offline" else None
    for label, value, bound, sense in (("TTFT", est.ttft_s[k], w.slo.max_ttft_s, 1),
                                       ("TPOT", est.tpot_s[k], w.slo.max_tpot_s, 1),
                                       ("E2E", est.e2e_s[k], w.slo.max_e2e_s, 1),
                                       ("TPS", est.tokens_per_s[k], w.slo.min_tokens_per_s, -1),
                                       ("deadline", est.e2e_s[k] / 3600, deadline, 1)):
        if bound is not None and sense * (value - bound) > REL_TOL * bound:
            bad.append(f"slo[{w.name}@{p.pool}]: {label} {value:.4g} breaks bound {bound:g}")
    return bad
