"""Bad inputs: each gives exit 2 and one line on stderr naming the file (and row/line/field), no traceback,
and no output file when --out is given. ``CASES`` also drives tests/make_bad_inputs.py (tests/BAD_INPUTS.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import TINY_CSV, run_cli

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

    @property
    def writes_plan(self) -> bool:
        return self.args[0] == "plan"


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
              ["duplicate workload name", "chat"]),
    plan_case("bucket-fractions", "bucket fractions that do not sum to 1",
              scenario(lengths="    buckets:\n      - {input_tokens: 64, output_tokens: 8, fraction: 0.5}\n"
                               "      - {input_tokens: 128, output_tokens: 8, fraction: 0.4}\n"),
              ["workloads.0", "sum to 1"]),
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
    plan_case("csv-price-negative", "negative price", scenario(), ["row 2", "Price", "greater than 0"],
              catalog=catalog_with(ROW.format(price="-1")), file="catalog.csv"),
    plan_case("csv-price-zero", "zero price", scenario(), ["row 2", "Price", "greater than 0"],
              catalog=catalog_with(ROW.format(price="0")), file="catalog.csv"),
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


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, workdir: Path):
    for name, text in case.files.items():
        (workdir / name).write_text(text, encoding="utf-8")
    args = list(case.args) + (["--out", "out/plan.json"] if case.writes_plan else [])
    result = run_cli(args)
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "internal error" not in out
    assert result.exit_code == 2, out
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("infersave: error: ")
    if case.file is not None:
        assert case.file in line, line
    for piece in case.expect:
        assert piece.lower() in line.lower(), (piece, line)
    assert not (workdir / "out").exists() or not any((workdir / "out").iterdir())
    assert result.stdout == ""
