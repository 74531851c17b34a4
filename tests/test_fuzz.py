"""Fuzz the CLI with scenario files, valid and corrupted: it never shows a traceback, always exits 0/1/2/3, and
every plan it writes passes ``infersave verify``."""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY_CSV, run_cli, examples

MODELS = ["llama-3.2-1b", "opt-1.3b", "qwen2.5-7b", "llama-3.1-8b"]
SETTINGS = settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])

anything = st.one_of(
    st.text(max_size=12), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-5, 5), max_size=2),
    st.sampled_from([0, -1, 1e308, -1e308, 10**30, float("nan"), float("inf"), "", "fast", "l4.small", "r1"]),
)


@st.composite
def valid_scenarios(draw) -> dict:
    workloads = []
    for i in range(draw(st.integers(1, 2))):
        w = {"name": f"w{i}", "model": draw(st.sampled_from(MODELS)),
             "input_tokens": draw(st.sampled_from([32, 256, 1024])),
             "output_tokens": draw(st.sampled_from([8, 64, 256]))}
        if draw(st.booleans()):
            w["request_rate_per_s"] = draw(st.sampled_from([0.1, 2.0, 15.0]))
            if draw(st.booleans()):
                w["slo"] = {"max_tpot_s": draw(st.sampled_from([0.01, 0.05])),
                            "max_ttft_s": draw(st.sampled_from([0.5, 5.0]))}
        else:
            w |= {"mode": "offline", "num_requests": draw(st.sampled_from([100, 20000])),
                  "deadline_hours": draw(st.sampled_from([0.5, 4.0]))}
        if draw(st.booleans()):
            w["batch_sizes"] = [draw(st.sampled_from([1, 8, 32]))]
        workloads.append(w)
    sc = {"name": "fuzz", "catalogs": [str(TINY_CSV)], "calibration": "none", "workloads": workloads,
          "pricing": draw(st.sampled_from(["on_demand", "spot", "both"])),
          "billing": draw(st.sampled_from(["per_second", "hourly"])),
          "horizon_hours": draw(st.sampled_from([1, 24]))}
    if draw(st.booleans()):
        sc["quotas"] = [{"instance_type": "l4.small", "max_instances": draw(st.integers(0, 3))}]
    if draw(st.booleans()):
        sc["budget_usd_per_hour"] = draw(st.sampled_from([1.0, 5.0, 50.0]))
    if draw(st.booleans()):
        sc["max_instance_types"] = draw(st.integers(1, 2))
    return sc


def paths(node, prefix=()):
    """Every (container path, key) in a nested dict/list."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(prefix + (i,))
            out += paths(v, prefix + (i,))
    return out


def parent(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def corrupted(draw) -> dict:
    doc = copy.deepcopy(draw(valid_scenarios()))
    for _ in range(draw(st.integers(1, 3))):
        spots = paths(doc)
        if not spots:
            break
        path = draw(st.sampled_from(spots))
        holder, key = parent(doc, path), path[-1]
        action = draw(st.sampled_from(["delete", "swap", "typo", "scale"]))
        if action == "delete":
            del holder[key]
        elif action == "swap":
            holder[key] = draw(anything)
        elif action == "typo" and isinstance(holder, dict):
            holder[str(key) + draw(st.sampled_from(["_", "s", "x"]))] = holder.pop(key)
        elif action == "scale" and isinstance(holder[key], (int, float)) and not isinstance(holder[key], bool):
            holder[key] = holder[key] * draw(st.sampled_from([-1, 0, 10**6, 10**12, 1e-9]))
    return doc


def check(doc_text: str, folder: Path) -> None:
    scenario = folder / "scenario.yaml"
    scenario.write_text(doc_text, encoding="utf-8")
    out = folder / "plan.json"
    result = run_cli(["plan", scenario, "--format", "json", "--no-timings", "--time-limit", "20", "--out", out])
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert "internal error" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2, 3), text
    if result.exit_code != 0:
        errors = [line for line in result.stderr.strip().splitlines() if line.startswith("infersave: error: ")]
        assert len(errors) == 1, result.stderr
    if result.exit_code == 2:
        assert not out.exists()
    if result.exit_code == 0:
        payload = json.loads(out.read_text())
        assert payload["assignments"]
        verified = run_cli(["verify", scenario, out])
        assert verified.exit_code == 0, verified.stdout + verified.stderr
    rec = run_cli(["recommend", scenario, "--format", "json"])
    assert "Traceback" not in rec.stdout + rec.stderr and "internal error" not in rec.stderr, rec.stderr
    assert rec.exit_code in (0, 1, 2, 3)


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_scenarios())
def test_fuzz_valid_scenarios(doc):
    with tempfile.TemporaryDirectory() as tmp:
        check(yaml.safe_dump(doc, sort_keys=False), Path(tmp))


@SETTINGS
@given(corrupted())
def test_fuzz_corrupted_scenarios(doc):
    with tempfile.TemporaryDirectory() as tmp:
        check(yaml.safe_dump(doc, sort_keys=False), Path(tmp))


@settings(max_examples=examples(25), deadline=None)
@given(valid_scenarios(), st.data())
def test_fuzz_truncated_or_garbled_text(doc, data):
    text = yaml.safe_dump(doc, sort_keys=False)
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(alphabet=":-[]{}#&*!|>'\"%@` \t\n", max_size=6))
    with tempfile.TemporaryDirectory() as tmp:
        check(text[:cut] + junk + text[cut:][: data.draw(st.integers(0, 40))], Path(tmp))
