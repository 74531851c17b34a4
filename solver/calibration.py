"""Calibration files: load (for planning) and save (after fitting) the CTCF coefficients as JSON.

Kept apart from ``ctcf.py`` so that loading a calibration does not import the fitting code (scipy).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .catalog import CATALOG_DIR
from .errors import CatalogError
from .io import atomic_write_text
from .perf import UNCALIBRATED, Calibration, PhaseCoefficients

DEFAULT_CALIBRATION = CATALOG_DIR / "calibration.json"


def save_calibration(calibration: Calibration, path: Path, meta: dict[str, str] | None = None) -> None:
    payload = {"source": calibration.source, "form": "per_layer", **(meta or {}),
               "default": vars(calibration.default),
               "per_gpu": {g: vars(c) for g, c in sorted(calibration.per_gpu.items())}}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_calibration(name: str | None, base: Path | None = None) -> Calibration:
    """``None`` -> the shipped default (if present); ``"none"`` -> uncalibrated roofline; else a JSON path."""
    if name == "none":
        return UNCALIBRATED
    path = DEFAULT_CALIBRATION if name is None else Path(name)
    if name is not None and base is not None and not path.is_absolute() and not path.exists():
        path = base / name
    if name is None and not path.exists():
        return UNCALIBRATED
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        per_gpu = {g: PhaseCoefficients(**c) for g, c in data["per_gpu"].items()}
        calib = Calibration(per_gpu, PhaseCoefficients(**data["default"]), data.get("source", str(path)))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CatalogError(f"bad calibration file: {type(exc).__name__}: {exc}", path=str(path)) from None
    for gpu, coeffs in [("default", calib.default), *per_gpu.items()]:
        if not all(np.isfinite(v) and v >= 0 for v in vars(coeffs).values()):
            raise CatalogError("coefficients must be finite and non-negative", path=str(path), field=gpu)
    return calib
