"""solver/io.py: output checks, atomic writes that keep permissions, strict YAML/JSON, CSV formula cells; verify's
check of physically impossible numbers."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from conftest import TINY_CSV, run_cli, tiny_scenario, write_yaml
from solver.errors import InputError
from solver.io import (MAX_YAML_DEPTH, atomic_write_text, check_output, csv_safe, neutralise_cell, parse_json,
                       parse_yaml)

WL = {"name": "chat", "model": "llama-3.2-1b", "input_tokens": 256, "output_tokens": 64, "request_rate_per_s": 2}


def test_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "plan.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.json"
    atomic_write_text(fresh, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_cli_plan_out_keeps_permissions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / "s.yaml", tiny_scenario([WL]))
    (tmp_path / "p.json").write_text("{}", encoding="utf-8")
    (tmp_path / "p.json").chmod(0o600)
    result = run_cli(["plan", "s.yaml", "-f", "json", "--out", "p.json", "--no-timings"])
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "p.json").read_text())["status"] == "optimal"
    assert stat.S_IMODE((tmp_path / "p.json").stat().st_mode) == 0o600


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "link").symlink_to(d / "x"), "symbolic link"),
    (lambda d: (d / "link").mkdir(), "folder"),
])
def test_check_output_refuses(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(InputError, match=message):
        check_output(tmp_path / "link")


def test_check_output_inputs_and_folders(tmp_path):
    src = tmp_path / "in.yaml"
    src.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="input of this command"):
        check_output(tmp_path / "." / "in.yaml", [src])
    with pytest.raises(InputError, match="not a folder"):
        check_output(src, folder=True)
    check_output(tmp_path / "new" / "deeper" / "out.json", [src])  # creatable: fine, nothing created
    assert not (tmp_path / "new").exists()
    with pytest.raises(InputError, match="device"):
        check_output("/dev/null")


def test_yaml_duplicate_keys_and_limits():
    with pytest.raises(yaml.YAMLError, match="duplicate key 'a'"):
        parse_yaml("a: 1\nb: 2\na: 3\n")
    with pytest.raises(yaml.YAMLError, match="nested deeper"):
        parse_yaml("x: " + "[" * (MAX_YAML_DEPTH + 5) + "]" * (MAX_YAML_DEPTH + 5))
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(6))
    with pytest.raises(yaml.YAMLError, match="alias"):
        parse_yaml(bomb)
    data, _ = parse_yaml("a: &x [1, 2]\nb: *x\n")  # a few aliases are fine
    assert data == {"a": [1, 2], "b": [1, 2]}


def test_json_duplicate_keys():
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        parse_json('{"a": 1, "a": 2}')
    assert parse_json('{"a": {"b": [1, 2]}}') == {"a": {"b": [1, 2]}}


def test_csv_cells_never_formulas():
    import pandas as pd

    for bad in ("=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1"):
        assert neutralise_cell(bad) == "'" + bad
    for fine in ("-1.5", "1e3", "chat", "", 3.0, None):
        assert neutralise_cell(fine) == fine
    df = csv_safe(pd.DataFrame({"=x": ["=HYPERLINK(\"http://evil\")", "ok"], "n": [-1, 2]}))
    assert df.columns[0] == "'=x"
    assert list(df.iloc[:, 0]) == ["'=HYPERLINK(\"http://evil\")", "ok"]
    assert list(df["n"]) == [-1, 2]


def test_plan_csv_neutralises_a_workload_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / "s.yaml", tiny_scenario([{**WL, "name": "=2+5"}]))
    result = run_cli(["plan", "s.yaml", "-f", "csv"])
    assert result.exit_code == 0, result.stderr
    assert "'=2+5" in result.stdout and "\n=2+5" not in result.stdout


def test_verify_rejects_physically_impossible_numbers():
    from solver.plan import plan
    from solver.scenario import parse_scenario, resolve
    from solver.verify import verify

    resolved = resolve(parse_scenario(tiny_scenario([WL])), "s.yaml", TINY_CSV.parent)
    good = plan(resolved, timings=False)
    assert verify(resolved, good) == []
    for field, value in (("batch_size", -8), ("tokens_per_s", -100.0), ("ttft_s", 0.0), ("tpot_s", -1e-3),
                         ("requests_per_s_per_vm", 0.0)):
        a = good.assignments[0].model_copy(update={field: value})
        bad = good.model_copy(update={"assignments": [a, *good.assignments[1:]]})
        problems = verify(resolved, bad)
        assert any(p.startswith("impossible[") and field in p for p in problems), (field, problems)


def test_verify_cli_exit_1_on_negative_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / "s.yaml", tiny_scenario([WL]))
    assert run_cli(["plan", "s.yaml", "-f", "json", "--out", "p.json"]).exit_code == 0
    data = json.loads(Path("p.json").read_text())
    data["assignments"][0]["batch_size"] = -16
    data["assignments"][0]["tokens_per_s"] = -5.0
    Path("bad.json").write_text(json.dumps(data), encoding="utf-8")
    result = run_cli(["verify", "s.yaml", "bad.json"])
    assert result.exit_code == 1
    assert "batch_size" in result.stdout and "impossible" in result.stdout


def test_settings_negative_batch_is_refused_not_planned(tmp_path, monkeypatch):
    """Issue 12: a negative value in settings.batch_sizes gave an 'optimal' plan at negative throughput."""
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / "s.yaml", tiny_scenario([WL], settings={"batch_sizes": [-4, 8]}))
    result = run_cli(["plan", "s.yaml", "--out", "p.json"])
    assert result.exit_code == 2
    assert "settings.batch_sizes" in result.stderr and not (tmp_path / "p.json").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("args", [["plan", "{fifo}.yaml"], ["verify", "{scenario}", "{fifo}.json"],
                                  ["export", "{fifo}.json", "--to", "vllm"], ["calibrate", "{fifo}.csv"],
                                  ["simulate", "{scenario}", "{plan}", "--arrivals", "trace:{fifo}.csv"]])
def test_a_named_pipe_without_a_writer_is_refused_not_waited_on(tmp_path, args):
    """open() of a FIFO nobody writes to blocks for ever: every input is refused as not a file (exit 2) instead."""
    from conftest import ROOT, run_cli
    scenario = ROOT / "scenarios" / "chat_fleet.yaml"
    plan_json = tmp_path / "plan.json"
    assert run_cli(["plan", scenario, "-f", "json", "-o", plan_json]).exit_code == 0
    for suffix in (".yaml", ".json", ".csv"):
        os.mkfifo(tmp_path / f"pipe{suffix}")
    fill = {"fifo": str(tmp_path / "pipe"), "scenario": str(scenario), "plan": str(plan_json)}
    result = run_cli([a.format(**fill) for a in args])
    assert result.exit_code == 2, result.output
    assert "named pipe" in result.stderr and "pipe." in result.stderr


def test_stray_temporaries_of_an_interrupted_write_are_removed(tmp_path):
    """A signal between mkstemp and atomic_write's own clean-up leaves '.NAME.*.tmp'; an interrupted sweep removes
    those of its partial file (and only those) before writing it (tests/test_sweep_signals.py met one, rarely)."""
    from solver.io import remove_stray_temps
    mine, other = tmp_path / ".r.partial.parquet.x1y2.tmp", tmp_path / ".r.parquet.x1y2.tmp"
    mine.write_text("", encoding="utf-8")
    other.write_text("", encoding="utf-8")
    remove_stray_temps(tmp_path / "r.partial.parquet")
    assert not mine.exists() and other.exists()
