"""Every shipped data file loads, cites a source, and refers only to things the engine knows."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from conftest import ROOT, run_cli
from solver.catalog import CATALOG_DIR, MODEL_DIR, find_gpu, gpu_specs, load_gpu_specs, load_instances, \
    load_model_card, model_index
from solver.calibration import load_calibration
from solver.measurements import load_measurements

PROFILE_CSVS = ("gpus.csv", "engines.csv", "gpu_efficiency.csv", "commitments.csv", "allreduce.csv")  # not instance catalogs
INSTANCE_CSVS = sorted(p for p in CATALOG_DIR.glob("*.csv") if p.name not in PROFILE_CSVS)
GPU_CSVS = [CATALOG_DIR / "gpus.csv", CATALOG_DIR / "measurements" / "gpus_extra.csv"]
MODEL_CARDS = sorted(MODEL_DIR.rglob("*.yaml"))
MEASUREMENT_CSVS = sorted((CATALOG_DIR / "measurements").glob("*.csv"))
MEASUREMENT_CSVS = [p for p in MEASUREMENT_CSVS if p.name != "gpus_extra.csv"]
CALIBRATIONS = sorted(CATALOG_DIR.rglob("*.json"))


def raw_rows(path):
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_there_is_data_to_check():
    assert {p.name for p in INSTANCE_CSVS} >= {"aws.csv", "gcp.csv", "azure.csv", "paper_table4.csv"}
    assert len(MODEL_CARDS) >= 20
    assert MEASUREMENT_CSVS


@pytest.mark.parametrize("path", INSTANCE_CSVS, ids=lambda p: p.name)
def test_instance_catalog_loads_with_sources(path):
    raw = raw_rows(path)
    instances = load_instances(path, gpu_specs())
    gpu_rows = [r for r in raw if r["AcceleratorName"] and r["Price"]]
    assert len(instances) == len(gpu_rows) > 0
    for inst in instances:
        assert inst.source.strip(), f"{path.name}: {inst.instance_type} in {inst.region} has no source"
        assert inst.usd_per_hour > 0 and inst.gpu_count >= 1
        if inst.spot_usd_per_hour is not None:
            assert 0 < inst.spot_usd_per_hour
    keys = [(i.instance_type, i.region) for i in instances]
    assert len(keys) == len(set(keys)), "primary key (InstanceType, Region) repeats"


@pytest.mark.parametrize("path", INSTANCE_CSVS, ids=lambda p: p.name)
def test_every_accelerator_is_a_known_gpu(path):
    known = {r["gpu"] for p in GPU_CSVS for r in raw_rows(p)}
    for row in raw_rows(path):
        name = row["AcceleratorName"]
        if name:
            assert name in known, f"{path.name}: unknown AcceleratorName {name!r}"
            assert find_gpu(name).gpu == name


@pytest.mark.parametrize("path", GPU_CSVS, ids=lambda p: p.name)
def test_gpu_specs_load_with_sources(path):
    specs = load_gpu_specs([path])
    raw = raw_rows(path)
    assert len(specs) == len(raw) > 0
    for spec in specs.values():
        assert spec.source.strip().startswith("http"), spec.gpu
        assert spec.memory_gib > 0 and spec.hbm_bandwidth_gb_s > 0 and spec.fp16_tflops_dense > 0
        # datasheet sanity: tensor FP16 beats plain FP32, FP8 (where present) beats FP16
        if spec.fp32_tflops:
            assert spec.fp16_tflops_dense > spec.fp32_tflops
        if spec.fp8_tflops_dense:
            assert spec.fp8_tflops_dense >= spec.fp16_tflops_dense


def test_gpu_names_are_unique_across_spec_files():
    names = [r["gpu"] for p in GPU_CSVS for r in raw_rows(p)]
    assert len(names) == len(set(names))
    assert set(names) == set(gpu_specs())


@pytest.mark.parametrize("path", MODEL_CARDS, ids=lambda p: p.stem)
def test_model_card_loads_with_source(path):
    card = load_model_card(path)
    assert card.source.strip()
    assert card.num_attention_heads % card.num_key_value_heads == 0
    assert card.total_params > 1e8
    assert model_index().cards[card.name] == card


@pytest.mark.parametrize("path", MEASUREMENT_CSVS, ids=lambda p: p.name)
def test_measurements_load_with_sources(path):
    frame = load_measurements(path)
    raw = raw_rows(path)
    assert len(frame) == len(raw) > 0
    for i, row in frame.iterrows():
        assert isinstance(row["source"], str) and row["source"].strip(), f"row {i + 2} has no source"
        assert math.isfinite(float(row["value"])) and float(row["value"]) > 0


@pytest.mark.parametrize("path", CALIBRATIONS, ids=lambda p: p.name)
def test_calibration_files_load_with_source(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    calib = load_calibration(str(path))
    assert calib.source.strip()
    assert data.get("source", "").strip()
    for level in (calib.per_gpu, calib.per_engine, calib.per_engine_gpu):
        for coeffs in level.values():
            assert np.all(np.isfinite(coeffs)) and np.all(coeffs >= 0)


GPUS_CSV_NAMES = [r["gpu"] for r in raw_rows(ROOT / "catalogs" / "gpus.csv")]


@pytest.mark.parametrize("gpu", GPUS_CSV_NAMES)
def test_cli_predict_answers_for_every_gpu(gpu):
    result = run_cli(["predict", "--model", "llama-3.2-1b", "--gpu", gpu, "--input", "128", "--output", "32",
                      "--batch", "1", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["gpu"] == gpu and payload["fits"] is True
    assert payload["ttft_s"] > 0 and payload["tpot_s"] > 0 and payload["tokens_per_s"] > 0
    assert 0 < payload["gpu_mem_gib"] <= payload["gpu_mem_usable_gib"]


ENGINE_COLUMNS = ["engine", "cuda_graphs", "step_overhead_us", "layer_overhead_us", "max_num_batched_tokens",
                  "prefill_chunk_tokens", "max_num_seqs_default", "supports_kv_offload",
                  "int4_weight_kernel_efficiency", "fp8_kernel_efficiency", "scheduling", "source", "date", "notes"]


def test_engine_profiles_have_sources_and_sane_values():
    path = CATALOG_DIR / "engines.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        assert next(csv.reader(fh)) == ENGINE_COLUMNS
    rows = raw_rows(path)
    assert {r["engine"] for r in rows} >= {"vllm", "sglang", "trtllm", "tgi", "flexgen"}
    assert len({r["engine"] for r in rows}) == len(rows)
    for r in rows:
        assert r["source"].startswith("http") and r["date"], r["engine"]
        assert r["cuda_graphs"] in ("true", "false") and r["supports_kv_offload"] in ("true", "false")
        assert r["scheduling"] in ("continuous", "static")
        assert float(r["step_overhead_us"]) >= 0 and float(r["layer_overhead_us"]) >= 0
        for col in ("int4_weight_kernel_efficiency", "fp8_kernel_efficiency"):
            if r[col]:
                assert 0 < float(r[col]) <= 1
        for col in ("max_num_batched_tokens", "prefill_chunk_tokens", "max_num_seqs_default"):
            if r[col]:
                assert int(r[col]) > 0


def test_gpu_efficiency_rows_cite_sources_and_name_known_gpus():
    path = CATALOG_DIR / "gpu_efficiency.csv"
    rows = raw_rows(path)
    known = {r["gpu"] for p in GPU_CSVS for r in raw_rows(p)}
    assert len({r["gpu"] for r in rows}) == len(rows)
    for r in rows:
        assert r["gpu"] in known
        # a public URL, or this repository's own measurement script (which must exist)
        own = (ROOT / r["source"].split()[0]).is_file()
        assert (r["source"].startswith("http") or own) and r["date"] and r["notes"]
        assert r["gemm_fp16_efficiency"] or r["hbm_efficiency"]
        for col in ("gemm_fp16_efficiency", "hbm_efficiency"):
            if r[col]:
                assert 0 < float(r[col]) <= 1


def test_allreduce_rows_cite_sources_and_set_the_comm_prior():
    """The measured nccl-tests times sit above the nominal ring model at every size (start-up and protocol costs
    a link-rate model leaves out), and k_comm's prior is their geometric-mean ratio."""
    from solver.calibration import allreduce_prior
    from solver.catalog import find_gpu
    from solver.roofline import Hardware, allreduce_call_s

    path = CATALOG_DIR / "allreduce.csv"
    rows = raw_rows(path)
    ratios = []
    for r in rows:
        assert r["source"].startswith("http") and r["date"] and r["notes"]
        hw = Hardware.from_specs([find_gpu(r["gpu"])], "fp16")
        nominal = allreduce_call_s(float(r["message_bytes"]), float(r["gpu_count"]), hw.interconnect_bytes_per_s[0],
                                   hw.pcie_interconnect[0])
        ratios.append(float(r["time_us"]) * 1e-6 / float(nominal))
    assert min(ratios) > 1.0
    assert allreduce_prior(path) == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))
    assert min(ratios) < allreduce_prior(path) < max(ratios)


