"""Mélange input files (solver/melange.py): the published example, brute-force optima of the slice rule, pooling
versus per-bucket rounding, Mélange's own ILP, validation errors, the independent plan check and the CLI."""
from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from conftest import DATA, ROOT, run_cli, examples
from solver.errors import NoCandidatesError, ScenarioError
from solver.melange import check_plan, gpu_counts, load_melange, parse_melange, solve_melange

MELANGE = DATA / "melange"
README_EXAMPLE = MELANGE / "readme_example.json"


def melange_ilp_module():
    spec = importlib.util.spec_from_file_location("melange_class", ROOT / "benchmarks" / "melange_class.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- (a) the published example -------------------------------------------------------------------------------


def test_readme_example_reproduces_the_published_mix():
    # github.com/tyler-griggs/melange-release README.md, "Solver Output" (commit d46ab438), for
    # melange/config/example.json: {"A10G": 3, "A100-80GB": 1, "cost": 6.7} -- 3 A10G + 1 A100-80GB, $6.7/hr.
    plan = solve_melange(load_melange(README_EXAMPLE))
    assert plan.status == "optimal"
    assert gpu_counts(plan) == {"A10G": 3, "A100-80GB": 1}
    assert plan.objective == pytest.approx(6.7, abs=1e-9)
    assert plan.online_usd_per_hour == pytest.approx(6.7, abs=1e-9)
    assert check_plan(load_melange(README_EXAMPLE), plan, slices=1) == []
    # the slice rule with slice_factor 1 keeps each bucket whole
    assert all(a.share == 1.0 for a in plan.assignments)


def test_readme_example_fractional_split_is_cheaper():
    # rates 6, 3, 15, 6 req/s; one A100 carries 1.0 GPU of the 1.125 A100-load, the rest (1/3 of the 15 req/s
    # bucket, 5 req/s at 5 req/s per A10G) fits one A10G: 3.67 + 1.01 = 4.68 USD/h
    m = load_melange(README_EXAMPLE)
    plan = solve_melange(m, fractional=True)
    assert gpu_counts(plan) == {"A10G": 1, "A100-80GB": 1}
    assert plan.objective == pytest.approx(4.68, abs=1e-9)
    assert check_plan(m, plan) == []


def test_early_main_py_example_does_not_sum_to_one():
    # The early main.py toy (README then: {"A10G": 10.0, "A100": 0.0, "cost": 10.1}) has fractions summing to 1.25.
    with pytest.raises(ScenarioError, match=r"main_py_v1_unnormalized\.json:workload_distribution: .*sum to 1.*1\.25"):
        load_melange(MELANGE / "main_py_v1_unnormalized.json")
    data = json.loads((MELANGE / "main_py_v1_unnormalized.json").read_text())
    data["workload_distribution"] = [[f / 1.25 for f in row] for row in data["workload_distribution"]]
    data["total_request_rate"] = 16 * 1.25  # the same per-bucket rates as upstream computed
    plan = solve_melange(parse_melange(data))
    assert gpu_counts(plan) == {"A10G": 10} and plan.objective == pytest.approx(10.1, abs=1e-9)


def test_cli_plan_from_melange(tmp_path):
    out = tmp_path / "plan.json"
    result = run_cli(["plan", README_EXAMPLE, "--from-melange", "--format", "json", "--no-timings", "--out", out])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(out.read_text())
    assert payload["status"] == "optimal" and payload["objective"] == pytest.approx(6.7)
    assert {(a["demand"], a["gpu"]) for a in payload["assignments"]} == {
        ("in0_out0", "A10G"), ("in0_out1", "A100-80GB"), ("in1_out0", "A100-80GB"), ("in1_out1", "A100-80GB")}
    assert check_plan(load_melange(README_EXAMPLE), payload, slices=1) == []
    frac = run_cli(["plan", README_EXAMPLE, "--from-melange", "--melange-fractional", "--format", "json",
                    "--no-timings"])
    assert frac.exit_code == 0, frac.stderr
    assert json.loads(frac.stdout)["objective"] == pytest.approx(4.68)
    table = run_cli(["plan", README_EXAMPLE, "--from-melange"])
    assert table.exit_code == 0 and "A100-80GB" in table.stdout and "6.70" in table.stdout


# ---- (b) brute force on tiny instances ------------------------------------------------------------------------


@st.composite
def tiny_instances(draw, max_rows=2, max_cols=1, max_gpus=2, max_slices=2):
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    n_gpus = draw(st.integers(1, max_gpus))
    weights = draw(st.lists(st.integers(0, 8), min_size=rows * cols, max_size=rows * cols).filter(any))
    total = sum(weights)
    dist = [[weights[i * cols + j] / total for j in range(cols)] for i in range(rows)]
    gpu_info = {}
    for g in range(n_gpus):
        cost = draw(st.integers(30, 800)) / 100
        tputs = [[float(draw(st.integers(0, 12))) for _ in range(cols)] for _ in range(rows)]
        gpu_info[f"G{g}"] = {"cost": cost, "tputs": tputs}
    for i, j in itertools.product(range(rows), range(cols)):  # every bucket with traffic has some GPU
        if dist[i][j] > 0 and all(gpu_info[g]["tputs"][i][j] == 0 for g in gpu_info):
            gpu_info["G0"]["tputs"][i][j] = float(draw(st.integers(1, 12)))
    data = {"gpu_info": gpu_info, "workload_distribution": dist,
            "total_request_rate": float(draw(st.integers(1, 40))), "slice_factor": draw(st.integers(1, max_slices))}
    return parse_melange(data, "hypothesis.json")


def brute_force(m) -> float:
    """Mélange's semantics, enumerated: every assignment of every slice to a GPU type that can serve it; the GPU
    count per type is ceil(load)."""
    s = m.spec
    gpus = list(s.gpu_info)
    slices = [(i, j, f * s.total_request_rate / s.slice_factor) for i, row in enumerate(s.workload_distribution)
              for j, f in enumerate(row) if f > 0 for _ in range(s.slice_factor)]
    best = math.inf
    for choice in itertools.product(range(len(gpus)), repeat=len(slices)):
        load = [0.0] * len(gpus)
        ok = True
        for (i, j, rate), g in zip(slices, choice):
            tput = s.gpu_info[gpus[g]].tputs[i][j]
            if tput <= 0:
                ok = False
                break
            load[g] += rate / tput
        if ok:
            best = min(best, sum(s.gpu_info[gpus[g]].cost * math.ceil(load[g] - 1e-9) for g in range(len(gpus))))
    return best


@settings(max_examples=examples(30), deadline=None)
@given(tiny_instances())
def test_slice_rule_matches_brute_force_and_fractional_is_never_dearer(m):
    plan = solve_melange(m)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(brute_force(m), abs=1e-6)
    assert check_plan(m, plan, slices=m.spec.slice_factor) == []
    frac = solve_melange(m, fractional=True)
    assert frac.objective <= plan.objective + 1e-9
    assert check_plan(m, frac) == []


@settings(max_examples=examples(15), deadline=None)
@given(tiny_instances(max_rows=2, max_cols=2, max_gpus=3, max_slices=2))
def test_slice_rule_matches_brute_force_on_2x2_grids_with_3_gpus(m):
    assert solve_melange(m).objective == pytest.approx(brute_force(m), abs=1e-6)


# ---- (c) pooled capacity never costs more than per-bucket rounding ---------------------------------------------


def single_bucket(m, i: int, j: int):
    s = m.spec
    return parse_melange({"gpu_info": {g: {"cost": p.cost, "tputs": [[p.tputs[i][j]]]} for g, p in s.gpu_info.items()},
                          "workload_distribution": [[1.0]],
                          "total_request_rate": s.total_request_rate * s.workload_distribution[i][j],
                          "slice_factor": s.slice_factor}, f"bucket-{i}-{j}")


@settings(max_examples=examples(25), deadline=None)
@given(tiny_instances(max_rows=3, max_cols=3, max_gpus=3, max_slices=4), st.booleans())
def test_pooling_never_costs_more_than_solving_each_bucket_alone(m, fractional):
    pooled = solve_melange(m, fractional=fractional).objective
    alone = sum(solve_melange(single_bucket(m, i, j), fractional=fractional).objective
                for i, row in enumerate(m.spec.workload_distribution) for j, f in enumerate(row) if f > 0)
    assert pooled <= alone + 1e-9


# ---- Mélange's own ILP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,slices,seed", [(3, 1, 0), (3, 2, 1), (4, 1, 2)])
def test_same_optimum_as_melange_ilp(n, slices, seed):
    bench = melange_ilp_module()
    m = bench.instance(n, 4, slices, seed)
    cost, _wall, status = bench.melange_ilp(m, time_limit_s=20)
    assert status == "optimal"
    assert solve_melange(m).objective == pytest.approx(cost, abs=1e-6)
    assert solve_melange(m, fractional=True).objective <= cost + 1e-9


def test_dominated_gpu_types_are_pruned_exactly():
    data = json.loads(README_EXAMPLE.read_text())
    data["gpu_info"]["A100-slow"] = {"cost": 4.0, "tputs": [[10, 10], [40, 20]]}  # dearer, never faster than A100
    m = parse_melange(data)
    pruned, full = solve_melange(m), solve_melange(m, prune=False)
    assert pruned.pruning["gpu_types_kept"] == 2 and full.pruning["gpu_types_kept"] == 3
    assert pruned.objective == pytest.approx(full.objective) == pytest.approx(6.7)


# ---- zero throughputs ------------------------------------------------------------------------------------------


def test_zero_tput_cells_are_never_used():
    data = json.loads(README_EXAMPLE.read_text())
    data["gpu_info"]["A10G"]["tputs"][1][0] = 0  # A10G cannot serve bucket (1, 0)
    data["gpu_info"]["A100-80GB"]["tputs"][0][0] = 0  # A100 cannot serve bucket (0, 0)
    m = parse_melange(data)
    for fractional in (False, True):
        plan = solve_melange(m, fractional=fractional)
        used = {(a.demand, a.gpu) for a in plan.assignments}
        assert ("in1_out0", "A10G") not in used and ("in0_out0", "A100-80GB") not in used
        assert check_plan(m, plan) == []


def test_bucket_no_gpu_can_serve_is_reported(tmp_path):
    data = json.loads(README_EXAMPLE.read_text())
    for gpu in data["gpu_info"].values():
        gpu["tputs"][1][1] = 0
    with pytest.raises(NoCandidatesError, match=r"bucket \(input 1, output 1\)"):
        solve_melange(parse_melange(data))
    path = tmp_path / "dead.json"
    path.write_text(json.dumps(data))
    result = run_cli(["plan", path, "--from-melange", "--format", "json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "infeasible"
    # a zero-traffic bucket may have no GPU at all
    data["workload_distribution"] = [[0.3, 0.2], [0.5, 0.0]]
    assert solve_melange(parse_melange(data)).status == "optimal"


# ---- validation ------------------------------------------------------------------------------------------------


def _mutate(change):
    data = json.loads(README_EXAMPLE.read_text())
    change(data)
    return data


BAD = [
    ("shape", lambda d: d["gpu_info"]["A10G"].update(tputs=[[2, 1, 3], [5, 2, 3]]), "gpu_info.A10G.tputs", "2x2"),
    ("rows", lambda d: d["gpu_info"]["A100-80GB"].update(tputs=[[20, 20]]), "gpu_info.A100-80GB.tputs", "2x2"),
    ("ragged", lambda d: d.update(workload_distribution=[[0.2, 0.1], [0.7]]), "workload_distribution.1", "ragged"),
    ("sum", lambda d: d.update(workload_distribution=[[0.2, 0.1], [0.5, 0.3]]), "workload_distribution", "sum to 1"),
    ("negative fraction", lambda d: d.update(workload_distribution=[[0.6, -0.1], [0.3, 0.2]]),
     "workload_distribution.0.1", ">= 0"),
    ("cost zero", lambda d: d["gpu_info"]["A10G"].update(cost=0), "gpu_info.A10G.cost", "greater than 0"),
    ("cost negative", lambda d: d["gpu_info"]["A10G"].update(cost=-1.0), "gpu_info.A10G.cost", "greater than 0"),
    ("tput negative", lambda d: d["gpu_info"]["A10G"].update(tputs=[[2, -1], [5, 2]]),
     "gpu_info.A10G.tputs.0.1", ">= 0"),
    ("tput text", lambda d: d["gpu_info"]["A10G"].update(tputs=[[2, "fast"], [5, 2]]), "gpu_info.A10G.tputs.0.1",
     "number"),
    ("rate", lambda d: d.update(total_request_rate=0), "total_request_rate", "greater than 0"),
    ("slice", lambda d: d.update(slice_factor=0), "slice_factor", "greater than or equal to 1"),
    ("slice float", lambda d: d.update(slice_factor=1.5), "slice_factor", "positive integer"),
    ("missing", lambda d: d.pop("gpu_info"), "gpu_info", "missing"),
    ("typo", lambda d: d.update(slice_factr=2), "slice_factr", "unknown field"),
    ("no gpus", lambda d: d.update(gpu_info={}), "gpu_info", "at least one"),
    ("empty", lambda d: d.update(workload_distribution=[]), "workload_distribution", "non-empty"),
    ("nan", lambda d: d["gpu_info"]["A10G"].update(cost=float("nan")), "gpu_info.A10G.cost", "finite"),
]


@pytest.mark.parametrize("name,change,field,text", BAD, ids=[b[0] for b in BAD])
def test_invalid_configs_name_file_and_field(name, change, field, text, tmp_path):
    data = _mutate(change)
    with pytest.raises(ScenarioError) as exc:
        parse_melange(copy.deepcopy(data), "bad.json")
    message = str(exc.value)
    assert message.startswith(f"bad.json:{field}: "), message
    assert text in message and "\n" not in message
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # NaN is written as the JSON extension NaN, which json.loads reads back
    result = run_cli(["plan", path, "--from-melange"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and f"bad.json:{field}: " in result.stderr and "Traceback" not in result.stderr


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read file"):
        load_melange(tmp_path / "missing.json")
    bad = tmp_path / "broken.json"
    bad.write_text('{"gpu_info": {,}')
    with pytest.raises(ScenarioError, match=r"broken\.json:line 1: malformed JSON"):
        load_melange(bad)
    with pytest.raises(ScenarioError, match="JSON object"):
        parse_melange([1, 2], "list.json")


def test_gpu_info_as_a_list_and_comment_keys():
    data = json.loads(README_EXAMPLE.read_text())
    data["gpu_info"] = [{"name": g, **v} for g, v in data["gpu_info"].items()]
    data["_source"] = "comment keys are ignored"
    assert solve_melange(parse_melange(data)).objective == pytest.approx(6.7)
    data["gpu_info"].append(dict(data["gpu_info"][0]))
    with pytest.raises(ScenarioError, match=r"gpu_info\.2\.name: duplicate GPU name 'A10G'"):
        parse_melange(data, "dup.json")


# ---- the independent check -------------------------------------------------------------------------------------


def test_check_plan_catches_tampering():
    m = load_melange(README_EXAMPLE)
    plan = solve_melange(m).model_dump()
    assert check_plan(m, plan, slices=1) == []
    fewer = copy.deepcopy(plan)
    a10g = next(p for p in fewer["pools"] if p["gpu"] == "A10G")
    a10g["count"] -= 1
    a10g["pool_usd_per_hour"] -= 1.01
    fewer["objective"] -= 1.01
    fewer["online_usd_per_hour"] -= 1.01
    assert any("A10G: carries 3" in v for v in check_plan(m, fewer))
    partial = copy.deepcopy(plan)
    partial["assignments"][0]["share"] = 0.5
    problems = check_plan(m, partial, slices=1)
    assert any("served 0.5" in v for v in problems)
    off_grid = copy.deepcopy(plan)
    off_grid["assignments"][0]["share"] = 0.75
    assert any("multiple of 1/2" in v for v in check_plan(m, off_grid, slices=2))
    cost = copy.deepcopy(plan)
    cost["objective"] = 5.0
    assert any("objective" in v for v in check_plan(m, cost))
