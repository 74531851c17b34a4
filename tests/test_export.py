"""``infersave export``: SkyPilot YAML per pool and vLLM command lines, checked field by field against the plan."""
from __future__ import annotations

import json
import math
import shlex

import pytest
import yaml

from conftest import SCENARIOS, run_cli
from solver.catalog import find_model
from solver.export import pool_launches
from solver.planfile import load_plan_view


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Plan JSON files of a mixed online/offline spot fleet and of the paper's offline (KV offload) scenario."""
    out = tmp_path_factory.mktemp("plans")
    paths = {}
    for name, scenario in (("mixed", "mixed_spot_quota.yaml"), ("paper", "paper/offline.yaml"),
                           ("chat", "chat_fleet.yaml")):
        paths[name] = out / f"{name}.json"
        r = run_cli(["plan", SCENARIOS / scenario, "-f", "json", "--no-timings", "--out", paths[name]])
        assert r.exit_code == 0, r.output
    return paths


def _engine_flags(run: str) -> tuple[list[str], dict[str, str]]:
    argv = shlex.split(run.strip())
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    return argv, flags


def _used_pools(data: dict) -> list[dict]:
    used = {a["pool"] for a in data["assignments"]}
    return [p for p in data["pools"] if p["pool"] in used and p["count"] > 0
            and (p["mode"] == "online" or (p["vm_hours"] or 0) > 0)]


@pytest.mark.parametrize("name", ["mixed", "chat"])
def test_skypilot_yaml_matches_plan(plans, tmp_path, name):
    data = json.loads(plans[name].read_text())
    r = run_cli(["export", plans[name], tmp_path / "sky", "--to", "skypilot"])
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "sky").glob("*.yaml"))
    pools = _used_pools(data)
    assert len(files) == len(pools) > 0
    by_pool = {}
    for f in files:
        task = yaml.safe_load(f.read_text())
        assert task["name"] == f.stem
        by_pool[task["envs"]["INFERSAVE_POOL"]] = task
    assert set(by_pool) == {p["pool"] for p in pools}
    for pool in pools:
        task = by_pool[pool["pool"]]
        rows = [a for a in data["assignments"] if a["pool"] == pool["pool"]]
        res = task["resources"]
        assert (res["cloud"], res["region"], res["instance_type"]) == (pool["cloud"], pool["region"],
                                                                       pool["instance_type"])
        assert res["accelerators"] == f"{pool['gpu']}:{pool['gpu_count']}"
        assert res["use_spot"] is (pool["pricing"] == "spot")
        argv, flags = _engine_flags(task["run"])
        tp = rows[0]["tensor_parallel"]
        assert int(flags["--tensor-parallel-size"]) == tp
        assert int(flags.get("--data-parallel-size", 1)) == pool["gpu_count"] // tp
        assert int(flags["--max-num-seqs"]) == rows[0]["batch_size"]
        context = max(a["input_tokens"] + a["output_tokens"] for a in rows)
        assert int(flags["--max-model-len"]) == context
        hf_id = find_model(rows[0]["model"]).hf_id
        if pool["mode"] == "online":
            assert argv[:3] == ["vllm", "serve", hf_id]
            assert task["service"]["replicas"] == pool["count"]
            assert task["service"]["readiness_probe"]["path"] == "/v1/models"
            assert res["ports"] == int(flags["--port"])
            assert "num_nodes" not in task
        else:
            assert argv[:2] == ["vllm", "run-batch"] and flags["--model"] == hf_id
            assert task["num_nodes"] == pool["count"] and "service" not in task


def test_context_length_from_scenario_matches_derived(plans):
    view = load_plan_view(plans["mixed"])
    derived, _ = pool_launches(view)
    exact, _ = pool_launches(view, scenario=SCENARIOS / "mixed_spot_quota.yaml")
    assert [x.max_model_len for x in derived] == [x.max_model_len for x in exact]
    assert {x.max_model_len for x in exact} == {512 + 256, 2048 + 128, 1536 + 384}