def test_a_catalog_csv_is_read_no_further_than_its_limit(tmp_path, monkeypatch):
    """An oversize catalog, engine or measurement CSV is refused while reading, naming the file, instead of being read
    whole into memory first (the size is counted while reading, as for scenarios, plans and traces)."""
    import solver.catalog as catalog_module
    from solver.errors import CatalogError
    big = tmp_path / "big.csv"
    big.write_text("instance,gpu\n" + "x,y\n" * 1000, encoding="utf-8")
    monkeypatch.setattr(catalog_module, "MAX_CSV_BYTES", 1024)
    with pytest.raises(CatalogError, match="larger than") as err:
        catalog_module.read_csv_rows(big)
    assert "big.csv" in str(err.value)
    small = tmp_path / "small.csv"
    small.write_text("instance,gpu\nx,y\n", encoding="utf-8")
    assert catalog_module.read_csv_rows(small)[0] == ["instance", "gpu"]



def test_models_folder_search_is_bounded(tmp_path, monkeypatch):
    """``--models DIR`` looks at DIR and two levels below (``org/card.yaml``, ``org/model/config.json``) and at
    most ``io.MAX_SEARCH_ENTRIES`` entries, so ``--models /`` says so instead of walking the whole file system."""
    import solver.catalog as catalog_module
    import solver.io as io_module
    from solver.errors import InputError
    (tmp_path / "org" / "model" / "deeper").mkdir(parents=True)
    for rel in ("a.yaml", "org/b.yaml", "org/model/config.json", "org/model/deeper/c.yaml"):
        (tmp_path / rel).write_text("x", encoding="utf-8")
    found = catalog_module._model_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.yaml", "org/b.yaml", "org/model/config.json"]
    for i in range(10):
        (tmp_path / f"extra{i}.txt").write_text("x", encoding="utf-8")
    monkeypatch.setattr(io_module, "MAX_SEARCH_ENTRIES", 8)
    with pytest.raises(InputError, match="more than 8 files and folders") as err:
        catalog_module._model_files(tmp_path)
    assert str(tmp_path) in str(err.value) and "--models" in str(err.value)


