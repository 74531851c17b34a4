"""End-to-end CLI on every bundled scenario: recommend, plan, verify (and tampering), infeasibility, CSV output."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from conftest import FLEET_SCENARIOS, INFEASIBLE_SCENARIO, SCENARIOS, has_workloads, run_cli

ALL_SCENARIOS = [p for p in FLEET_SCENARIOS + sorted((SCENARIOS / "paper").glob("*.yaml")) if has_workloads(p)]
PLANNABLE = [p for p in FLEET_SCENARIOS if has_workloads(p) and p != INFEASIBLE_SCENARIO]
CANDIDATE_KEYS = {"instance_type", "region", "gpu", "gpu_count", "batch_size", "offload_ratio", "ttft_s", "tpot_s",
                  "tokens_per_s", "gpu_mem_gib", "unit_usd_per_hour", "total_usd", "meets_slo", "tensor_parallel",
                  "reason"}
ASSIGNMENT_KEYS = {"workload", "model", "instance_type", "region", "count", "batch_size", "offload_ratio", "ttft_s",
                   "tpot_s", "tokens_per_s", "share_usd_per_hour", "tensor_parallel"}


def ids(p: Path) -> str:
    return p.relative_to(SCENARIOS).with_suffix("").as_posix()


def assert_clean(result):
    assert "Traceback" not in result.stdout + result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("path", ALL_SCENARIOS, ids=ids)
def test_recommend_json(path):
    result = run_cli(["recommend", path, "--format", "json"])
    assert_clean(result)
    assert result.exit_code in (0, 1), result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] in ("ok", "no_instance_meets_slo")
    assert (result.exit_code == 0) == (payload["choice"] is not None) == (payload["status"] == "ok")
    assert payload["candidates"], "no candidate listed"
    for cand in payload["candidates"]:
        assert CANDIDATE_KEYS <= set(cand), CANDIDATE_KEYS - set(cand)
        assert cand["unit_usd_per_hour"] > 0 and 0 <= cand["offload_ratio"] <= 1 and cand["batch_size"] >= 1
    choice = payload["choice"]
    if choice is not None:
        meeting = [c for c in payload["candidates"] if c["meets_slo"]]
        assert choice["meets_slo"] is True
        assert choice["total_usd"] == pytest.approx(min(c["total_usd"] for c in meeting), rel=1e-9)
        # the choice is one of the listed candidates
        assert any(c["instance_type"] == choice["instance_type"] and c["region"] == choice["region"]
                   for c in meeting)


def test_recommend_names_a_workload_that_cannot_be_served():
    result = run_cli(["recommend", INFEASIBLE_SCENARIO, "--workload", "instant-70b", "--format", "json"])
    assert_clean(result)
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["workload"] == "instant-70b" and payload["choice"] is None
    assert payload["status"] == "no_instance_meets_slo"
    assert all(not c["meets_slo"] for c in payload["candidates"])


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[Path, Path]:
    """Each plannable scenario's plan, written with --out (JSON)."""
    folder = tmp_path_factory.mktemp("plans")
    out = {}
    for path in PLANNABLE:
        target = folder / f"{path.stem}.json"
        result = run_cli(["plan", path, "--format", "json", "--no-timings", "--out", target])
        assert result.exit_code == 0, result.stderr
        assert_clean(result)
        out[path] = target
    return out


@pytest.mark.parametrize("path", PLANNABLE, ids=ids)
def test_plan_json(path, plans):
    payload = json.loads(plans[path].read_text())
    assert payload["status"] == "optimal"
    assert payload["objective"] > 0 and payload["gap"] is not None and 0 <= payload["gap"] <= 1e-6
    stats = payload["solver"]
    assert stats["backend"] == "highs" and stats["variables"] > 0 and stats["constraints"] > 0
    assert 0 <= stats["integer_variables"] <= stats["variables"]
    assert payload["assignments"]
    for a in payload["assignments"]:
        assert ASSIGNMENT_KEYS <= set(a), ASSIGNMENT_KEYS - set(a)
        assert a["count"] >= 1 and 0 < a["share"] <= 1 + 1e-9
    # every workload of the scenario is served in full
    shares: dict[str, float] = {}
    for a in payload["assignments"]:
        shares[a["demand"]] = shares.get(a["demand"], 0.0) + a["share"]
    assert all(math.isclose(s, 1.0, rel_tol=1e-6) for s in shares.values()), shares
    # the objective is the sum of the pools' costs
    assert payload["objective"] == pytest.approx(sum(p["usd"] for p in payload["pools"]), rel=1e-6)


@pytest.mark.parametrize("path", PLANNABLE, ids=ids)
def test_verify_accepts_a_produced_plan(path, plans):
    result = run_cli(["verify", path, plans[path]])
    assert_clean(result)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "plan holds" in result.stdout


def _tampered(plans, tmp_path, change) -> tuple[Path, object]:
    path = SCENARIOS / "chat_fleet.yaml"
    data = json.loads(plans[path].read_text())
    change(data)
    target = tmp_path / "tampered.json"
    target.write_text(json.dumps(data))
    return path, run_cli(["verify", path, target])


def _drop_one_vm(data):
    pool = next(p for p in data["pools"] if p["count"] >= 2)
    pool["count"] -= 1
    pool["pool_usd_per_hour"] = pool["unit_usd_per_hour"] * pool["count"]
    pool["usd"] = pool["pool_usd_per_hour"] * data["horizon_hours"]
    for a in data["assignments"]:
        if a["pool"] == pool["pool"]:
            a["count"] = pool["count"]
    data["objective"] = sum(p["usd"] for p in data["pools"])


