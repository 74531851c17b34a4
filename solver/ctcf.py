"""Compute Time Calibration Function: fit, score, save and load per-GPU, per-phase corrections.

The paper (Eq. 7) fits ``measured = alpha * theoretical + beta`` by least squares per instance. We fit the same
linear form per GPU and phase, with the offset per layer (``form="per_layer"``; ``form="paper"`` keeps a constant
offset in seconds), on relative residuals (so a 10 ms and a 10 s measurement weigh alike), with coefficients kept
non-negative, and shrunk towards the all-GPU fit so that a GPU with few rows borrows strength from the rest.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from .catalog import CATALOG_DIR
from .errors import CatalogError
from .measurements import Terms
from .perf import UNCALIBRATED, Calibration, PhaseCoefficients

DEFAULT_CALIBRATION = CATALOG_DIR / "calibration.json"
SHRINK_ROWS = 4.0  # the prior weighs like this many measurements
BETA_SCALE_S = 1e-4  # typical per-layer offset, to put alpha and beta on one scale in the prior


def _layers(terms: Terms, form: str) -> np.ndarray:
    """Columns of A that carry beta: per layer (n) or constant (1)."""
    A = terms.A.copy()
    if form == "paper":
        n = np.where(A[:, 1] > 0, A[:, 1], np.where(A[:, 3] > 0, A[:, 3], 1.0))
        A[:, 1] = np.where(A[:, 1] > 0, 1.0, 0.0)
        A[:, 3] = A[:, 3] / n
    return A


def fit_coefficients(A: np.ndarray, c: np.ndarray, measured: np.ndarray, prior: np.ndarray | None = None,
                     weight: float = 0.0) -> np.ndarray:
    """Non-negative least squares on relative residuals, optionally shrunk towards ``prior``."""
    rows = A / measured[:, None]
    target = (measured - c) / measured
    if prior is not None and weight > 0:
        scale = np.array([max(prior[0], 1e-3), BETA_SCALE_S, max(prior[2], 1e-3), BETA_SCALE_S, max(prior[4], 1e-3)])
        rows = np.vstack([rows, np.sqrt(weight) * np.diag(1.0 / scale)])
        target = np.concatenate([target, np.sqrt(weight) * prior / scale])
    used = np.abs(rows).sum(axis=0) > 0
    theta = np.array([1.0, 0.0, 1.0, 0.0, 1.0]) if prior is None else prior.copy()
    if used.any():
        theta[used], _ = nnls(rows[:, used], target)
    return theta


def fit(terms: Terms, form: str = "per_layer", source: str = "") -> Calibration:
    """Per-GPU CTCF from measurement terms: a pooled fit first, then each GPU shrunk towards it."""
    A = _layers(terms, form)
    pooled = fit_coefficients(A, terms.c, terms.measured_time)
    per_gpu = {}
    for gpu, idx in terms.rows.groupby("gpu").indices.items():
        theta = fit_coefficients(A[idx], terms.c[idx], terms.measured_time[idx], pooled, SHRINK_ROWS)
        per_gpu[str(gpu)] = PhaseCoefficients(*map(float, theta))
    return Calibration(per_gpu, PhaseCoefficients(*map(float, pooled)), source or f"fit ({form})")


def predict_times(terms: Terms, calibration: Calibration, form: str = "per_layer") -> np.ndarray:
    """Predicted times (same meaning as ``terms.measured_time``) under a calibration."""
    A = _layers(terms, form)
    theta = np.array([[*vars(calibration.for_gpu(g)).values()] for g in terms.rows["gpu"]], float)
    return (A * theta).sum(axis=1) + terms.c


def metric_error(terms: Terms, predicted_time: np.ndarray) -> np.ndarray:
    """Error in the unit the metric was published in (throughput rows scored as throughput)."""
    is_rate = terms.rows["metric"].str.endswith("_per_s").to_numpy()
    pred = np.where(is_rate, terms.measured_time / predicted_time, predicted_time / terms.measured_time)
    return 100.0 * np.abs(pred - 1.0)


def save_calibration(calibration: Calibration, path: Path, meta: dict | None = None) -> None:
    payload = {"source": calibration.source, "form": "per_layer", **(meta or {}),
               "default": vars(calibration.default),
               "per_gpu": {g: vars(c) for g, c in sorted(calibration.per_gpu.items())}}
    from .io import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_calibration(name: str | None, base: Path | None = None) -> Calibration:
    """``None`` -> the shipped default (if present); ``"none"`` -> uncalibrated roofline; else a JSON path."""
    if name == "none":
        return UNCALIBRATED
    path = DEFAULT_CALIBRATION if name is None else Path(name)
    if name is not None and base is not None and not path.is_absolute() and not path.exists():
        path = base / name
    if name is None and not path.exists():
        return UNCALIBRATED
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        per_gpu = {g: PhaseCoefficients(**c) for g, c in data["per_gpu"].items()}
        calib = Calibration(per_gpu, PhaseCoefficients(**data["default"]), data.get("source", str(path)))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CatalogError(f"bad calibration file: {type(exc).__name__}: {exc}", path=str(path)) from None
    for gpu, coeffs in [("default", calib.default), *per_gpu.items()]:
        if not all(np.isfinite(v) and v >= 0 for v in vars(coeffs).values()):
            raise CatalogError("coefficients must be finite and non-negative", path=str(path), field=gpu)
    return calib


def split_train_test(frame: pd.DataFrame, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices for a random split stratified by GPU (every GPU with 2+ rows appears in both)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for _, idx in sorted(frame.groupby("gpu").indices.items()):
        idx = rng.permutation(idx)
        k = int(round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train, int)), np.sort(np.array(test, int))