@pytest.mark.parametrize("column, value, match", [("cuda_graphs", "1", "true or false"),
                                                  ("step_overhead_us", "1_000", "no spaces or '_'"),
                                                  ("layer_overhead_us", "\u0662", "no spaces or '_'")])
def test_engine_csv_cells_are_plain_numbers_and_booleans(tmp_path, column, value, match):
    """A number where a boolean is expected, and numbers float() or pydantic would read leniently ("1_000", other
    scripts' digits), are refused naming the file, row and column."""
    from solver.engines import ENGINE_FILE, load_engines
    from solver.errors import CatalogError
    rows = raw_rows(ENGINE_FILE)
    rows[0][column] = value
    path = tmp_path / "engines.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(CatalogError, match=match) as err:
        load_engines(path)
    assert f"engines.csv:row 2:{column}" in str(err.value)


def test_a_byte_order_mark_is_accepted_in_every_text_input(tmp_path):
    """Excel writes UTF-8 with a byte-order mark: read_text drops it, so JSON, YAML and CSV inputs all take it."""
    from solver.io import read_json, read_text
    (tmp_path / "a.json").write_text("\ufeff{\"a\": 1}", encoding="utf-8")
    assert read_json(tmp_path / "a.json") == {"a": 1}
    (tmp_path / "c.csv").write_text("\ufeff" + (ROOT / "tests" / "data" / "tiny.csv").read_text(encoding="utf-8"),
                                    encoding="utf-8")
    assert load_instances(tmp_path / "c.csv", gpu_specs())
    assert read_text(tmp_path / "c.csv", 2**20).startswith("InstanceType")