def _halve_a_share(data):
    data["assignments"][0]["share"] = 0.5


def _cheaper_objective(data):
    data["objective"] *= 0.9


def _wrong_latency(data):
    data["assignments"][0]["tpot_s"] /= 3


def _inflate_batch(data):
    data["assignments"][0]["batch_size"] = 100000


@pytest.mark.parametrize("change,expect", [(_drop_one_vm, "capacity["), (_halve_a_share, "demand["),
                                           (_cheaper_objective, "objective"), (_wrong_latency, "latency"),
                                           (_inflate_batch, "batch_size")],
                         ids=["count-reduced", "share-changed", "objective", "latency", "batch"])
def test_verify_rejects_a_tampered_plan(plans, tmp_path, change, expect):
    _, result = _tampered(plans, tmp_path, change)
    assert_clean(result)
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert lines and all(line.startswith("violated: ") for line in lines)
    assert any(expect in line for line in lines), lines


def test_verify_rejects_a_file_that_is_not_a_plan(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('{"assignments": 3}')
    result = run_cli(["verify", SCENARIOS / "chat_fleet.yaml", bad])
    assert_clean(result)
    assert result.exit_code == 2 and "plan.json" in result.stderr


def test_infeasible_scenario_names_workload_and_nearest_miss(tmp_path):
    result = run_cli(["plan", INFEASIBLE_SCENARIO])
    assert_clean(result)
    assert result.exit_code == 1
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "instant-70b" in err and "TPOT" in err and "best is" in err
    assert "chat-8b" not in err  # the servable workload is not blamed
    out = tmp_path / "plan.json"
    result = run_cli(["plan", INFEASIBLE_SCENARIO, "--format", "json", "--out", out])
    assert result.exit_code == 1
    payload = json.loads(out.read_text())
    assert payload["status"] == "infeasible" and payload["objective"] is None and "instant-70b" in payload["message"]


@pytest.mark.parametrize("path", PLANNABLE, ids=ids)
def test_plan_csv_parses(path, plans):
    result = run_cli(["plan", path, "--format", "csv", "--no-timings"])
    assert result.exit_code == 0, result.stderr
    frame = pd.read_csv(io.StringIO(result.stdout))
    payload = json.loads(plans[path].read_text())
    assert len(frame) == len(payload["assignments"])
    assert ASSIGNMENT_KEYS <= set(frame.columns)
    assert frame["count"].min() >= 1
    assert sorted(frame["instance_type"]) == sorted(a["instance_type"] for a in payload["assignments"])


@pytest.mark.parametrize("path", [SCENARIOS / "chat_fleet.yaml", SCENARIOS / "paper" / "online.yaml"], ids=ids)
def test_recommend_csv_parses(path):
    result = run_cli(["recommend", path, "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert {"instance_type", "total_usd", "meets_slo"} <= set(frame.columns) and len(frame) > 0
    assert frame["meets_slo"].dtype == bool


def test_predict_csv_and_table():
    args = ["predict", "--model", "llama-3.1-8b", "--gpu", "a100 80gb", "--input", "512", "--output", "64",
            "--calibration", "none"]
    csv_result = run_cli(args + ["--format", "csv"])
    assert csv_result.exit_code == 0
    frame = pd.read_csv(io.StringIO(csv_result.stdout))
    assert len(frame) == 1 and frame.loc[0, "gpu"] == "A100-80GB" and frame.loc[0, "fits"]
    table = run_cli(args)
    assert table.exit_code == 0 and "tpot_s" in table.stdout


def test_plan_table_output():
    result = run_cli(["plan", SCENARIOS / "chat_fleet.yaml"])
    assert result.exit_code == 0
    assert "Fleet plan" in result.stdout and "assistant-8b" in result.stdout and "solver highs" in result.stdout


def test_plan_with_each_backend_from_the_cli():
    objectives = set()
    for backend in ("highs", "cbc", "ortools"):
        result = run_cli(["plan", SCENARIOS / "chat_fleet.yaml", "--solver", backend, "--format", "json"])
        assert result.exit_code == 0, result.stderr
        payload = json.loads(result.stdout)
        assert payload["solver"]["backend"] == backend
        objectives.add(round(payload["objective"], 4))
    assert len(objectives) == 1


@pytest.mark.parametrize("name, value", [("INFERSAVE_WORKERS", "abc"), ("INFERSAVE_WORKERS", "0"),
                                         ("INFERSAVE_CHECKPOINT_S", "soon")])
def test_an_unreadable_setting_in_the_environment_is_bad_input(monkeypatch, name, value):
    """Environment settings are checked before any command runs: one line naming the variable, exit 2 (they were
    internal errors, and a sweep's every point failed on them)."""
    monkeypatch.setenv(name, value)
    result = run_cli(["plan"])
    assert result.exit_code == 2, result.output
    assert name in result.stderr and repr(value) in result.stderr


def test_predict_batch_is_bounded_as_a_scenario_batch_is():
    from solver.field_checks import MAX_BATCH
    args = ["predict", "--model", "llama-3.1-8b", "--gpu", "H100", "--input", "128", "--output", "16", "--batch"]
    assert run_cli(args + [str(MAX_BATCH)]).exit_code == 0
    result = run_cli(args + [str(MAX_BATCH + 1)])
    assert result.exit_code == 2 and "--batch" in result.output
