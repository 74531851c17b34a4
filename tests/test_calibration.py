"""ctcf (fitting), measurements (loading, linear terms), calibrate (report) and calibration files."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from solver.errors import CatalogError
from solver.measurements import DEFAULT_MEASUREMENTS, in_scope, load_measurements


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


def test_loading_a_scenario_does_not_import_the_fitting_code():
    import subprocess

    code = ("import sys, solver; solver.load_scenario('scenarios/chat_fleet.yaml'); "
            "sys.exit(any(m.startswith(('scipy', 'solver.ctcf', 'solver.calibrate')) for m in sys.modules))")
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_no_gpu_is_promised_more_than_its_datasheet():
    """An efficiency carried from the pooled fit to a GPU without its own fit is capped at the datasheet (k >= 1),
    as per-GPU fits are: a multiplier below 1 would promise more FLOPS or bandwidth than the chip has."""
    import numpy as np

    from solver.calibration import Calibration
    from solver.engines import find_engine

    eager = Calibration(global_theta=np.array([0.3, 0.4, 0.5, 0.6, 1.0, 1.0]))  # an over-eager pooled fit
    for gpu in ("A10G", "L4", "T4", "H100", "V100"):
        theta = eager.theta(find_engine("vllm"), gpu, "fp16")
        assert (theta[:4] >= 1.0).all(), gpu


def test_calibrate_refuses_to_write_a_fit_its_loader_would_refuse(tmp_path):
    """``calibrate --out`` checks the fitted coefficients against ``load_calibration``'s bounds before writing."""
    import json

    from solver.calibration import calibration_payload, check_payload, load_calibration

    shipped = load_calibration(None)
    payload = calibration_payload(shipped)
    check_payload(payload, tmp_path / "cal.json")  # the shipped fit is within bounds
    (tmp_path / "cal.json").write_text(json.dumps(payload))
    assert load_calibration(str(tmp_path / "cal.json")).per_gpu.keys() == shipped.per_gpu.keys()
    gpu = sorted(payload["per_gpu"])[0]
    payload["per_gpu"][gpu][1] = 1e3  # k_memory a thousand times the datasheet's bandwidth cost
    with pytest.raises(CatalogError, match=rf"per_gpu\.{gpu}.*k_memory 1000 is implausible"):
        check_payload(payload, tmp_path / "cal.json")
