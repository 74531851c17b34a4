"""Shared helpers for the InferSave test-suite: paths, a tiny catalog, CLI runner and scenario builders."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings

# Hypothesis example counts come from a profile: HYPOTHESIS_PROFILE=long multiplies every test's count by 20
# (nightly), "quick" divides it by 5; "default" keeps the counts written in the tests. Tests write
# ``max_examples=examples(N)``.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("quick", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                          print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(HYPOTHESIS_PROFILE)
EXAMPLE_SCALE = {"default": 1.0, "quick": 0.2, "long": 20.0}.get(HYPOTHESIS_PROFILE, 1.0)


def examples(n: int) -> int:
    """A test's example count scaled by the active Hypothesis profile."""
    return max(1, round(n * EXAMPLE_SCALE))

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TINY_CSV = DATA / "tiny.csv"
SCENARIOS = ROOT / "scenarios"
GIB = 2**30

# Bundled fleet scenarios (top level of scenarios/, not the paper reproductions or sweep files).
FLEET_SCENARIOS = sorted(p for p in SCENARIOS.glob("*.yaml") if "sweep" not in p.name)
INFEASIBLE_SCENARIO = SCENARIOS / "infeasible_tight_slo.yaml"


def has_workloads(path: Path) -> bool:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return isinstance(data, dict) and bool(data.get("workloads"))


def run_cli(args: list[str]):
    """Invoke the typer app in-process; returns click's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from solver.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def tiny_scenario(workloads: list[dict], **extra) -> dict:
    """A scenario dict on the tiny test catalog, uncalibrated, one-hour horizon (objective = USD/h)."""
    return {"name": "toy", "catalogs": [str(TINY_CSV)], "calibration": "none", "horizon_hours": 1, **extra,
            "workloads": workloads}


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def vm_rate(model: str, gpu: str, batch: int, inp: int, out: int, *, vm_gpus: int = 1, tp: int = 1,
            online: bool = True) -> float:
    """Requests/s one VM sustains, from the public predict API: replicas (vm_gpus // tp) x the continuous-batching
    capacity of a replica (online), or x batch / end-to-end time (offline static batches)."""
    from solver.predict import predict

    p = predict(model=model, gpu=gpu, gpu_count=tp, batch_size=batch, input_tokens=inp, output_tokens=out,
                calibration="none", offload_ratio=0.0)
    assert p.fits and p.e2e_s and math.isfinite(p.e2e_s)
    if online:
        assert p.online_requests_per_s
        return (vm_gpus // tp) * p.online_requests_per_s
    return (vm_gpus // tp) * batch / p.e2e_s


@pytest.fixture
def tiny_csv() -> Path:
    return TINY_CSV
