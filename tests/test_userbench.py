"""solver.userbench: vLLM benchmark_serving and GuideLLM result files -> published.csv rows."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from conftest import ROOT
from solver.errors import CatalogError
from solver.measurements import in_scope, is_online, load_measurements
from solver.userbench import ROW_COLUMNS, read_user_benchmark

DATA = ROOT / "tests" / "data" / "userbench"
KW = dict(model="llama-3.1-8b", gpu="L4", gpu_count=1, engine="vllm")


def _one(frame, metric, statistic):
    rows = frame[(frame["metric"] == metric) & (frame["statistic"] == statistic)]
    assert len(rows) == 1, (metric, statistic, len(rows))
    return rows.iloc[0]


def test_vllm_serving_result_rows():
    frame = read_user_benchmark(DATA / "vllm_serving_result.json", **KW)
    assert tuple(frame.columns) == ROW_COLUMNS
    assert (frame["model"] == "llama-3.1-8b").all() and (frame["gpu"] == "L4").all()
    assert frame["batch_size"].isna().all()
    assert (frame["concurrency"] == 4).all() and (frame["request_rate_per_s"] == 2.0).all()
    assert (frame["input_tokens"] == 500).all() and (frame["output_tokens"] == 100).all()
    assert _one(frame, "ttft_s", "mean")["value"] == pytest.approx(0.100)
    assert _one(frame, "ttft_s", "median")["value"] == pytest.approx(0.090)
    assert _one(frame, "ttft_s", "p99")["value"] == pytest.approx(0.150)
    assert _one(frame, "tpot_s", "mean")["value"] == pytest.approx(0.020)
    assert _one(frame, "tpot_s", "p99")["value"] == pytest.approx(0.025)
    assert _one(frame, "output_tokens_per_s", "")["value"] == pytest.approx(133.333333)
    assert (frame["source"] == str(DATA / "vllm_serving_result.json")).all()
    assert (frame["date"] == "2025-01-01").all()
    assert frame["notes"].str.contains("as printed").all()
    assert (frame["num_prompts"] == 4).all()  # the run's completed requests: a closed loop's first-wave share


def test_vllm_infinite_rate_without_lens_uses_totals():
    frame = read_user_benchmark(DATA / "vllm_serving_inf_rate.json", **KW)
    assert frame["request_rate_per_s"].map(math.isinf).all()
    assert frame["concurrency"].isna().all()
    assert (frame["input_tokens"] == 1024).all() and (frame["output_tokens"] == 128).all()
    assert _one(frame, "tpot_s", "median")["value"] == pytest.approx(0.040)


def test_guidellm_v04_concurrent_and_synchronous():
    frame = read_user_benchmark(DATA / "guidellm_v04_concurrent.json", **KW)
    assert sorted(frame["concurrency"].unique()) == [1.0, 4.0]
    assert frame["request_rate_per_s"].isna().all()
    assert (frame["input_tokens"] == 256).all() and (frame["output_tokens"] == 128).all()
    c4 = frame[frame["concurrency"] == 4]
    assert _one(c4, "ttft_s", "mean")["value"] == pytest.approx(0.050)
    assert _one(c4, "ttft_s", "p90")["value"] == pytest.approx(0.070)
    assert _one(c4, "tpot_s", "median")["value"] == pytest.approx(0.0095)  # inter_token_latency_ms
    assert _one(c4, "e2e_s", "p99")["value"] == pytest.approx(1.9)  # request_latency is in seconds
    assert (frame["date"] == "2025-01-01").all()


def test_guidellm_v03_constant_rate():
    frame = read_user_benchmark(DATA / "guidellm_v03_constant.json", **KW)
    assert (frame["request_rate_per_s"] == 1.5).all() and frame["concurrency"].isna().all()
    assert _one(frame, "ttft_s", "p99")["value"] == pytest.approx(0.140)


@pytest.mark.parametrize("name", ["vllm_serving_result.json", "vllm_serving_inf_rate.json",
                                  "guidellm_v04_concurrent.json", "guidellm_v03_constant.json"])
def test_rows_load_as_measurements_and_are_online(tmp_path, name):
    frame = read_user_benchmark(DATA / name, **KW)
    out = tmp_path / "user.csv"
    frame.to_csv(out, index=False)
    loaded = load_measurements(out)
    assert len(loaded) == len(frame)
    assert is_online(loaded).all() and in_scope(loaded).all()  # the serving model describes online runs


def test_neither_format_names_file_and_field():
    with pytest.raises(CatalogError) as info:
        read_user_benchmark(DATA / "not_a_benchmark.json", **KW)
    message = str(info.value)
    assert "not_a_benchmark.json" in message and "benchmarks" in message and "\n" not in message


def test_bad_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="bad.json"):
        read_user_benchmark(bad, **KW)
    with pytest.raises(CatalogError, match="missing.json"):
        read_user_benchmark(tmp_path / "missing.json", **KW)


def test_guidellm_without_strategy_names_field(tmp_path):
    import json
    data = json.loads((DATA / "guidellm_v04_concurrent.json").read_text(encoding="utf-8"))
    del data["benchmarks"][1]["config"]["strategy"]
    path = tmp_path / "nostrategy.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"nostrategy.json:benchmarks\[1\]:strategy"):
        read_user_benchmark(path, **KW)


def test_published_csv_still_loads_whole():
    frame = load_measurements()
    assert len(frame) > 1000
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_num_prompts_must_be_a_positive_number(tmp_path, bad):
    """The optional num_prompts column: a bad value names the file, the row and the field."""
    frame = read_user_benchmark(DATA / "vllm_serving_result.json", **KW)
    frame["num_prompts"] = frame["num_prompts"].astype(object)
    frame.loc[frame.index[2], "num_prompts"] = bad
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(CatalogError, match=r"m\.csv.*row 4.*num_prompts"):
        load_measurements(path)
