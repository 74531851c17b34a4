"""``infersave catalog show`` and ``infersave catalog import`` (SkyPilot vms.csv -> this project's catalog CSV)."""
from __future__ import annotations

import csv
import io
import json

from conftest import run_cli
from solver.catalog import gpu_specs, load_instances

HEADER = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone"
AWS_VMS = f"""{HEADER}
g5.xlarge,A10G,1,4,16,"{{'Gpus': []}}",1.006,0.45,us-east-1,us-east-1a
g5.xlarge,A10G,1,4,16,"{{'Gpus': []}}",1.006,0.39,us-east-1,us-east-1b
g5.xlarge,A10G,1,4,16,"{{'Gpus': []}}",1.006,1.2,us-east-1,us-east-1c
g5.xlarge,A10G,1,4,16,"{{'Gpus': []}}",1.006,0.51,us-west-2,us-west-2a
p5.4xlarge,H100,1,16,256,,6.88,6.88,us-east-1,us-east-1a
p5.4xlarge,H100,1,16,256,,6.88,,us-east-1,us-east-1b
m5.large,,,2,8,,0.096,0.03,us-east-1,us-east-1a
trn1.2xlarge,Trainium,1,8,32,,1.34,0.5,us-east-1,us-east-1a
"""
GCP_VMS = f"""{HEADER}
a2-highgpu-1g,A100,1,12,85,,0.7,0.3,us-central1,us-central1-a
,A100,1,,,,2.9,1.5,us-central1,us-central1-a
"""


def _skypilot_dir(tmp_path):
    root = tmp_path / "skypilot"
    (root / "aws").mkdir(parents=True)
    (root / "gcp").mkdir()
    (root / "aws" / "vms.csv").write_text(AWS_VMS, encoding="utf-8")
    (root / "gcp" / "vms.csv").write_text(GCP_VMS, encoding="utf-8")
    return root


def test_import_keeps_cheapest_real_spot_per_region(tmp_path):
    root = _skypilot_dir(tmp_path)
    r = run_cli(["catalog", "import", "--skypilot", root, "--out", tmp_path / "cat", "--retrieved", "2026-01-02",
                 "--source", "https://example.org/vms.csv"])
    assert r.exit_code == 0, r.output
    assert "cheapest zone quote per region" in r.stderr and "Trainium" in r.stderr
    rows = {(x["InstanceType"], x["Region"]): x for x in csv.DictReader(io.StringIO(
        (tmp_path / "cat" / "aws.csv").read_text()))}
    assert set(rows) == {("g5.xlarge", "us-east-1"), ("g5.xlarge", "us-west-2"), ("p5.4xlarge", "us-east-1")}
    assert float(rows["g5.xlarge", "us-east-1"]["SpotPrice"]) == 0.39  # min over zones; 1.2 >= on-demand dropped
    assert float(rows["g5.xlarge", "us-west-2"]["SpotPrice"]) == 0.51
    assert rows["p5.4xlarge", "us-east-1"]["SpotPrice"] == ""  # only a placeholder quote (== on-demand)
    assert all(x["retrieved"] == "2026-01-02" and x["source"] == "https://example.org/vms.csv"
               for x in rows.values())
    gcp = list(csv.DictReader(io.StringIO((tmp_path / "cat" / "gcp.csv").read_text())))
    assert [(x["InstanceType"], float(x["Price"]), float(x["SpotPrice"])) for x in gcp] == [
        ("a2-highgpu-1g", 3.6, 1.8)]  # host row + accelerator row, as SkyPilot prices GCP
    for name in ("aws.csv", "gcp.csv"):  # the engine loads what was imported
        assert load_instances(tmp_path / "cat" / name, gpu_specs())


def test_import_bad_input_writes_nothing(tmp_path):
    root = _skypilot_dir(tmp_path)
    (root / "gcp" / "vms.csv").write_text(GCP_VMS.replace("0.7,0.3", "cheap,0.3"), encoding="utf-8")
    r = run_cli(["catalog", "import", "--skypilot", root, "--out", tmp_path / "cat"])
    assert r.exit_code == 2
    assert "gcp/vms.csv:row 2:Price" in r.stderr
    assert not (tmp_path / "cat").exists()
    r = run_cli(["catalog", "import", "--skypilot", tmp_path / "nowhere", "--out", tmp_path / "cat"])
    assert r.exit_code == 2 and "not found" in r.stderr


def test_show_filters_and_formats():
    r = run_cli(["catalog", "show", "--gpu", "h100", "--cloud", "aws", "-f", "json"])
    assert r.exit_code == 0, r.output
    offers = json.loads(r.stdout)["offerings"]
    assert offers and {o["gpu"] for o in offers} == {"H100"} and {o["cloud"] for o in offers} == {"aws"}
    assert all(o["retrieved"] for o in offers)
    p5 = [o for o in offers if o["instance_type"] == "p5.48xlarge" and o["region"] == "us-east-1"]
    assert p5 and p5[0]["usd_per_hour"] == 55.04 and p5[0]["spot_usd_per_hour"] is not None
    r = run_cli(["catalog", "show", "--region", "us-central1", "-f", "csv"])
    assert r.exit_code == 0 and r.stdout.startswith("gpu,gpu_count,cloud,region,instance_type")
    assert "us-central1" in r.stdout and "us-east-1" not in r.stdout
    r = run_cli(["catalog", "show", "--gpu", "H10"])
    assert r.exit_code == 2 and "did you mean" in r.stderr
    r = run_cli(["catalog", "show", "--cloud", "aws"])
    assert r.exit_code == 0 and "p5.48xlarge" in r.stdout


def test_import_refuses_a_read_only_target_before_writing_any(tmp_path):
    """Every <cloud>.csv is checked before the first is written: a read-only gcp.csv leaves aws.csv untouched."""
    root = _skypilot_dir(tmp_path)
    out = tmp_path / "cat"
    out.mkdir()
    for name in ("aws.csv", "gcp.csv"):
        (out / name).write_text("old\n", encoding="utf-8")
    (out / "gcp.csv").chmod(0o444)
    r = run_cli(["catalog", "import", "--skypilot", root, "--out", out])
    assert r.exit_code == 2 and "gcp.csv" in r.stderr and "read-only" in r.stderr, r.output
    assert (out / "aws.csv").read_text(encoding="utf-8") == "old\n"
