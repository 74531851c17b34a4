"""``calibrate``: fit the CTCF on a training split, report per-GPU error before/after on the held-out rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .ctcf import fit, metric_error, predict_times, split_train_test
from .errors import CatalogError
from .measurements import Terms, in_scope, linear_terms, load_measurements
from .perf import UNCALIBRATED, Calibration


def subset(terms: Terms, idx: np.ndarray) -> Terms:
    return Terms(terms.A[idx], terms.c[idx], terms.measured_time[idx], terms.batch[idx],
                 terms.rows.iloc[idx].reset_index(drop=True))


def error_table(terms: Terms, calibrations: dict[str, Calibration],
                forms: dict[str, str] | None = None) -> pd.DataFrame:
    """Median and p90 absolute % error per GPU (and overall) for each calibration (``forms``: its CTCF form)."""
    frame = terms.rows[["gpu"]].copy()
    for name, calib in calibrations.items():
        frame[name] = metric_error(terms, predict_times(terms, calib, (forms or {}).get(name, "per_layer")))
    rows = []
    for gpu, g in [*sorted(frame.groupby("gpu")), ("ALL", frame)]:
        row = {"gpu": gpu, "rows": len(g)}
        for name in calibrations:
            row[f"{name}_median_%"] = round(float(np.median(g[name])), 1)
            row[f"{name}_p90_%"] = round(float(np.percentile(g[name], 90)), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def usable_terms(path: Path, scope: bool = True) -> Terms:
    """Linear terms of the rows the planner models (``scope=False``: of every row)."""
    frame = load_measurements(path)
    frame = frame[in_scope(frame)] if scope else frame
    terms = linear_terms(frame.reset_index(drop=True))
    if len(terms.measured_time) < 4:
        raise CatalogError("fewer than 4 usable measurement rows (models and GPUs must be known)", path=str(path))
    return terms


def calibrate_report(path: Path, *, test_fraction: float = 0.3, seed: int = 0) -> tuple[str, Calibration]:
    terms = usable_terms(path)
    train, test = split_train_test(terms.rows, test_fraction, seed)
    train_terms = subset(terms, train)
    paper = fit(train_terms, form="paper", source="paper form: alpha*t + beta (beta in seconds)")
    fitted = fit(train_terms, source=f"CTCF fitted on {path.name} (train split)")
    table = error_table(subset(terms, test), {"roofline": UNCALIBRATED, "paper_ctcf": paper, "ctcf": fitted},
                        {"paper_ctcf": "paper"})
    final = fit(terms, source=f"CTCF fitted on {path.name} ({len(terms.measured_time)} rows)")
    coeffs = pd.DataFrame([{"gpu": g, **vars(c)} for g, c in sorted(final.per_gpu.items())])
    text = (f"CTCF error on the held-out {test_fraction:.0%} of {len(terms.measured_time)} usable rows "
            f"(seed {seed}; absolute % error of each published metric; paper_ctcf = the paper's Eq. 7 with a "
            f"constant offset, ctcf = offset per layer, the form the planner uses):\n{table.to_string(index=False)}\n\n"
            f"coefficients fitted on all rows (alpha, beta per layer in seconds):\n{coeffs.to_string(index=False)}")
    return text, final
