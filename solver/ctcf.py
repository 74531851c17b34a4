"""Compute Time Calibration Function: fit and score per-GPU, per-phase corrections (scipy's NNLS).

Saving and loading a calibration lives in ``calibration.py``, so planning never imports the fitting code.

The paper (Eq. 7) fits ``measured = alpha * theoretical + beta`` by least squares per instance. We fit the same
linear form per GPU and phase, with the offset per layer (``form="per_layer"``; ``form="paper"`` keeps a constant
offset in seconds), on relative residuals (so a 10 ms and a 10 s measurement weigh alike), with coefficients kept
non-negative, and shrunk towards the all-GPU fit so that a GPU with few rows borrows strength from the rest.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from .measurements import Terms
from .perf import UNCALIBRATED, Calibration, PhaseCoefficients

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


def split_train_test(frame: pd.DataFrame, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices for a random split stratified by GPU (every GPU with 2+ rows appears in both)."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for _, idx in sorted(frame.groupby("gpu").indices.items()):
        idx = rng.permutation(idx)
        k = int(round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))
