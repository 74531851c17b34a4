"""ctcf (fitting), measurements (loading, linear terms), calibrate (report) and calibration files."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from solver.calibrate import calibrate_report, error_table, subset, usable_terms
from solver.calibration import load_calibration, save_calibration
from solver.ctcf import fit, fit_coefficients, metric_error, predict_times, split_train_test
from solver.errors import CatalogError
from solver.measurements import DEFAULT_MEASUREMENTS, in_scope, linear_terms, load_measurements
from solver.perf import UNCALIBRATED


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    """80 in-scope published rows over a few GPUs: enough to fit, quick to evaluate."""
    frame = load_measurements()
    frame = frame[in_scope(frame)]
    rows = frame.groupby("gpu", sort=True).head(12).head(80)
    path = tmp_path_factory.mktemp("m") / "small.csv"
    pd.read_csv(DEFAULT_MEASUREMENTS).loc[rows.index].to_csv(path, index=False)
    return path


def test_measurements_load_and_scope():
    frame = load_measurements()
    assert len(frame) > 1000 and {"gpu", "model", "batch_size", "value"} <= set(frame.columns)
    scope = in_scope(frame)
    assert 0 < scope.sum() < len(frame)  # llama.cpp and weight-offloading rows are out of scope


def test_measurements_bad_file_is_a_catalog_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,gpu\nx,y\n")
    with pytest.raises(CatalogError):
        load_measurements(bad)


def test_linear_terms_are_positive(small_csv):
    terms = linear_terms(load_measurements(small_csv).reset_index(drop=True))
    assert len(terms.measured_time) == len(terms.rows) and len(terms.measured_time) > 20
    assert np.all(terms.measured_time > 0) and np.all(np.isfinite(terms.A))


def test_fit_coefficients_recovers_a_known_line():
    rng = np.random.default_rng(0)
    A = np.column_stack([rng.uniform(0.1, 1, 50), rng.integers(1, 80, 50), np.zeros(50), np.zeros(50),
                         np.zeros(50)])
    measured = 1.5 * A[:, 0] + 2e-4 * A[:, 1]
    theta = fit_coefficients(A, np.zeros(50), measured)
    assert theta[0] == pytest.approx(1.5, rel=1e-6) and theta[1] == pytest.approx(2e-4, rel=1e-6)


def test_fit_beats_the_roofline_and_is_non_negative(small_csv):
    terms = usable_terms(small_csv)
    calib = fit(terms)
    assert all(v >= 0 for c in [calib.default, *calib.per_gpu.values()] for v in vars(c).values())
    fitted = np.median(metric_error(terms, predict_times(terms, calib)))
    roofline = np.median(metric_error(terms, predict_times(terms, UNCALIBRATED)))
    assert fitted < roofline


def test_split_is_stratified_and_disjoint(small_csv):
    rows = usable_terms(small_csv).rows
    train, test = split_train_test(rows, 0.3, seed=1)
    assert not set(train) & set(test) and len(train) + len(test) == len(rows)
    for gpu, idx in rows.groupby("gpu").indices.items():
        if len(idx) > 1:
            assert set(idx) & set(test) and set(idx) & set(train), gpu


def test_calibrate_report_and_error_table(small_csv):
    text, calib = calibrate_report(small_csv, test_fraction=0.3, seed=0)
    assert "held-out" in text and calib.per_gpu
    terms = usable_terms(small_csv)
    table = error_table(subset(terms, np.arange(10)), {"roofline": UNCALIBRATED, "ctcf": calib})
    assert table["gpu"].iloc[-1] == "ALL" and {"roofline_median_%", "ctcf_median_%"} <= set(table.columns)


def test_calibration_round_trip_without_scipy(small_csv, tmp_path):
    calib = fit(usable_terms(small_csv), source="test")
    path = tmp_path / "calibration.json"
    save_calibration(calib, path, {"measurements": "small.csv"})
    assert load_calibration(str(path)) == calib
    assert load_calibration("none") is UNCALIBRATED


def test_loading_a_scenario_does_not_import_the_fitting_code():
    import subprocess

    code = ("import sys, solver; solver.load_scenario('scenarios/chat_fleet.yaml'); "
            "sys.exit(any(m.startswith(('scipy', 'solver.ctcf', 'solver.calibrate')) for m in sys.modules))")
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
