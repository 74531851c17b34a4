"""Held-out accuracy of the serving model, and the error distribution the planner hedges against.

Every group (a source document, an organisation, a GPU type) is held out in turn: the coefficients are fitted
on the other groups and scored on the held-out rows. Three models are compared: the uncalibrated roofline
(datasheet peaks, no overheads, GEMMs at max(compute, bytes)), the paper's Eq. 7 (one factor and one constant
offset per GPU on that roofline), and ours (per-operator roofline with efficiency priors and the unhidden GEMM
share, per (engine, GPU) fit with shrinkage). The leave-one-source-out
residuals, log(measured / predicted) time, become the error quantiles that ``confidence`` inflates latencies by.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .calibration import UNCALIBRATED, Calibration, gpu_class
from .fitting import fit, row_thetas
from .measured import PHASE, Dataset, metric_error, predict_times
from .roofline import GEMM_UNHIDDEN_SHARE

KIND = {"ttft": "TTFT", "tpot": "TPOT", "throughput": "throughput"}
ERROR_QUANTILES = (0.01, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 0.99)
MIN_ROWS_FOR_QUANTILES = 8


def organisation(source_id: str) -> str:
    """Documents of one organisation share an id prefix (trtllm-perf-v0.6, trtllm-perf-v0.9, ...)."""
    return "nvidia-trtllm" if source_id.startswith("trtllm") else source_id.split("-")[0]


def held_out(data: Dataset, groups: np.ndarray) -> pd.DataFrame:
    """Per row: errors of the three models, each fitted without the row's group, and our log residual."""
    out = {k: np.full(len(groups), np.nan) for k in ("paper", "ours", "log_residual")}
    for group in sorted(set(groups)):
        test, train = np.flatnonzero(groups == group), np.flatnonzero(groups != group)
        if len(train) < 4:
            continue
        held = data.subset(test)
        for name, form in (("paper", "paper"), ("ours", "hierarchical")):
            calib = fit(data.subset(train), form=form)
            share = 0.0 if form == "paper" else GEMM_UNHIDDEN_SHARE  # the paper's Eq. 7 sits on the pure roofline
            predicted = predict_times(held, row_thetas(calib, held), share)
            out[name][test] = metric_error(held, predicted)
            if name == "ours":
                out["log_residual"][test] = np.log(held.measured / predicted)
    roofline = metric_error(data, predict_times(data, row_thetas(UNCALIBRATED, data), 0.0))
    rows = data.rows
    return pd.DataFrame({"source_id": rows["source_id"], "gpu": rows["gpu"], "engine": rows["profile"],
                         "gpu_class": rows["gpu"].map(gpu_class), "mode": rows["serving_mode"],
                         "kind": rows["metric"].map(PHASE).map(KIND), "roofline": roofline, **out})


def summary(errors: pd.DataFrame, by: str) -> pd.DataFrame:
    """Median and p90 absolute % error per ``by`` value and metric kind, for the three models."""
    table = []
    for key, part in [*sorted(errors.groupby(by)), ("ALL", errors)]:
        for kind, g in [*sorted(part.groupby("kind")), ("all", part)]:
            g = g.dropna(subset=["ours"])
            if g.empty:
                continue
            row = {by: key, "metric": kind, "rows": len(g)}
            for model in ("roofline", "paper", "ours"):
                row[f"{model} med %"] = np.median(g[model])
                row[f"{model} p90 %"] = np.percentile(g[model], 90)
            table.append(row)
    return pd.DataFrame(table).round(1)


def error_quantiles(errors: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Quantiles of log(measured / predicted) per ``engine|gpu_class|metric``, with ``*`` fallbacks."""
    errs = errors.dropna(subset=["log_residual"]).assign(metric=lambda f: f["kind"].str.lower())
    out: dict[str, dict[str, float]] = {}
    for keys in (["engine", "gpu_class", "metric"], ["engine", "metric"], ["metric"]):
        for values, g in errs.groupby(keys):
            values = values if isinstance(values, tuple) else (values,)
            if len(g) < MIN_ROWS_FOR_QUANTILES:
                continue
            named = dict(zip(keys, values))
            key = f"{named.get('engine', '*')}|{named.get('gpu_class', '*')}|{named['metric']}"
            out[key] = {str(q): float(np.quantile(g["log_residual"], q)) for q in ERROR_QUANTILES}
    return out


def with_error_quantiles(calibration: Calibration, quantiles: dict[str, dict[str, float]]) -> Calibration:
    return Calibration(global_theta=calibration.global_theta, per_gpu=calibration.per_gpu,
                       per_engine=calibration.per_engine, per_engine_gpu=calibration.per_engine_gpu,
                       error_quantiles=quantiles, source=calibration.source)
