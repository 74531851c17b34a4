"""Bad inputs: each gives exit 2 and one line on stderr naming the file (and row/line/field), no traceback,
and no output file when --out is given. ``CASES`` also drives tests/make_bad_inputs.py (tests/BAD_INPUTS.md)."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import DATA, TINY_CSV, run_cli
from solver.sweep.results import POINT_FIELDS, TABLE_FIELDS

GOOD_CATALOG = TINY_CSV.read_text(encoding="utf-8")
CATALOG_HEADER = GOOD_CATALOG.splitlines()[0]


def scenario(workload: str = "", top: str = "", catalog: str = "catalog.csv", model: str = "llama-3.2-1b",
             lengths: str = "    input_tokens: 512\n    output_tokens: 128\n",
             rate: str = "    request_rate_per_s: 2\n") -> str:
    """A valid scenario; the pieces are replaced to make it bad. The workload starts on line 5."""
    return (f"name: bad-input\ncatalogs: [{catalog}]\ncalibration: none\n{top}workloads:\n"
            f"  - name: chat\n    model: {model}\n{lengths}{rate}{workload}")


def catalog_with(row2: str | None = None, header: str | None = None, extra: str = "") -> str:
    lines = GOOD_CATALOG.splitlines()
    if header is not None:
        lines[0] = header
    if row2 is not None:
        lines[1] = row2
    return "\n".join(lines) + "\n" + extra


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    files: dict[str, str]
    args: list[str]
    expect: list[str] = field(default_factory=list)  # substrings of the error line besides the file name
    file: str | None = "scenario.yaml"  # the file the message must name (None: a command-line value)
    setup: Callable[[Path], None] | None = None  # links, folders, modes the case needs
    kind: str = "scenario"  # input kind, for the table in BAD_INPUTS.md

    @property
    def writes_plan(self) -> bool:
        return self.args[0] == "plan" and "--out" not in self.args


def plan_case(id, what, scenario_text, expect, *, catalog=GOOD_CATALOG, file="scenario.yaml", extra_files=None):
    files = {"scenario.yaml": scenario_text, "catalog.csv": catalog, **(extra_files or {})}
    return Case(id, what, files, ["plan", "scenario.yaml", "--format", "json"], expect, file)


ROW = "l4.small,L4,1,8,32,{price},0.3,r1,hand-made test fixture"
CASES = [
    # --- scenario files
    plan_case("yaml-malformed", "malformed YAML (unclosed bracket)",
              "name: x\nworkloads: [\n  - name: a\n    model: [llama\n", ["malformed YAML", "line"]),
    plan_case("yaml-empty", "empty scenario file", "", ["empty scenario file"]),
    plan_case("yaml-not-mapping", "scenario is a list, not a mapping", "- a\n- b\n", ["mapping"]),
    plan_case("yaml-tab", "tab indentation", "name: x\nworkloads:\n\t- name: a\n", ["malformed YAML", "line 3"]),
    plan_case("field-typo", "unknown field (typo request_rate)", scenario(rate="    request_rate: 2\n"),
              ["line 9", "workloads.0.request_rate", "unknown field"]),
    plan_case("top-field-typo", "unknown top-level field (horizon_hour)", scenario(top="horizon_hour: 24\n"),
              ["line 4", "horizon_hour", "unknown field"]),
    plan_case("missing-workloads", "no workloads key", "name: x\ncalibration: none\n", ["workloads", "required"]),
    plan_case("missing-lengths", "workload without input/output tokens", scenario(lengths=""),
              ["workloads.0", "input_tokens"]),
    plan_case("rate-zero", "request rate 0", scenario(rate="    request_rate_per_s: 0\n"),
              ["line 9", "workloads.0.request_rate_per_s", "greater than 0"]),
    plan_case("rate-absurd", "request rate 1e16/s (a unit slip)", scenario(rate="    request_rate_per_s: 1e16\n"),
              ["workloads.0.request_rate_per_s", "requests/s", "plausible maximum", "check the units"]),
    plan_case("rate-boolean", "a request rate of `yes` (YAML reads a boolean)", scenario(rate="    request_rate_per_s: yes\n"),
              ["line 9", "workloads.0.request_rate_per_s", "boolean"]),
    plan_case("tokens-boolean", "input tokens `true`", scenario(lengths="    input_tokens: true\n    output_tokens: 128\n"),
              ["workloads.0.input_tokens", "boolean"]),
    plan_case("min-replicas-huge", "a billion replicas at least", scenario(workload="    min_replicas: 1000000000\n"),
              ["workloads.0.min_replicas", "plausible maximum"]),
    plan_case("spread-unknown", "spread over an unknown region", scenario(workload="    spread: [mars-1]\n"),
              ["workloads.0.spread", "unknown region"]),
    plan_case("spread-outside", "spread over a region the scenario leaves out",
              scenario(top="regions: [r1]\n", workload="    spread: [r2]\n"), ["workloads.0.spread", "r2"]),
    plan_case("name-pipe", "a workload name with '|'", scenario().replace("name: chat", "name: 'a|b'"),
              ["workloads.0.name", "'|'"]),
    plan_case("rate-negative", "negative request rate", scenario(rate="    request_rate_per_s: -3\n"),
              ["line 9", "request_rate_per_s", "greater than 0"]),
    plan_case("rate-nan", "request rate .nan", scenario(rate="    request_rate_per_s: .nan\n"),
              ["workloads.0", "request_rate_per_s", "finite"]),
    plan_case("horizon-inf", "horizon .inf", scenario(top="horizon_hours: .inf\n"), ["horizon_hours", "finite"]),
    plan_case("rate-string", "rate is text", scenario(rate="    request_rate_per_s: fast\n"),
              ["line 9", "request_rate_per_s", "number"]),
    plan_case("tokens-negative", "negative input length",
              scenario(lengths="    input_tokens: -5\n    output_tokens: 128\n"), ["line 7", "input_tokens"]),
    plan_case("tokens-float", "fractional token count",
              scenario(lengths="    input_tokens: 512.5\n    output_tokens: 128\n"), ["line 7", "input_tokens"]),
    plan_case("context-window", "input + output beyond the model's context window",
              scenario(model="opt-1.3b", lengths="    input_tokens: 2000\n    output_tokens: 100\n"),
              ["workloads.0", "2100", "context window of 2048"]),
    plan_case("tokens-huge", "absurdly long input (1e30 tokens)",
              scenario(lengths="    input_tokens: 1000000000000000000000000000000\n    output_tokens: 1\n"),
              ["line 7", "workloads.0.input_tokens", "10,000,000 tokens"]),
    plan_case("duplicate-workload", "two workloads with the same name",
              scenario(workload="  - name: chat\n    model: llama-3.2-1b\n    input_tokens: 64\n"
                                "    output_tokens: 8\n    request_rate_per_s: 1\n"),
              ["line 10: workloads[1].name", "duplicate workload name", "chat"]),
    plan_case("profile-with-spread", "a rate profile beside a workload that asks for spread",
              scenario(rate="    rate_profile: [1, 2, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n",
                       workload="  - name: api\n    model: llama-3.2-1b\n    input_tokens: 64\n"
                                "    output_tokens: 8\n    request_rate_per_s: 1\n    spread: [r1, r2]\n"),
              ["line 15: workloads[1].spread", "rate_profile"]),
    plan_case("bucket-fractions", "bucket fractions that do not sum to 1",
              scenario(lengths="    buckets:\n      - {input_tokens: 64, output_tokens: 8, fraction: 0.5}\n"
                               "      - {input_tokens: 128, output_tokens: 8, fraction: 0.4}\n"),
              ["workloads.0", "sum to 1"]),
    plan_case("buckets-too-many", "300 request-size buckets in one workload",
              scenario(lengths="    buckets:\n" + "".join(f"      - {{input_tokens: {64 + k}, output_tokens: 8, "
                                                          f"fraction: {1 / 300!r}}}\n" for k in range(300))),
              ["line 8", "workloads.0.buckets", "at most 256"]),
    plan_case("quota-two-limits", "quota with both max_instances and max_gpus",
              scenario(top="quotas:\n  - {gpu: L4, max_instances: 1, max_gpus: 2}\n"),
              ["quotas.0", "exactly one"]),
    plan_case("online-without-rate", "online workload planned with num_requests but no rate",
              scenario(rate="    num_requests: 100\n"), ["workloads.0.request_rate_per_s", "request_rate_per_s"]),
    plan_case("unknown-model", "unknown model name", scenario(model="llama-3.1-8bb"),
              ["workloads.0.model", "unknown model", "did you mean", "llama-3.1-8b"]),
    plan_case("unknown-instance", "unknown instance type (typo)",
              scenario(top="instance_types: [l4.smal]\n"), ["instance_types", "unknown instance type", "l4.small"]),
    plan_case("unknown-region", "unknown region (typo)",
              scenario(catalog="aws", top="regions: [us-east1]\n"), ["regions", "did you mean", "us-east-1"]),
    plan_case("unknown-region-far", "a region no catalog prices (another cloud's naming)",
              scenario(top="regions: [europe-west4]\n"), ["regions", "unknown region 'europe-west4'",
                                                           "the catalogs price", "r1", "--catalog"]),
    plan_case("unknown-quota-gpu", "quota naming a GPU not in the catalog",
              scenario(top="quotas:\n  - {gpu: A100-80G, max_gpus: 2}\n"), ["quotas.0.gpu", "unknown gpu"]),
    plan_case("unknown-catalog", "catalog file that does not exist", scenario(catalog="nope.csv"),
              ["nope.csv", "not found"]),
    plan_case("bad-calibration", "calibration file that is not JSON",
              scenario().replace("calibration: none", "calibration: calib.json"), ["calibration"],
              extra_files={"calib.json": "{not json"}, file="calib.json"),
    # --- catalog files
    plan_case("csv-ragged", "catalog row with a missing cell", scenario(),
              ["row 2", "cells"], catalog=catalog_with("l4.small,L4,1,8,32,0.8,0.3,r1"), file="catalog.csv"),
    plan_case("csv-missing-column", "catalog without the Price column", scenario(),
              ["row 1", "missing column", "Price"], file="catalog.csv",
              catalog="InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,SpotPrice,Region\n"
                      "l4.small,L4,1,8,32,0.3,r1\n"),
    plan_case("csv-duplicate-column", "catalog with Price twice", scenario(), ["row 1", "duplicated", "Price"],
              catalog=catalog_with(header=CATALOG_HEADER + ",Price"), file="catalog.csv"),
    plan_case("csv-price-text", "price that is not a number", scenario(), ["row 2", "Price", "expected a number"],
              catalog=catalog_with(ROW.format(price="cheap")), file="catalog.csv"),
    plan_case("csv-price-underscore", "a price written 1_0 (float() reads 10)", scenario(),
              ["row 2", "Price", "no spaces or '_'"],
              catalog=catalog_with(ROW.format(price="1_0")), file="catalog.csv"),
    plan_case("csv-price-arabic-digits", "a price in Arabic-Indic digits", scenario(),
              ["row 2", "Price", "ascii digits"],
              catalog=catalog_with(ROW.format(price="\u0661\u0660")), file="catalog.csv"),
    plan_case("csv-price-spaces", "a price with spaces around it", scenario(), ["row 2", "Price", "spaces around it"],
              catalog=catalog_with(ROW.format(price=" 1.5 ")), file="catalog.csv"),
    plan_case("csv-count-underscore", "a GPU count written 1_0", scenario(),
              ["row 2", "AcceleratorCount", "no spaces or '_'"],
              catalog=catalog_with("l4.small,L4,1_0,8,32,1.0,0.3,r1,x"), file="catalog.csv"),
    plan_case("profile-ragged", "a rate-profile row with an extra cell",
              scenario(rate="    rate_profile_csv: day.csv\n"),
              ["line 3", "has 3 cells"], extra_files={"day.csv": "hour,rate_per_s\n0,1\n1,1,1\n"}, file="day.csv"),
    plan_case("profile-underscore", "a rate written 1_0", scenario(rate="    rate_profile_csv: day.csv\n"),
              ["line 2", "rate_per_s"], extra_files={"day.csv": "hour,rate_per_s\n0,1_0\n"}, file="day.csv"),
    Case("trace-underscore", "a trace timestamp written 1_0", {"plan.json": "{}", "scenario.yaml": scenario(),
                                                              "t.csv": "t\n0\n1_0\n"},
         ["simulate", "scenario.yaml", "plan.json", "--arrivals", "trace:t.csv"], ["line 3", "not a number"], "t.csv",
         kind="trace"),
    plan_case("csv-price-negative", "negative price", scenario(), ["row 2", "Price", "greater than or equal"],
              catalog=catalog_with(ROW.format(price="-1")), file="catalog.csv"),
    plan_case("csv-price-zero", "zero price", scenario(), ["row 2", "Price", "greater than or equal"],
              catalog=catalog_with(ROW.format(price="0")), file="catalog.csv"),
    plan_case("csv-price-huge", "a price of 10^300 USD/h", scenario(), ["row 2", "Price", "less than or equal"],
              catalog=catalog_with(ROW.format(price="1e300")), file="catalog.csv"),
    plan_case("csv-price-nan", "NaN price", scenario(), ["row 2", "Price", "finite"],
              catalog=catalog_with(ROW.format(price="nan")), file="catalog.csv"),
    plan_case("csv-price-inf", "infinite price", scenario(), ["row 2", "Price", "finite"],
              catalog=catalog_with(ROW.format(price="inf")), file="catalog.csv"),
    plan_case("csv-unknown-gpu", "catalog row with an unknown GPU", scenario(),
              ["row 2", "AcceleratorName", "unknown GPU", "did you mean"],
              catalog=catalog_with("l4.small,L40G,1,8,32,0.8,0.3,r1,x"), file="catalog.csv"),
    plan_case("csv-no-gpu-rows", "catalog with no GPU rows", scenario(), ["no GPU instance rows"],
              catalog=CATALOG_HEADER + "\nm5.large,,,2,8,0.1,,r1,x\n", file="catalog.csv"),
    plan_case("csv-empty", "empty catalog file", scenario(), ["empty"], catalog="", file="catalog.csv"),
    plan_case("csv-duplicate-row", "the same instance and region twice", scenario(), ["duplicate instance"],
              catalog=GOOD_CATALOG + GOOD_CATALOG.splitlines()[1] + "\n", file="catalog.csv"),
    # --- command-line values
    Case("cli-missing-scenario", "scenario file that does not exist", {}, ["plan", "missing.yaml"],
         ["cannot read"], file="missing.yaml"),
    Case("predict-unknown-gpu", "predict with an unknown GPU", {},
         ["predict", "--model", "llama-3.1-8b", "--gpu", "H1000", "--input", "10", "--output", "10"],
         ["gpu", "unknown GPU", "did you mean", "H100"], file=None),
    Case("predict-unknown-model", "predict with an unknown model", {},
         ["predict", "--model", "lama-3.1-8b", "--gpu", "H100", "--input", "10", "--output", "10"],
         ["model", "did you mean", "llama-3.1-8b"], file=None),
    Case("predict-unknown-instance", "predict with an unknown instance type", {},
         ["predict", "--model", "llama-3.1-8b", "--instance", "g5.xlarg", "--input", "10", "--output", "10"],
         ["instance", "did you mean", "g5.xlarge"], file=None),
    Case("predict-context", "predict beyond the context window", {},
         ["predict", "--model", "opt-1.3b", "--gpu", "A10G", "--input", "2000", "--output", "100"],
         ["context window of 2048"], file=None),
    Case("predict-dtype", "predict with an unknown precision", {},
         ["predict", "--model", "opt-1.3b", "--gpu", "A10G", "--input", "20", "--output", "10", "--dtype", "int3"],
         ["unknown precision", "int3"], file=None),
]


# ---- round two (issue 12): every input kind, --out targets, permissions -----------------------------------

PLAN = "@plan"  # placeholder: a valid plan JSON of scenario(), produced once per session (see ``plan_json``)
MELANGE = (DATA / "melange" / "readme_example.json").read_text(encoding="utf-8")
MEASURE_HEADER = ("source_id,model,gpu,gpu_count,engine,dtype,kv_dtype,batch_size,input_tokens,output_tokens,"
                  "metric,value,unit,source,date")
MEASURE_ROW = "src,llama-3.1-8b,A100-80GB,1,vllm,fp16,fp16,8,512,128,tpot_s,{value},{unit},http://x,2024-01"
CALIB_HEAD = '{"form": "per-operator-v2", '
GOOD_VEC = "[1.2, 1.1, 1.1, 1.1, 0.001, 0.00001]"
HF_CONFIG = ('{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, '
             '"num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, '
             '"intermediate_size": 8192, "vocab_size": 128256, "max_position_embeddings": 131072}')
SWEEP_BASE = None  # the base of sweep cases is scenario() on the tiny catalog


def settings_case(id, what, settings, expect):
    return plan_case(id, what, scenario(top=f"settings:\n  {settings}\n"), ["line", "settings", *expect])


def wl_case(id, what, extra, expect, **kw):
    return plan_case(id, what, scenario(workload=extra), ["workloads.0", *expect], **kw)


def top_case(id, what, top, expect, **kw):
    return plan_case(id, what, scenario(top=top), expect, **kw)


def calib_case(id, what, text, expect):
    return plan_case(id, what, scenario().replace("calibration: none", "calibration: calib.json"), expect,
                     extra_files={"calib.json": text}, file="calib.json")


def config_case(id, what, text, expect, file="config.json"):
    return plan_case(id, what, scenario(model="config.json"), expect, extra_files={"config.json": text},
                     file=file)


def catalog_case(id, what, row, expect):
    return plan_case(id, what, scenario(), ["row 2", *expect], catalog=catalog_with(row), file="catalog.csv")


# a whole results table of a sweep over another axis (slo_scale), one solved point
_COLUMNS = ["point", "axis.slo_scale", *POINT_FIELDS, *TABLE_FIELDS]
_CELLS = {"point": "0", "axis.slo_scale": "1.0", "status": "optimal", "objective": "1", "instance_type": "x",
          "count": "1", "pool": "p"}
OTHER_SWEEP_TABLE = ",".join(_COLUMNS) + "\n" + ",".join(_CELLS.get(c, "") for c in _COLUMNS) + "\n"


def sweep_case(id, what, sweep_text, expect, args=(), file="sweep.yaml", **kw):
    files = {"sweep.yaml": sweep_text, "base.yaml": scenario(), "catalog.csv": GOOD_CATALOG, **kw.pop("files", {})}
    return Case(id, what, files, ["sweep", "sweep.yaml", "--out", "out/r.parquet", "--workers", "1", "--quiet",
                                  *args], expect, file, kind="sweep", **kw)


def melange_case(id, what, text, expect):
    return Case(id, what, {"m.json": text}, ["plan", "--from-melange", "m.json", "-f", "json", "--out",
                                             "out/plan.json"], expect, "m.json", kind="melange")


def measure_case(id, what, text, expect, args=(), file="m.csv"):
    return Case(id, what, {file: text}, ["calibrate", file, "--out", "out/cal.json", *args], expect, file,
                kind="measurements")


# the fields a replay reads, of one assignment on an L4 (``simulate`` checks them before any request runs)
REPLAY_PLAN = ('{"assignments": [{"workload": "chat", "pool": "p", "gpu": "L4", "gpu_count": 1, "tensor_parallel": 1, '
               '"count": 1, "share": 1.0, "batch_size": 8, "offload_ratio": 0}], "pools": [{"pool": "p", "count": 1}]}')


def edited_plan(edit: Callable[[dict], None]) -> Callable[[], str]:
    """A file text: the valid plan of ``plan_json()`` changed by ``edit`` (made when the case is written)."""
    def make() -> str:
        import json
        data = json.loads(plan_json())
        edit(data)
        return json.dumps(data)
    return make


def _set(*steps: tuple[str, int | None, str, object]) -> Callable[[dict], None]:
    """An edit: for each (list, index or None for every item, key, value), set the key."""
    def edit(data: dict) -> None:
        for section, index, key, value in steps:
            for item in data[section] if index is None else [data[section][index]]:
                item[key] = value
    return edit


def plan_json_case(id, what, command, text, expect, file="plan.json"):
    files = {"scenario.yaml": scenario(), "catalog.csv": GOOD_CATALOG, "plan.json": text}
    return Case(id, what, files, command, expect, file, kind="plan JSON")


def out_case(id, what, args, expect, files=None, setup=None, file=None):
    base = {"scenario.yaml": scenario(), "catalog.csv": GOOD_CATALOG}
    return Case(id, what, {**base, **(files or {})}, args, expect, file, setup=setup, kind="--out target")


def symlink(target: str, link: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / link).symlink_to(target)
    return make


def mkdir(name: str, mode: int | None = None) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / name).mkdir()
        if mode is not None:
            (root / name).chmod(mode)
    return make


def chmod(name: str, mode: int) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / name).chmod(mode)
    return make


def nested(depth: int) -> str:
    return "name: deep\nworkloads: " + "[" * depth + "]" * depth + "\n"


ALIAS_BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
              "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
              "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
              "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nworkloads: *g\n")
BASE_SWEEP = "name: s\nbase: base.yaml\naxes:\n  price_multiplier: [1.0, 2.0]\n"
VLLM_JSON = (DATA / "userbench" / "vllm_serving_result.json").read_text(encoding="utf-8")

CASES += [
    # --- scenario: duplicate keys, settings, plausibility, names, structure
    plan_case("dup-key-top", "a top-level key given twice", scenario(top="horizon_hours: 24\nhorizon_hours: 1\n"),
              ["line 5", "duplicate key", "horizon_hours"]),
    plan_case("dup-key-workload", "a workload key given twice", scenario(rate="    request_rate_per_s: 2\n"
                                                                           "    request_rate_per_s: 3\n"),
              ["line 10", "duplicate key", "request_rate_per_s"]),
    plan_case("dup-key-slo", "an SLO key given twice", scenario(workload="    slo: {max_ttft_s: 1, max_ttft_s: 2}\n"),
              ["line 10", "duplicate key", "max_ttft_s"]),
    settings_case("settings-batch-negative", "a negative batch in settings.batch_sizes",
                  "batch_sizes: [-4, 8]", ["batch_sizes", "-4"]),
    settings_case("settings-bool-number", "allow_offload: 1 (a number where a boolean is expected)",
                  "allow_offload: 1", ["allow_offload", "true or false"]),
    settings_case("settings-number-underscore", "a quoted number written '1_0' in settings",
                  "max_tensor_parallel: '1_0'", ["max_tensor_parallel", "no spaces or '_'"]),
    settings_case("settings-batch-zero", "a zero batch in settings.batch_sizes", "batch_sizes: [0]", ["batch_sizes"]),
    settings_case("settings-batch-empty", "an empty settings.batch_sizes", "batch_sizes: []", ["batch_sizes"]),
    settings_case("settings-batch-huge", "a batch of a million sequences", "batch_sizes: [1000000]",
                  ["batch_sizes", "65,536"]),
    settings_case("settings-batch-dup", "a batch size listed twice", "batch_sizes: [8, 8]", ["batch_sizes", "twice"]),
    settings_case("settings-batch-text", "a batch size that is text", "batch_sizes: [big]", ["batch_sizes"]),
    settings_case("settings-offload-tiny", "an offload step of 1e-9 (a billion levels)", "offload_step: 1e-9",
                  ["offload_step", "plausible minimum"]),
    settings_case("settings-offload-zero", "an offload step of 0", "offload_step: 0", ["offload_step"]),
    settings_case("settings-offload-over", "an offload step above 1", "offload_step: 1.5", ["offload_step"]),
    settings_case("settings-gpu-util", "GPU memory utilisation 1.5", "gpu_memory_utilization: 1.5",
                  ["gpu_memory_utilization"]),
    settings_case("settings-host-util", "host memory utilisation 0", "host_memory_utilization: 0",
                  ["host_memory_utilization"]),
    settings_case("settings-tp-huge", "tensor parallel up to 1000 GPUs", "max_tensor_parallel: 1000",
                  ["max_tensor_parallel", "GPUs"]),
    settings_case("settings-chunk-zero", "a prefill chunk of 0 tokens", "prefill_chunk_tokens: 0",
                  ["prefill_chunk_tokens"]),
    settings_case("settings-typo", "an unknown settings field", "batch_size: [8]", ["batch_size", "unknown field"]),
    settings_case("settings-nan", "settings utilisation .nan", "gpu_memory_utilization: .nan", ["finite"]),
    wl_case("wl-batch-negative", "a negative batch in a workload's batch_sizes", "    batch_sizes: [-1]\n",
            ["batch_sizes"]),
    plan_case("deadline-absurd", "an offline deadline of a million hours",
              scenario(rate="    mode: offline\n    num_requests: 100\n    deadline_hours: 1000000\n"),
              ["line 11", "deadline_hours", "8,760 h", "check the units"]),
    plan_case("deadline-tiny", "an offline deadline of 1e-9 hours",
              scenario(rate="    mode: offline\n    num_requests: 100\n    deadline_hours: 1e-9\n"),
              ["deadline_hours", "h", "plausible minimum"]),
    plan_case("requests-absurd", "1e15 offline requests",
              scenario(rate="    mode: offline\n    num_requests: 1000000000000000\n    deadline_hours: 4\n"),
              ["num_requests", "requests", "plausible maximum"]),
    plan_case("output-tokens-absurd", "an output of 1e8 tokens",
              scenario(lengths="    input_tokens: 512\n    output_tokens: 100000000\n"),
              ["line 8", "output_tokens", "tokens"]),
    wl_case("ttft-absurd", "a TTFT bound of 1e9 s", "    slo: {max_ttft_s: 1000000000}\n", ["max_ttft_s", " s "]),
    wl_case("tpot-tiny", "a TPOT bound of a picosecond", "    slo: {max_tpot_s: 1e-12}\n", ["max_tpot_s", "s"]),
    wl_case("tps-absurd", "a throughput bound of 1e12 tokens/s", "    slo: {min_tokens_per_s: 1e12}\n",
            ["min_tokens_per_s", "tokens/s"]),
    top_case("horizon-absurd", "a ten-million-hour horizon", "horizon_hours: 10000000\n",
             ["line 4", "horizon_hours", "87,600 h"]),
    top_case("budget-absurd", "a budget of 1e15 USD/h", "budget_usd_per_hour: 1e15\n",
             ["budget_usd_per_hour", "USD/h"]),
    top_case("quota-absurd", "a quota of a billion VMs", "quotas:\n  - {gpu: L4, max_instances: 1000000000}\n",
             ["quotas.0.max_instances", "VMs"]),
    top_case("confidence-one", "confidence 1.0", "confidence: 1.0\n", ["confidence"]),
    top_case("peak-absurd", "a peak factor of 1000", "peak_factor: 1000\n", ["peak_factor"]),
    top_case("pricing-unknown", "an unknown pricing", "pricing: cheap\n", ["pricing"]),
    wl_case("mode-unknown", "an unknown workload mode", "    mode: batch\n", ["mode"]),
    wl_case("dtype-unknown", "an unknown dtype in a scenario", "    dtype: int3\n", ["dtype"]),
    wl_case("engine-unknown", "an unknown serving engine", "    engine: vllmm\n", ["engine", "did you mean"]),
    top_case("region-empty", "an empty region name", "regions: ['']\n", ["regions", "non-empty"]),
    top_case("instance-empty", "a blank instance type name", "instance_types: [' ']\n",
             ["instance_types", "non-empty"]),
    top_case("cloud-empty", "an empty cloud list", "clouds: []\n", ["clouds"]),
    wl_case("wl-instance-empty", "an empty instance type in a workload", "    instance_types: ['']\n",
            ["instance_types"]),
    top_case("quota-region-empty", "a quota on an empty region", "quotas:\n  - {region: '', max_gpus: 1}\n",
             ["quotas.0.region"]),
    plan_case("name-empty", "an empty workload name", scenario().replace("name: chat", "name: ''"),
              ["workloads.0.name"]),
    plan_case("model-empty", "an empty model name", scenario(model="''"), ["workloads.0.model"]),
    plan_case("catalog-empty-name", "an empty catalog name", scenario(catalog="''"), ["catalogs"]),
    plan_case("yaml-deep", "YAML nested 200 levels deep", nested(200), ["nested deeper"]),
    plan_case("yaml-alias-bomb", "an alias bomb (billion laughs)", ALIAS_BOMB, ["alias"]),
    plan_case("yaml-python-tag", "a !!python/object tag", "name: !!python/object:os.system x\nworkloads: []\n",
              ["malformed YAML", "line 1"]),
    plan_case("yaml-binary", "a binary file as scenario", "\x00\x01\x02\xff", ["malformed YAML"]),
    plan_case("yaml-workloads-map", "workloads is a mapping", "name: x\nworkloads: {a: 1}\n", ["workloads"]),
    plan_case("yaml-huge", "a 9 MiB scenario", "name: big\n# " + "x" * (9 * 2**20) + "\nworkloads: []\n",
              ["limit"]),
    # --- calibration files
    calib_case("calib-zero", "an all-zero calibration", CALIB_HEAD + '"global": [0, 0, 0, 0, 0, 0]}',
               ["global", "positive"]),
    calib_case("calib-empty", "a calibration with no coefficients", CALIB_HEAD + '"global": null}',
               ["global", "no coefficients"]),
    calib_case("calib-gpu-typo", "a misspelt GPU in per_gpu", CALIB_HEAD + f'"per_gpu": {{"A100-80G": {GOOD_VEC}}}}}',
               ["per_gpu.A100-80G", "unknown GPU"]),
    calib_case("calib-engine-gpu-typo", "a misspelt GPU in per_engine_gpu",
               CALIB_HEAD + f'"per_engine_gpu": {{"vllm|H1000": {GOOD_VEC}}}}}', ["per_engine_gpu", "H1000"]),
    calib_case("calib-engine-typo", "a misspelt engine in per_engine_gpu",
               CALIB_HEAD + f'"per_engine_gpu": {{"vlm|H100": {GOOD_VEC}}}}}', ["per_engine_gpu", "unknown engine"]),
    calib_case("calib-engine-key", "a per_engine_gpu key without '|'",
               CALIB_HEAD + f'"per_engine_gpu": {{"H100": {GOOD_VEC}}}}}', ["per_engine_gpu.H100", "engine|GPU"]),
    calib_case("calib-per-engine-typo", "a misspelt engine in per_engine",
               CALIB_HEAD + f'"per_engine": {{"sglangg": {GOOD_VEC}}}}}', ["per_engine.sglangg"]),
    calib_case("calib-short-vector", "a coefficient vector of 3 numbers", CALIB_HEAD + '"global": [1, 1, 1]}',
               ["global", "6 finite"]),
    calib_case("calib-nan", "NaN in a calibration", CALIB_HEAD + '"global": [NaN, 1, 1, 1, 0, 0]}',
               ["global", "finite"]),
    calib_case("calib-huge-global", "a calibration whose global multipliers are 10^6",
               CALIB_HEAD + '"global": [1e6, 1e6, 1e6, 1e6, 1e6, 1e6]}', ["global", "k_compute", "at most 100"]),
    calib_case("calib-huge-int", "six 401-digit integers in a calibration",
               CALIB_HEAD + '"global": [' + ", ".join(["9" * 401] * 6) + "]}", ["global", "finite"]),
    calib_case("calib-huge-step", "a per-GPU step overhead of an hour",
               CALIB_HEAD + '"per_gpu": {"A10G": [1.2, 1.1, 1.1, 1.1, 3600, 0.00001]}}',
               ["per_gpu.A10G", "step_s", "at most 1"]),
    calib_case("calib-huge-factor", "a per-engine efficiency factor of 10^4",
               CALIB_HEAD + '"per_engine": {"vllm": [1.2, 1e4, 1.1, 1.1, 0.001, 0.00001]}}',
               ["per_engine.vllm", "k_memory", "at most 100"]),
    calib_case("calib-text-coef", "a coefficient given as text",
               CALIB_HEAD + '"global": ["1", 1, 1, 1, 0, 0]}', ["global", "finite"]),
    calib_case("calib-quantile-huge-int", "an error quantile that is a 401-digit integer",
               CALIB_HEAD + f'"global": {GOOD_VEC}, "error_quantiles": {{"vllm|hbm|tpot": {{"0.9": {"9" * 401}}}}}}}',
               ["error_quantiles", "log residual"]),
    calib_case("calib-dup-key", "a key given twice in a calibration",
               CALIB_HEAD + f'"global": {GOOD_VEC}, "global": {GOOD_VEC}}}', ["duplicate key", "global"]),
    calib_case("calib-form", "a calibration of another form", '{"form": "v1", "global": [1]}', ["form"]),
    calib_case("calib-quantile-text", "an error quantile that is text",
               CALIB_HEAD + f'"global": {GOOD_VEC}, "error_quantiles": {{"vllm|hbm|tpot": {{"0.9": "big"}}}}}}',
               ["error_quantiles", "log residual"]),
    calib_case("calib-quantile-key", "an error-quantile key of the wrong shape",
               CALIB_HEAD + f'"global": {GOOD_VEC}, "error_quantiles": {{"tpot": {{"0.9": 0.1}}}}}}',
               ["error_quantiles.tpot"]),
    calib_case("calib-list", "a calibration that is a list", "[1, 2]", ["form"]),
    # --- model cards from config.json
    config_case("config-layers-huge", "a config.json of 10^30 layers",
                HF_CONFIG.replace('"num_hidden_layers": 16', '"num_hidden_layers": 1000000000000000000000000000000'),
                ["num_layers", "less than or equal"]),
    config_case("config-bert", "a BERT config.json (encoder)",
                '{"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 768}',
                ["architectures", "BertForMaskedLM", "not a decoder-only"]),
    config_case("config-t5", "a T5 config.json (encoder-decoder)",
                '{"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "is_encoder_decoder": true}',
                ["is_encoder_decoder", "encoder-decoder"]),
    config_case("config-whisper", "a config.json of model_type whisper without architectures",
                '{"model_type": "whisper", "d_model": 512}', ["model_type", "whisper"]),
    config_case("config-classifier", "a sequence classifier config.json",
                HF_CONFIG.replace("LlamaForCausalLM", "LlamaForSequenceClassification"),
                ["architectures", "LlamaForSequenceClassification"]),
    config_case("config-missing", "a config.json without hidden_size",
                HF_CONFIG.replace('"hidden_size": 2048, ', ""), ["hidden_size", "missing"]),
    config_case("config-text", "a config.json with hidden_size as text",
                HF_CONFIG.replace('"hidden_size": 2048', '"hidden_size": "big"'), ["hidden_size", "whole number"]),
    config_case("config-dup", "a config.json with a key twice",
                HF_CONFIG.replace('"vocab_size"', '"hidden_size": 4096, "vocab_size"'), ["duplicate key"]),
    config_case("config-malformed", "a config.json that is not JSON", "{oops", ["malformed config.json"]),
    config_case("config-list", "a config.json that is a list", "[]", ["JSON object"]),
    config_case("config-heads", "a config.json with heads not dividing", HF_CONFIG.replace(
        '"num_key_value_heads": 8', '"num_key_value_heads": 7'), ["num_key_value_heads"]),
    # --- catalog rows
    catalog_case("csv-type-empty", "a catalog row without an instance type", ",L4,1,8,32,0.8,0.3,r1,x",
                 ["InstanceType"]),
    catalog_case("csv-region-empty", "a catalog row without a region", "l4.small,L4,1,8,32,0.8,0.3, ,x",
                 ["Region"]),
    catalog_case("csv-vcpus-zero", "zero vCPUs", "l4.small,L4,1,0,32,0.8,0.3,r1,x", ["vCPUs"]),
    catalog_case("csv-gpus-billion", "a VM of 10^9 GPUs", "l4.small,L4,1000000000,8,32,0.8,0.3,r1,x",
                 ["AcceleratorCount", "less than or equal"]),
    catalog_case("csv-memory-negative", "negative host memory", "l4.small,L4,1,8,-32,0.8,0.3,r1,x", ["MemoryGiB"]),
    catalog_case("csv-spot-nan", "NaN spot price", "l4.small,L4,1,8,32,0.8,nan,r1,x", ["SpotPrice", "finite"]),
    catalog_case("csv-count-text", "a GPU count that is text", "l4.small,L4,one,8,32,0.8,0.3,r1,x",
                 ["AcceleratorCount"]),
    # --- sweep files
    sweep_case("sweep-unknown-axis", "an unknown sweep axis", BASE_SWEEP.replace("price_multiplier", "price_mult"),
               ["axes.price_mult", "unknown axis"]),
    sweep_case("sweep-negative", "a negative price multiplier", BASE_SWEEP.replace("1.0, 2.0", "1.0, -2.0"),
               ["axes.price_multiplier[1]", "positive"]),
    sweep_case("sweep-growth-huge", "demand grown a million-fold", BASE_SWEEP + "  demand_growth: [1000000.0]\n",
               ["axes.demand_growth[0]", "up to 1000"]),
    sweep_case("sweep-growth-past-rate", "demand growth that takes a point's rate past the scenario's bound",
               BASE_SWEEP + "  demand_growth: [1.0, 1000.0]\n", ["axes.demand_growth[1]", "'chat'", "request_rate_per_s"],
               files={"base.yaml": scenario(rate="    request_rate_per_s: 5000\n")}),
    sweep_case("sweep-slo-past-bound", "an SLO scale that takes a point's TTFT bound past a day",
               BASE_SWEEP + "  slo_scale: [1000.0]\n", ["axes.slo_scale[0]", "max_ttft_s"],
               files={"base.yaml": scenario(workload="    slo: {max_ttft_s: 100}\n")}),
    sweep_case("sweep-price-past-bound", "two price axes whose product prices an instance past 100,000 USD/h",
               BASE_SWEEP.replace("[1.0, 2.0]", "[1.0, 1000.0]") + "  price.gpu.L4: [1000.0]\n",
               ["axes.price_multiplier", "l4.small", "USD/h", "100,000"]),
    sweep_case("sweep-empty-axis", "an axis with no values", BASE_SWEEP.replace("[1.0, 2.0]", "[]"),
               ["axes.price_multiplier"]),
    sweep_case("sweep-dup-key", "a sweep key given twice", BASE_SWEEP + "name: t\n", ["duplicate key", "name"]),
    sweep_case("sweep-dup-axis", "an axis given twice", BASE_SWEEP + "  price_multiplier: [3.0]\n",
               ["duplicate key", "price_multiplier"]),
    sweep_case("sweep-no-base", "a base scenario that does not exist", BASE_SWEEP.replace("base.yaml", "nope.yaml"),
               ["base", "not found"]),
    sweep_case("sweep-repeated", "an axis value repeated", BASE_SWEEP.replace("1.0, 2.0", "1.0, 1.0"),
               ["repeated value"]),
    sweep_case("sweep-too-many", "a sweep of 20,000 points",
               "base: base.yaml\naxes:\n  price_multiplier: [" + ", ".join(str(1 + i) for i in range(200))
               + "]\n  slo_scale: [" + ", ".join(str(1 + i) for i in range(100)) + "]\n",
               ["axes", "20,000 points", "10,000"]),
    sweep_case("sweep-time-limit", "a per-point time limit of a million seconds",
               BASE_SWEEP + "time_limit_s: 1000000\n", ["time_limit_s"]),
    sweep_case("sweep-region", "an unknown region in a regions axis", BASE_SWEEP + "  regions: [[r9]]\n",
               ["axes.regions[0]", "unknown region"]),
    sweep_case("sweep-list", "a sweep file that is a list", "- a\n", ["mapping"]),
    sweep_case("sweep-bad-base", "a sweep whose base scenario is bad", BASE_SWEEP,
               ["line 9", "request_rate_per_s"], file="base.yaml",
               files={"base.yaml": scenario(rate="    request_rate_per_s: -1\n")}),
    sweep_case("sweep-workers", "more workers than CPUs", BASE_SWEEP, ["--workers", "CPUs"], args=["--workers", "999"],
               file=None),
    sweep_case("sweep-cli-time-limit", "--time-limit of 5000 s per point", BASE_SWEEP, ["--time-limit", "3600"],
               args=["--time-limit", "5000"], file=None),
    sweep_case("sweep-suffix", "a results file with a .txt suffix", BASE_SWEEP, ["parquet or .csv"],
               args=["--out", "out/r.txt"], file="r.txt"),
    sweep_case("sweep-resume-other", "--resume from a table of another sweep", BASE_SWEEP, ["--resume", "another sweep"],
               args=["--resume", "--out", "out/r.csv"], file="r.csv",
               files={"out/r.csv": OTHER_SWEEP_TABLE}),
    # --- Melange input files
    melange_case("melange-dup-key", "a Melange key given twice", MELANGE.replace('"slice_factor": 1',
                                                                                 '"slice_factor": 1, "slice_factor": 2'),
                 ["duplicate key", "slice_factor"]),
    melange_case("melange-list", "a Melange file that is a list", "[]", ["JSON object"]),
    melange_case("melange-rate-huge", "a total request rate of 10^12 requests/s",
                 re.sub(r'"total_request_rate": [0-9.]+', '"total_request_rate": 1e12', MELANGE),
                 ["total_request_rate", "less than or equal"]),
    melange_case("melange-cost", "a negative GPU cost", MELANGE.replace("1.01", "-1.01"), ["gpu_info.A10G.cost"]),
    melange_case("melange-fractions", "fractions summing to 1.1", MELANGE.replace("0.2, 0.1", "0.3, 0.1"),
                 ["workload_distribution", "sum to 1"]),
    melange_case("melange-ragged", "a ragged tputs matrix", MELANGE.replace("[[2, 1], [5, 2]]", "[[2, 1], [5]]"),
                 ["gpu_info.A10G.tputs"]),
    melange_case("melange-nan", "a NaN literal", MELANGE.replace("30.0", "NaN"), ["total_request_rate", "finite"]),
    melange_case("melange-slice", "a slice factor of 1.5", MELANGE.replace('"slice_factor": 1', '"slice_factor": 1.5'),
                 ["slice_factor"]),
    melange_case("melange-field", "an unknown Melange field", MELANGE.replace('"slice_factor"', '"slices": 1, "slice_factor"'),
                 ["slices", "unknown field"]),
    melange_case("melange-rate", "a total request rate of 0", MELANGE.replace("30.0", "0"), ["total_request_rate"]),
    melange_case("melange-missing", "no gpu_info", '{"workload_distribution": [[1]], "total_request_rate": 1}',
                 ["gpu_info"]),
    melange_case("melange-malformed", "a truncated Melange file", MELANGE[:40], ["malformed JSON", "line"]),
    # --- measurements (calibrate)
    measure_case("measure-value-underscore", "a measured value written 1_0",
                 MEASURE_HEADER + "\n" + MEASURE_ROW.format(value="1_0", unit="s") + "\n",
                 ["row 2", "value", "no spaces or '_'"]),
    measure_case("measure-value-spaces", "a measured value with a space before it",
                 MEASURE_HEADER + "\n" + MEASURE_ROW.format(value=" 0.02", unit="s") + "\n",
                 ["row 2", "value", "no spaces or '_'"]),
    measure_case("measure-missing-col", "measurements without the unit column",
                 MEASURE_HEADER.replace(",unit", "") + "\n", ["row 1", "unit"]),
    measure_case("measure-dup-col", "measurements with a column twice", MEASURE_HEADER + ",value\n",
                 ["row 1", "duplicated", "value"]),
    measure_case("measure-metric", "an unknown metric", MEASURE_HEADER + "\n"
                 + MEASURE_ROW.format(value=0.01, unit="s").replace("tpot_s", "tpot"), ["row 2", "metric"]),
    measure_case("measure-unit", "a TPOT in milliseconds", MEASURE_HEADER + "\n" + MEASURE_ROW.format(value=10, unit="ms"),
                 ["row 2", "unit"]),
    measure_case("measure-negative", "a negative value", MEASURE_HEADER + "\n" + MEASURE_ROW.format(value=-1, unit="s"),
                 ["row 2", "value"]),
    measure_case("measure-dtype", "an unknown precision 'fp3'", MEASURE_HEADER + "\n"
                 + MEASURE_ROW.format(value=0.02, unit="s").replace(",fp16,fp16,", ",fp3,fp16,"),
                 ["row 2", "dtype", "unknown precision"]),
    measure_case("measure-zero", "a zero value", MEASURE_HEADER + "\n" + MEASURE_ROW.format(value=0, unit="s"),
                 ["row 2", "value", "positive"]),
    measure_case("measure-huge", "a TPOT of 1e308 s", MEASURE_HEADER + "\n" + MEASURE_ROW.format(value=1e308, unit="s"),
                 ["row 2", "value", "plausible maximum"]),
    measure_case("measure-batch", "a batch size of -2", MEASURE_HEADER + "\n"
                 + MEASURE_ROW.format(value=0.01, unit="s").replace(",8,512,", ",-2,512,"), ["row 2", "batch_size"]),
    measure_case("measure-source", "a row without a source", MEASURE_HEADER + "\n"
                 + MEASURE_ROW.format(value=0.01, unit="s").replace("http://x", ""), ["row 2", "source"]),
    measure_case("measure-missing-file", "a measurements file that does not exist", None, ["not found"],
                 file="m.csv"),
    measure_case("measure-json-no-model", "a benchmark JSON without --model", VLLM_JSON, ["--model"],
                 file="m.json"),
    measure_case("measure-empty", "an empty measurements file", "", ["cannot read CSV"]),
    # --- plan JSON files (verify, export, report, simulate)
    plan_json_case("verify-malformed", "verify a plan that is not JSON", ["verify", "scenario.yaml", "plan.json"],
                   "{", ["malformed plan JSON"]),
    plan_json_case("verify-deep", "verify a plan nested 100,000 lists deep", ["verify", "scenario.yaml", "plan.json"],
                   "[" * 100000 + "]" * 100000, ["malformed plan JSON"]),
    plan_json_case("verify-missing-field", "verify a plan without its scenario field",
                   ["verify", "scenario.yaml", "plan.json"], '{"status": "optimal", "assignments": []}',
                   ["scenario", "not a plan", "required"]),
    plan_json_case("verify-dup", "verify a plan with a key twice", ["verify", "scenario.yaml", "plan.json"],
                   '{"status": "optimal", "status": "feasible"}', ["duplicate key", "status"]),
    plan_json_case("verify-missing", "verify a plan missing fields", ["verify", "scenario.yaml", "plan.json"],
                   '{"status": "optimal"}', ["not a plan"]),
    plan_json_case("export-malformed", "export a plan that is not JSON", ["export", "plan.json", "--to", "vllm"],
                   "[1,", ["malformed plan JSON"]),
    plan_json_case("export-nan", "export a plan whose objective is NaN", ["export", "plan.json", "--to", "vllm"],
                   '{"scenario": "x", "status": "optimal", "objective": NaN, "assignments": [], "pools": []}',
                   ["objective", "finite"]),
    plan_json_case("export-infeasible", "export an infeasible plan", ["export", "plan.json", "--to", "vllm"],
                   '{"status": "infeasible"}', ["status", "infeasible"]),
    plan_json_case("export-no-pools", "export a plan without pools", ["export", "plan.json", "--to", "vllm"],
                   '{"scenario": "x", "status": "optimal", "objective": 1, "assignments": []}', ["pools"]),
    plan_json_case("export-line-break", "export a plan whose workload name carries a shell line",
                   ["export", "plan.json", "--to", "vllm"],
                   '{"scenario": "x", "status": "optimal", "objective": 1, "pools": [], "assignments": '
                   '[{"workload": "chat\\ntouch /tmp/pwned #"}]}', ["assignments.0.workload", "line break"]),
    plan_json_case("simulate-line-break", "simulate a plan whose pool region holds a Unicode line separator",
                   ["simulate", "scenario.yaml", "plan.json"], REPLAY_PLAN.replace('"pool": "p", "count"',
                                                                                  '"pool": "p\\u2028x", "count"'),
                   ["pools.0.pool", "line break"]),
    plan_json_case("export-missing", "export a plan that does not exist", ["export", "nope.json", "--to", "vllm"],
                   "{}", ["not found"], file="nope.json"),
    plan_json_case("report-malformed", "report on a plan that is not JSON", ["report", "plan.json", "--out",
                                                                             "out/r.html"], "{", ["plan"]),
    plan_json_case("simulate-missing", "simulate a plan that does not exist",
                   ["simulate", "scenario.yaml", "nope.json"], "{}", ["not found"], file="nope.json"),
    plan_json_case("simulate-malformed", "simulate a plan that is not JSON", ["simulate", "scenario.yaml", "plan.json"],
                   "{x", ["malformed plan JSON"]),
    plan_json_case("simulate-list", "simulate a plan that is a list", ["simulate", "scenario.yaml", "plan.json"],
                   "[]", ["not a plan"]),
    plan_json_case("simulate-count", "simulate a pool of 1e30 VMs", ["simulate", "scenario.yaml", "plan.json"],
                   REPLAY_PLAN.replace('"count": 1', '"count": 1e30'), ["assignments.0.count"]),
    plan_json_case("simulate-batch", "simulate a batch size of 0", ["simulate", "scenario.yaml", "plan.json"],
                   REPLAY_PLAN.replace('"batch_size": 8', '"batch_size": 0'), ["assignments.0.batch_size"]),
    plan_json_case("simulate-offload", "simulate an offload ratio of -0.5", ["simulate", "scenario.yaml", "plan.json"],
                   REPLAY_PLAN.replace('"offload_ratio": 0', '"offload_ratio": -0.5'), ["assignments.0.offload_ratio"]),
    plan_json_case("simulate-tp", "simulate tensor parallelism 3 on 1 GPU", ["simulate", "scenario.yaml", "plan.json"],
                   REPLAY_PLAN.replace('"tensor_parallel": 1', '"tensor_parallel": 3'),
                   ["assignments.0.tensor_parallel", "divide"]),
    plan_json_case("simulate-gpu", "simulate an unknown GPU", ["simulate", "scenario.yaml", "plan.json"],
                   REPLAY_PLAN.replace('"gpu": "L4"', '"gpu": "H1000"'), ["assignments.0.gpu", "unknown GPU"]),
    plan_json_case("simulate-workload", "simulate the plan of another scenario", ["simulate", "scenario.yaml", "plan.json"],
                   REPLAY_PLAN.replace('"workload": "chat"', '"workload": "ghost"'), ["assignments.0.workload", "ghost"]),
    plan_json_case("simulate-nan", "simulate a share of NaN", ["simulate", "scenario.yaml", "plan.json"],
                   REPLAY_PLAN.replace('"share": 1.0', '"share": NaN'), ["assignments.0.share"]),
    # --- command-line values
    Case("cli-gamma-nan", "simulate gamma arrivals with a CV of nan", {"plan.json": "{}", "scenario.yaml": scenario()},
         ["simulate", "scenario.yaml", "plan.json", "--arrivals", "gamma:nan"], ["--arrivals", "coefficient"], None,
         kind="CLI option"),
    Case("trace-equal", "a trace whose timestamps are all equal", {"plan.json": "{}", "scenario.yaml": scenario(),
                                                                  "t.csv": "0\n0\n"},
         ["simulate", "scenario.yaml", "plan.json", "--arrivals", "trace:t.csv"], ["two different timestamps"],
         "t.csv", kind="trace"),
    Case("trace-nan", "a trace with a NaN timestamp", {"plan.json": "{}", "scenario.yaml": scenario(),
                                                      "t.csv": "t\n0\nnan\n2\n"},
         ["simulate", "scenario.yaml", "plan.json", "--arrivals", "trace:t.csv"], ["line 3", "finite"], "t.csv",
         kind="trace"),
    Case("trace-missing", "a trace file that does not exist", {"plan.json": "{}", "scenario.yaml": scenario()},
         ["simulate", "scenario.yaml", "plan.json", "--arrivals", "trace:t.csv"], ["not found"], "t.csv", kind="trace"),
    Case("cli-arrivals", "simulate with an unknown arrival process", {"plan.json": "{}", "scenario.yaml": scenario()},
         ["simulate", "scenario.yaml", "plan.json", "--arrivals", "uniform"], ["--arrivals"], None, kind="CLI option"),
    Case("cli-offload-flag", "export with an unknown offload flag", {"plan.json": "{}"},
         ["export", "plan.json", "--to", "vllm", "--offload-flag", "swap"], ["--offload-flag"], None, kind="CLI option"),
    Case("cli-skypilot-dir", "export --to skypilot without a folder", {"plan.json": "{}"},
         ["export", "plan.json", "--to", "skypilot"], ["output folder"], None, kind="CLI option"),
    Case("cli-catalog-device", "--catalog that is a device", {"scenario.yaml": scenario(), "catalog.csv": GOOD_CATALOG},
         ["plan", "scenario.yaml", "--catalog", "/dev/null", "--format", "json", "--out", "out/plan.json"],
         ["--catalog", "device", "not a regular file"], "/dev/null", kind="CLI option"),
    plan_case("catalog-device", "a scenario catalog that is a device", scenario(catalog="/dev/zero"),
              ["catalogs", "device", "not a regular file"], file="/dev/zero"),
    Case("cli-models-file", "--models that is a file", {"scenario.yaml": scenario(), "catalog.csv": GOOD_CATALOG,
                                                      "cards.txt": "x"},
         ["plan", "scenario.yaml", "--models", "cards.txt", "--format", "json", "--out", "out/plan.json"],
         ["--models", "is a file, not a folder"], "cards.txt", kind="CLI option"),
    Case("cli-models-missing", "--models that does not exist", {"scenario.yaml": scenario(), "catalog.csv": GOOD_CATALOG},
         ["plan", "scenario.yaml", "--models", "nope", "--format", "json", "--out", "out/plan.json"],
         ["--models", "not found"], "nope", kind="CLI option"),
    Case("cli-melange-missing", "plan --from-melange with a missing file", {},
         ["plan", "--from-melange", "nope.json"], ["not found"], "nope.json", kind="CLI option"),
    Case("cli-plot-missing", "plot a results file that does not exist", {}, ["plot", "nope.parquet", "--out", "out"],
         ["not found"], "nope.parquet", kind="CLI option"),
    Case("cli-plot-suffix", "plot a results file with a .txt suffix", {"r.txt": "x"}, ["plot", "r.txt", "--out", "out"],
         ["parquet or .csv"], "r.txt", kind="CLI option"),
    Case("cli-predict-heads", "predict on 3 GPUs, which do not split 32 attention heads", {},
         ["predict", "--model", "llama-3.1-8b", "--gpu", "H100", "--gpus", "3", "--input", "10", "--output", "10"],
         ["gpus", "attention heads"], None, kind="CLI option"),
    Case("cli-predict-model-json", "predict from a config.json that does not exist", {},
         ["predict", "--model", "nope/config.json", "--gpu", "H100", "--input", "10", "--output", "10"],
         ["not found"], None, kind="CLI option"),
    Case("cli-predict-bert", "predict from an encoder config.json",
         {"config.json": '{"architectures": ["BertModel"], "model_type": "bert"}'},
         ["predict", "--model", "config.json", "--gpu", "H100", "--input", "10", "--output", "10"],
         ["BertModel", "decoder-only"], "config.json", kind="CLI option"),
    # --- --out targets and permissions: refused before any work, nothing changed
    out_case("out-is-scenario", "plan --out onto its own scenario", ["plan", "scenario.yaml", "--out", "scenario.yaml"],
             ["--out", "input of this command"], file="scenario.yaml"),
    out_case("out-is-scenario-alias", "plan --out onto the scenario by another name",
             ["plan", "scenario.yaml", "--out", "./sub/../scenario.yaml"], ["input of this command"],
             setup=mkdir("sub"), file="scenario.yaml"),
    out_case("out-is-catalog", "plan --out onto the scenario's catalog", ["plan", "scenario.yaml", "--out", "catalog.csv"],
             ["catalog.csv", "input of this command"], file="catalog.csv"),
    out_case("out-is-calibration", "plan --out onto the scenario's calibration",
             ["plan", "scenario.yaml", "--out", "calib.json"], ["input of this command"],
             files={"scenario.yaml": scenario().replace("calibration: none", "calibration: calib.json"),
                    "calib.json": CALIB_HEAD + f'"global": {GOOD_VEC}}}'}, file="calib.json"),
    out_case("out-is-hardlink", "plan --out onto a hard link of the scenario",
             ["plan", "scenario.yaml", "--out", "copy.yaml"], ["input of this command"],
             setup=lambda root: os.link(root / "scenario.yaml", root / "copy.yaml"), file="copy.yaml"),
    out_case("out-symlink", "plan --out onto a symbolic link", ["plan", "scenario.yaml", "--out", "link.json"],
             ["symbolic link"], setup=symlink("target.json", "link.json"), file="link.json"),
    out_case("out-directory", "plan --out onto a folder", ["plan", "scenario.yaml", "--out", "dir"], ["folder"],
             setup=mkdir("dir"), file="dir"),
    out_case("out-device", "plan --out /dev/null", ["plan", "scenario.yaml", "--out", "/dev/null"],
             ["device"], file="/dev/null"),
    out_case("out-read-only-file", "plan --out onto a read-only file", ["plan", "scenario.yaml", "--out", "ro.json"],
             ["read-only"], files={"ro.json": "{}"}, setup=chmod("ro.json", 0o444), file="ro.json"),
    out_case("out-trailing-slash", "plan --out to a new folder given with a trailing /",
             ["plan", "scenario.yaml", "--format", "json", "--out", "newdir/"], ["--out", "names a folder"],
             file="newdir/"),
    out_case("out-dump-lp-slash", "plan --dump-lp given with a trailing /",
             ["plan", "scenario.yaml", "--dump-lp", "lp/", "--out", "p.json"], ["--dump-lp", "names a folder"],
             file="lp/"),
    out_case("out-report-slash", "report --out given with a trailing /", ["report", "plan.json", "--out", "html/"],
             ["--out", "names a folder"], files={"plan.json": PLAN}, file="html/"),
    out_case("out-export-read-only", "export --to vllm onto a read-only vllm_commands.sh",
             ["export", "plan.json", "dir", "--to", "vllm"], ["read-only"],
             files={"plan.json": PLAN, "dir/vllm_commands.sh": "# old\n"},
             setup=chmod("dir/vllm_commands.sh", 0o444), file="vllm_commands.sh"),
    out_case("out-read-only-dir", "plan --out into a read-only folder", ["plan", "scenario.yaml", "--out", "ro/p.json"],
             ["not writable"], setup=mkdir("ro", 0o555), file="p.json"),
    out_case("out-parent-file", "plan --out under a path that is a file",
             ["plan", "scenario.yaml", "--out", "catalog.csv/p.json"], ["is a file"], file="p.json"),
    out_case("out-dump-lp-scenario", "--dump-lp onto the scenario",
             ["plan", "scenario.yaml", "--dump-lp", "scenario.yaml"], ["--dump-lp", "input"], file="scenario.yaml"),
    out_case("out-dump-lp-out", "--dump-lp onto the --out file",
             ["plan", "scenario.yaml", "--out", "p.json", "--dump-lp", "p.json"], ["--dump-lp", "input"], file="p.json"),
    out_case("out-recommend-scenario", "recommend --out onto its scenario",
             ["recommend", "scenario.yaml", "--out", "scenario.yaml"], ["input of this command"], file="scenario.yaml"),
    out_case("out-recommend-dir", "recommend --out onto a folder", ["recommend", "scenario.yaml", "--out", "d"],
             ["folder"], setup=mkdir("d"), file="d"),
    out_case("out-sweep-file", "sweep --out onto the sweep file (CSV)",
             ["sweep", "sweep.csv", "--out", "sweep.csv", "--workers", "1"], ["input of this command"],
             files={"sweep.csv": BASE_SWEEP.replace("base.yaml", "scenario.yaml")}, file="sweep.csv"),
    out_case("out-sweep-base", "sweep --out onto the base scenario's catalog",
             ["sweep", "sweep.yaml", "--out", "catalog.csv", "--workers", "1"], ["input of this command"],
             files={"sweep.yaml": BASE_SWEEP.replace("base.yaml", "scenario.yaml")}, file="catalog.csv"),
    out_case("out-sweep-symlink", "sweep --out onto a symbolic link",
             ["sweep", "sweep.yaml", "--out", "r.parquet", "--workers", "1"], ["symbolic link"],
             files={"sweep.yaml": BASE_SWEEP.replace("base.yaml", "scenario.yaml")},
             setup=symlink("/tmp/elsewhere.parquet", "r.parquet"), file="r.parquet"),
    out_case("out-calibrate-input", "calibrate --out onto its measurements",
             ["calibrate", "m.csv", "--out", "m.csv"], ["input of this command"], files={"m.csv": MEASURE_HEADER + "\n"},
             file="m.csv"),
    out_case("out-report-plan", "report --out onto the plan", ["report", "plan.json", "--out", "plan.json"],
             ["input of this command"], files={"plan.json": PLAN}, file="plan.json"),
    out_case("out-simulate-plan", "simulate --out onto the plan",
             ["simulate", "scenario.yaml", "plan.json", "--out", "plan.json"], ["input of this command"],
             files={"plan.json": PLAN}, file="plan.json"),
    out_case("out-plot-file", "plot --out onto a file", ["plot", "r.csv", "--out", "scenario.yaml"],
             ["not a folder"], files={"r.csv": "x"}, file="scenario.yaml"),
    out_case("out-export-file", "export DIR that is a file", ["export", "plan.json", "catalog.csv", "--to", "skypilot"],
             ["not a folder"], files={"plan.json": PLAN}, file="catalog.csv"),
    out_case("out-import-file", "catalog import --out onto a file",
             ["catalog", "import", "--skypilot", "sky", "--out", "catalog.csv"], ["not a folder"],
             setup=mkdir("sky"), file="catalog.csv"),
    out_case("out-import-same", "catalog import --out onto its --skypilot folder",
             ["catalog", "import", "--skypilot", "sky", "--out", "sky"], ["input of this command"],
             setup=mkdir("sky"), file="sky"),
]

# ---- catalog import: a bad SkyPilot vms.csv row is refused as the catalog reader refuses it ------------------

VMS_HEADER = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone"
VMS_ROW = "g5.xlarge,A10G,1,4,16,{price},{spot},us-east-1,us-east-1a"


def import_case(id, what, row, expect):
    text = f"{VMS_HEADER}\n{VMS_ROW.format(price=1.0, spot=0.4)}\n{row}\n"
    return Case(id, what, {"sky/aws/vms.csv": text}, ["catalog", "import", "--skypilot", "sky", "--out", "cat"],
                ["row 3", *expect], "sky/aws/vms.csv", kind="catalog import")


CASES += [
    import_case("import-negative-price", "a negative on-demand price", VMS_ROW.format(price=-1, spot=""), ["Price"]),
    import_case("import-nan-price", "a NaN on-demand price", VMS_ROW.format(price="NaN", spot=""),
                ["Price", "finite"]),
    import_case("import-inf-spot", "an infinite spot price", VMS_ROW.format(price=1, spot="-inf"),
                ["SpotPrice", "finite"]),
    import_case("import-huge-price", "an on-demand price of 10^9 USD/h", VMS_ROW.format(price="1e9", spot=""),
                ["Price"]),
    import_case("import-negative-spot", "a negative spot price", VMS_ROW.format(price=1, spot=-0.5), ["SpotPrice"]),
    import_case("import-zero-vcpus", "zero vCPUs", "g5.xlarge,A10G,1,0,16,1,,us-east-1,us-east-1a", ["vCPUs"]),
    import_case("import-huge-memory", "10^9 GiB of host memory", "g5.xlarge,A10G,1,4,1e9,1,,us-east-1,us-east-1a",
                ["MemoryGiB"]),
    Case("import-accelerator-price", "a negative GCP accelerator price row",
         {"sky/gcp/vms.csv": f"{VMS_HEADER}\na2-highgpu-1g,A100,1,12,85,0.7,0.3,us-central1,us-central1-a\n"
                             ",A100,1,,,-0.5,,us-central1,us-central1-a\n"},
         ["catalog", "import", "--skypilot", "sky", "--out", "cat"], ["row 3", "Price", "accelerator price"],
         "sky/gcp/vms.csv", kind="catalog import"),
    import_case("import-huge-count", "10^6 GPUs per VM", "g5.xlarge,A10G,1000000,4,16,1,,us-east-1,us-east-1a",
                ["AcceleratorCount"]),
]

# ---- plans whose pools and assignments do not hang together: simulate, export and report refuse them as
# verify does (planfile.check_consistency), before doing anything ----------------------------------------------

ZERO_POOL = edited_plan(_set(("pools", 0, "count", 0), ("assignments", None, "count", 0)))
UNKNOWN_TYPE = edited_plan(_set(("pools", 0, "instance_type", "x9.huge"),
                                ("assignments", None, "instance_type", "x9.huge")))
OTHER_SCENARIO = edited_plan(_set(("assignments", None, "workload", "ghost")))
NO_POOL = edited_plan(_set(("assignments", 0, "pool", "nowhere")))
OTHER_TYPE = edited_plan(_set(("assignments", 0, "instance_type", "t4.large")))
SIMULATE = ["simulate", "scenario.yaml", "plan.json", "--requests", "100"]
EXPORT = ["export", "plan.json", "--to", "vllm"]
EXPORT_SC = [*EXPORT, "--scenario", "scenario.yaml"]
REPORT = ["report", "plan.json", "--out", "r.html"]
REPORT_SC = [*REPORT, "--scenario", "scenario.yaml"]
def consistency_case(id, what, command, text, expect):
    """A plan JSON case in a folder whose scenario plans on the catalog the valid plan was made from (tiny.csv)."""
    files = {"scenario.yaml": scenario(catalog="tiny.csv"), "tiny.csv": GOOD_CATALOG, "plan.json": text}
    return Case(id, what, files, command, expect, "plan.json", kind="plan JSON")


CASES += [
    consistency_case("simulate-zero-pool", "simulate a plan whose pool rents 0 VMs", SIMULATE, ZERO_POOL,
                   ["pools.0.count", "0 VMs"]),
    consistency_case("export-zero-pool", "export a plan whose pool rents 0 VMs", EXPORT, ZERO_POOL,
                   ["pools.0.count", "0 VMs"]),
    consistency_case("report-zero-pool", "report a plan whose pool rents 0 VMs", REPORT, ZERO_POOL,
                   ["pools.0.count", "0 VMs"]),
    consistency_case("simulate-unknown-type", "simulate a plan on an instance type the catalog lacks", SIMULATE,
                   UNKNOWN_TYPE, ["pools.0.instance_type", "x9.huge", "not an instance"]),
    consistency_case("export-unknown-type", "export --scenario a plan on an instance type its catalog lacks",
                   EXPORT_SC, UNKNOWN_TYPE, ["pools.0.instance_type", "x9.huge", "not an instance"]),
    consistency_case("report-unknown-type", "report --scenario a plan on an instance type its catalog lacks",
                   REPORT_SC, UNKNOWN_TYPE, ["pools.0.instance_type", "x9.huge", "not an instance"]),
    consistency_case("export-other-scenario", "export --scenario the plan of another scenario", EXPORT_SC,
                   OTHER_SCENARIO, ["assignments.0.workload", "ghost", "another scenario"]),
    consistency_case("report-other-scenario", "report --scenario the plan of another scenario", REPORT_SC,
                   OTHER_SCENARIO, ["assignments.0.workload", "ghost", "another scenario"]),
    consistency_case("export-missing-pool", "export a plan whose assignment names no listed pool", EXPORT, NO_POOL,
                   ["assignments.0.pool", "nowhere"]),
    consistency_case("report-pool-mismatch", "report a plan whose assignment's instance type is not its pool's",
                   REPORT, OTHER_TYPE, ["assignments.0.instance_type", "t4.large", "differs"]),
    consistency_case("simulate-missing-pool", "simulate a plan whose assignment names no listed pool", SIMULATE,
                   NO_POOL, ["assignments.0.pool", "nowhere"]),
]
for _c in CASES:  # the kind of the cases above without one
    if _c.kind == "scenario" and _c.file == "catalog.csv":
        object.__setattr__(_c, "kind", "catalog")
    elif _c.kind == "scenario" and _c.file == "calib.json":
        object.__setattr__(_c, "kind", "calibration")
    elif _c.kind == "scenario" and _c.file == "config.json":
        object.__setattr__(_c, "kind", "model card")
    elif _c.kind == "scenario" and _c.args[0] == "predict" or _c.id.startswith("cli-"):
        object.__setattr__(_c, "kind", "CLI option")


_PLAN_TEXT: list[str] = []


def plan_json() -> str:
    """A valid plan JSON of ``scenario()`` on the tiny catalog (solved once)."""
    if not _PLAN_TEXT:
        from solver.plan import plan
        from solver.report import plan_payload, to_json
        from solver.scenario import parse_scenario, resolve

        import yaml as _yaml
        text = scenario(catalog=str(TINY_CSV))
        resolved = resolve(parse_scenario(_yaml.safe_load(text)), "scenario.yaml", DATA)
        _PLAN_TEXT.append(to_json(plan_payload(plan(resolved, timings=False))))
    return _PLAN_TEXT[0]


def materialise(case: Case, root: Path) -> None:
    """Write a case's files (None: left out) and run its set-up."""
    for name, text in case.files.items():
        if text is None:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(plan_json() if text == PLAN else text() if callable(text) else text, encoding="utf-8")
    if case.setup is not None:
        case.setup(root)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, permission bits and content hash (links: their target)."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode)
        else:
            out[rel] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, workdir: Path):
    """Exit 2, one line naming the file (and line/row and field), and nothing under the folder written or
    changed: no output, no temporary file, no mode change."""
    materialise(case, workdir)
    before = snapshot(workdir)
    args = list(case.args) + (["--out", "out/plan.json"] if case.writes_plan else [])
    result = run_cli(args)
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "internal error" not in out, out
    assert result.exit_code == 2, out
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("infersave: error: ")
    if case.file is not None:
        assert case.file in line, line
    for piece in case.expect:
        assert piece.lower() in line.lower(), (piece, line)
    assert snapshot(workdir) == before
    assert result.stdout == ""


def test_corpus_size_and_kinds():
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 150, len(CASES)
    assert {"scenario", "sweep", "catalog", "model card", "calibration", "measurements", "melange", "plan JSON",
            "CLI option", "--out target"} <= kinds, kinds
    assert len({c.id for c in CASES}) == len(CASES)
