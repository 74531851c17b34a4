"""Fit the per-operator roofline's coefficients to measurements, per (engine, GPU), with shrinkage.

Each row's coefficients are its prior (``calibration.prior_theta``: achieved GEMM/HBM efficiency of its GPU,
the overhead priors of its engine) times a multiplier vector ``m``; the predicted time is linear in ``m`` for a
fixed roofline branch. Multipliers are fitted by non-negative least squares on relative residuals (a 10 ms and
a 10 s measurement weigh alike, every source document about equally), each level shrunk towards the one above:

    all rows (-> 1)  ->  per GPU (efficiencies)  and  per engine (overheads)  ->  per (engine, GPU)

so a GPU with few rows borrows strength from the rest, and a GPU with none keeps its own prior (scaled by the
pooled multiplier) instead of another GPU's fit. Three passes re-linearise the roofline branch and the
open-loop iteration mix at the current fit.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from .calibration import Calibration, prior_theta
from .measured import Dataset, linear_system
from .roofline import GEMM_UNHIDDEN_SHARE

SHRINK_ROWS = 4.0  # a level's prior weighs like this many (relative-residual) rows
GLOBAL_SHRINK_ROWS = 8.0
PASSES = 3
EFFICIENCY, OVERHEAD = slice(0, 4), slice(4, 6)


def _fit_multiplier(A: np.ndarray, c: np.ndarray, y: np.ndarray, w: np.ndarray, prior_m: np.ndarray,
                    shrink: float, lower: np.ndarray | None = None) -> np.ndarray:
    """argmin_{m >= lower} sum w (A m + c - y)^2 / y^2 + shrink * |m - prior_m|^2 (lower defaults to 0)."""
    rows = A / y[:, None] * np.sqrt(w)[:, None]
    target = (y - c) / y * np.sqrt(w)
    rows = np.vstack([rows, np.sqrt(shrink) * np.eye(A.shape[1])])
    target = np.concatenate([target, np.sqrt(shrink) * prior_m])
    lb = np.zeros(A.shape[1]) if lower is None else np.asarray(lower, float)
    start = np.maximum(prior_m, lb)
    return lsq_linear(rows, target, bounds=(lb, np.full(A.shape[1], np.inf)), method="bvls").x if len(target) else start


def _row_weights(rows: pd.DataFrame) -> np.ndarray:
    """Every source document weighs about the same: 1 / sqrt(its row count), normalised to mean 1."""
    counts = rows.groupby("source_id")["source_id"].transform("size").to_numpy(float)
    w = 1.0 / np.sqrt(counts)
    return w / w.mean()


def fit(data: Dataset, source: str = "", form: str = "hierarchical") -> Calibration:
    """Calibration from measurements. ``form="paper"``: the paper's Eq. 7 per GPU (one factor on the whole
    roofline, one constant offset per iteration, no engine level), for comparison: on the pure roofline (no
    unhidden GEMM share), as the paper has it."""
    share = 0.0 if form == "paper" else GEMM_UNHIDDEN_SHARE
    base = np.array([prior_theta(g, m.engine) for g, m in zip(data.rows["gpu"], data.models)])
    # a row's prior includes its engine's quantised-kernel efficiency; levels store fp16-equivalent values
    eff = np.array([m.engine.kernel_efficiency(m.shape.dtype) for m in data.models])
    priors = base * np.column_stack([1 / eff, 1 / eff, np.ones((len(eff), 4))])
    y, w = data.measured, _row_weights(data.rows)
    gpus, engines = data.rows["gpu"].to_numpy(), data.rows["profile"].to_numpy()
    calib = Calibration(global_theta=np.ones(6), source=source or "fit")
    thetas = priors.copy()
    for _ in range(PASSES):
        A, c = linear_system(data, thetas, share)
        Ap = A * priors
        if form == "paper":
            # one multiplier on the four roofline parts, one on the per-iteration offset, per GPU
            Ap = np.stack([Ap[:, :4].sum(axis=1), Ap[:, 4] + Ap[:, 5]], axis=1)
            per_gpu = {}
            for g in np.unique(gpus):
                idx = gpus == g
                m2 = _fit_multiplier(Ap[idx], c[idx], y[idx], w[idx], np.ones(2), 1e-6)
                per_gpu[str(g)] = np.array([m2[0]] * 4 + [m2[1]] * 2)
            thetas = priors * np.array([per_gpu[str(g)] for g in gpus])
            calib = _paper_calibration(per_gpu, data, base, source)
            continue
        m_all = _fit_multiplier(Ap, c, y, w, np.ones(6), GLOBAL_SHRINK_ROWS)
        m_gpu = {str(g): _fit_multiplier(Ap[gpus == g], c[gpus == g], y[gpus == g], w[gpus == g], m_all,
                                         SHRINK_ROWS, _at_most_peak(base, gpus == g)) for g in np.unique(gpus)}
        m_eng = {str(e): _fit_multiplier(Ap[engines == e], c[engines == e], y[engines == e], w[engines == e],
                                         m_all, SHRINK_ROWS) for e in np.unique(engines)}
        m_pair = {}
        for g, e in sorted({(str(g), str(e)) for g, e in zip(gpus, engines)}):
            idx = (gpus == g) & (engines == e)
            prior_m = np.concatenate([m_gpu[g][EFFICIENCY], m_eng[e][OVERHEAD]])
            m_pair[(g, e)] = _fit_multiplier(Ap[idx], c[idx], y[idx], w[idx], prior_m, SHRINK_ROWS,
                                             _at_most_peak(base, idx))
        thetas = priors * np.array([m_pair[(str(g), str(e))] for g, e in zip(gpus, engines)])
        calib = _calibration(m_all, m_gpu, m_eng, m_pair, data, base, source)
    return calib


def _at_most_peak(base: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Lower bounds on one GPU's multipliers so that no efficiency factor drops below 1: no kernel beats the
    datasheet peak FLOPS or bandwidth (overheads only need to be non-negative)."""
    prior = base[np.flatnonzero(mask)[0]]
    return np.concatenate([1.0 / prior[EFFICIENCY], np.zeros(2)])


