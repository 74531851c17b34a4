"""The coupled 300-workload fleet of benchmarks/scale.py ships as a scenario file: it loads, and it is the fleet the
benchmark builds (so `infersave plan benchmarks/coupled_300.yaml` measures what the scale table reports)."""
import importlib.util
from pathlib import Path

import solver

ROOT = Path(__file__).resolve().parent.parent


def _scale_module():
    spec = importlib.util.spec_from_file_location("scale_benchmark", ROOT / "benchmarks" / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_coupled_300_file_is_the_benchmarks_fleet():
    path = ROOT / "benchmarks" / "coupled_300.yaml"
    assert path.read_text(encoding="utf-8") == _scale_module().coupled_yaml(300)
    resolved = solver.load_scenario(str(path))
    assert len(resolved.scenario.workloads) == 300
    assert resolved.scenario.share_replicas and resolved.scenario.budget_usd_per_hour == 925.0
    assert {q.gpu for q in resolved.scenario.quotas if q.gpu} == {"A100", "A100-80GB"}
