"""Golden plans: every bundled scenario keeps its status, objective, bound and pools (tests/golden/*.json).

Regenerate with ``python tests/make_golden.py`` only when a change is meant to alter a plan, and say why.
Floats are compared with a relative tolerance (a MILP may reach the same optimum by another path); the pools,
their counts and the statuses must match exactly.
"""
from __future__ import annotations

import json
import math
from typing import Any

import pytest

from make_golden import GOLDEN, bundled, golden_name, golden_record, melange_record

REL = 1e-6


def _same(expected: Any, actual: Any, where: str) -> None:
    if isinstance(expected, float) or isinstance(actual, float):
        assert expected is not None and actual is not None, where
        assert math.isclose(expected, actual, rel_tol=REL, abs_tol=1e-6), f"{where}: {expected} != {actual}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(expected) == sorted(actual), where
        for key in expected:
            _same(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(expected) == len(actual), where
        for k, (e, a) in enumerate(zip(expected, actual)):
            _same(e, a, f"{where}[{k}]")
    else:
        assert expected == actual, f"{where}: {expected!r} != {actual!r}"


@pytest.mark.parametrize("path", bundled(), ids=golden_name)
def test_bundled_plan_matches_golden(path):
    expected = json.loads((GOLDEN / f"{golden_name(path)}.json").read_text(encoding="utf-8"))
    _same(expected, json.loads(json.dumps(golden_record(path))), golden_name(path))


def test_melange_readme_example_matches_golden():
    expected = json.loads((GOLDEN / "melange__readme_example.json").read_text(encoding="utf-8"))
    _same(expected, json.loads(json.dumps(melange_record())), "melange")


def test_every_bundled_scenario_has_a_golden_file():
    names = {golden_name(p) for p in bundled()} | {"melange__readme_example"}
    assert names == {p.stem for p in GOLDEN.glob("*.json")}