def test_kv_offload_flag_sized_from_ratio(plans):
    data = json.loads(plans["paper"].read_text())
    offloaded = [a for a in data["assignments"] if a["offload_ratio"] > 0]
    assert offloaded, "the paper's offline scenario offloads KV on the T4"
    a = offloaded[0]
    card = find_model(a["model"])
    expected = math.ceil(a["offload_ratio"] * card.kv_bytes_per_token("fp16") * a["batch_size"]
                         * (1024 + 128) / 2**30)
    r = run_cli(["export", plans["paper"], "--to", "vllm"])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stdout.splitlines() if line.startswith("vllm ")]
    assert lines
    _, flags = _engine_flags(lines[0])
    assert flags["--kv-offloading-backend"] == "native"
    assert int(flags["--kv-offloading-size"]) == expected
    assert "--cpu-offload-gb" not in flags  # that offloads weights, which the planner never does
    r = run_cli(["export", plans["paper"], "--to", "vllm", "--offload-flag", "swap-space"])
    _, flags = _engine_flags([line for line in r.stdout.splitlines() if line.startswith("vllm ")][0])
    assert int(flags["--swap-space"]) == expected  # tp 1: per GPU = per engine


def test_vllm_lines_one_per_pool(plans):
    data = json.loads(plans["chat"].read_text())
    r = run_cli(["export", plans["chat"], "--to", "vllm"])
    assert r.exit_code == 0
    lines = [line for line in r.stdout.splitlines() if line.startswith("vllm serve ")]
    assert len(lines) == len(_used_pools(data)) == 3  # chat_fleet: one pool each for the 70b, the 8b and the coder


def test_old_and_new_plan_keys_are_accepted(plans, tmp_path):
    data = json.loads(plans["chat"].read_text())
    for a in data["assignments"]:
        a["tp"] = a.pop("tensor_parallel")  # old spelling
    for p in data["pools"]:
        p["usd_per_hour"] = p.pop("pool_usd_per_hour")  # old spelling
    path = tmp_path / "renamed.json"
    path.write_text(json.dumps(data))
    view = load_plan_view(path)
    assert [a.tensor_parallel for a in view.assignments] == [a["tp"] for a in data["assignments"]]
    assert sum(p.pool_usd_per_hour for p in view.pools) == pytest.approx(data["online_usd_per_hour"])


def test_export_bad_input(plans, tmp_path):
    bad = tmp_path / "bad.json"
    data = json.loads(plans["chat"].read_text())
    del data["pools"][0]["instance_type"]
    bad.write_text(json.dumps(data))
    r = run_cli(["export", bad, tmp_path / "out", "--to", "skypilot"])
    assert r.exit_code == 2
    assert "bad.json" in r.stderr and "pools.0.instance_type" in r.stderr
    assert not (tmp_path / "out").exists()
    r = run_cli(["export", tmp_path / "missing.json", "--to", "vllm"])
    assert r.exit_code == 2 and "not found" in r.stderr
    r = run_cli(["export", plans["chat"], "--to", "skypilot"])
    assert r.exit_code == 2 and "output folder" in r.stderr
    data = json.loads(plans["chat"].read_text())
    data["assignments"][0]["model"] = "no-such-model"
    bad.write_text(json.dumps(data))
    r = run_cli(["export", bad, tmp_path / "out", "--to", "skypilot"])
    assert r.exit_code == 2 and "unknown model" in r.stderr and not (tmp_path / "out").exists()


def test_plan_json_carries_provenance(plans):
    prov = json.loads(plans["chat"].read_text())["provenance"]
    assert prov["infersave_version"] and prov["catalog_retrieved"] == "2026-11-25"
    assert prov["calibration"]["id"].startswith("calibration.json@")
    assert {c["file"] for c in prov["catalogs"]} == {"aws.csv", "gcp.csv", "azure.csv"}


def test_export_refuses_a_read_only_target_before_writing_any(plans, tmp_path):
    """An atomic rename replaces a file whatever its mode: export checks every YAML it would write first, and a
    read-only one is refused (exit 2) with nothing written or changed."""
    out = tmp_path / "sky"
    r = run_cli(["export", plans["mixed"], out, "--to", "skypilot"])
    assert r.exit_code == 0, r.output
    files = sorted(out.glob("*.yaml"))
    assert len(files) >= 2
    for f in files:
        f.write_text("old\n", encoding="utf-8")
    files[-1].chmod(0o444)
    r = run_cli(["export", plans["mixed"], out, "--to", "skypilot"])
    assert r.exit_code == 2 and "read-only" in r.stderr and files[-1].name in r.stderr, r.output
    assert all(f.read_text(encoding="utf-8") == "old\n" for f in files)


def test_atomic_write_refuses_a_read_only_file(tmp_path):
    from solver.errors import InputError
    from solver.io import atomic_write_text

    target = tmp_path / "ro.txt"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o444)
    with pytest.raises(InputError, match="read-only"):
        atomic_write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "old" and [p.name for p in tmp_path.iterdir()] == ["ro.txt"]