def _first_prior(data: Dataset, priors: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return priors[np.flatnonzero(mask)[0]]


def _calibration(m_all: np.ndarray, m_gpu: dict[str, np.ndarray], m_eng: dict[str, np.ndarray],
                 m_pair: dict[tuple[str, str], np.ndarray], data: Dataset, priors: np.ndarray,
                 source: str) -> Calibration:
    gpus, engines = data.rows["gpu"].to_numpy(), data.rows["profile"].to_numpy()
    per_gpu = {g: _first_prior(data, priors, gpus == g) * m for g, m in m_gpu.items()}
    per_engine = {e: _first_prior(data, priors, engines == e) * m for e, m in m_eng.items()}
    per_pair = {f"{e}|{g}": _first_prior(data, priors, (gpus == g) & (engines == e)) * m
                for (g, e), m in m_pair.items()}
    return Calibration(global_theta=m_all, per_gpu=per_gpu, per_engine=per_engine, per_engine_gpu=per_pair,
                       source=source or "fit")


def _paper_calibration(per_gpu_m: dict[str, np.ndarray], data: Dataset, priors: np.ndarray,
                       source: str) -> Calibration:
    gpus, engines = data.rows["gpu"].to_numpy(), data.rows["profile"].to_numpy()
    pairs = {f"{e}|{g}": _first_prior(data, priors, (gpus == g) & (engines == e)) * per_gpu_m[g]
             for g, e in {(str(g), str(e)) for g, e in zip(gpus, engines)}}
    return Calibration(global_theta=np.ones(6), per_engine_gpu=pairs, source=source or "paper form")


def row_thetas(calibration: Calibration, data: Dataset) -> np.ndarray:
    """Coefficients each row is predicted with under ``calibration``."""
    return np.array([calibration.theta(m.engine, g, m.shape.dtype)
                     for g, m in zip(data.rows["gpu"], data.models)])
