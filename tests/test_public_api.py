"""The package's public names (httpx-style exported-members test) and the LP dump."""
from __future__ import annotations

import solver
from conftest import SCENARIOS, run_cli

EXPECTED = ["CatalogError", "InfeasibleError", "InputError", "NoCandidatesError", "Plan", "PlannerError",
            "Prediction", "Recommendation", "Resolved", "ScenarioError", "SolverFailure", "UnknownNameError",
            "load_scenario", "parse_scenario", "plan", "predict", "recommend", "resolve", "verify"]


def test_public_names():
    assert sorted(solver.__all__) == sorted(EXPECTED)
    public = {name for name in dir(solver) if not name.startswith("_")} - {"annotations"}  # __future__
    modules = {name for name in public if type(getattr(solver, name)).__name__ == "module"}
    assert public - modules == set(EXPECTED)
    for name in EXPECTED:
        assert getattr(solver, name).__module__.startswith("solver"), name


def test_dump_lp_names_rows_and_variables(tmp_path):
    lp = tmp_path / "fleet.lp"
    result = run_cli(["plan", SCENARIOS / "chat_fleet.yaml", "--no-timings", "--dump-lp", lp])
    assert result.exit_code == 0, result.stderr
    text = lp.read_text()
    assert "demand_assistant_8b" in text and "capacity_llama_3.1_8b" in text
    assert "n_llama_3.1_70b_aws_us_east_1_p4d.24xlarge" in text


def test_dump_mps(tmp_path):
    mps = tmp_path / "fleet.mps"
    result = run_cli(["plan", SCENARIOS / "nightly_batch.yaml", "--no-timings", "--dump-lp", mps])
    assert result.exit_code == 0, result.stderr
    assert mps.read_text().splitlines()[1].startswith("NAME")
