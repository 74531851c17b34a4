"""Calibrated coefficients of the per-operator roofline, per (engine, GPU), and their priors.

``theta = (k_compute, k_memory, k_kv, k_comm, step_s, layer_s)`` (see ``roofline``). Lookup order for an
(engine, GPU) pair: its own fit; else the GPU's efficiencies (its fit, else the prior of its GPU or
architecture) with the engine's overheads (its fit, else the engine profile's prior). The prior of a GPU's
efficiencies is the achieved fraction of datasheet FLOPS and bandwidth in ``catalogs/gpu_efficiency.csv``
(measured GEMM / copy rates), else the mean of its architecture's rows, else ``DEFAULT_EFFICIENCY``; decode
attention reads KV at the HBM efficiency, and all-reduces take ``allreduce_prior()`` times their nominal time
(measured nccl-tests runs in ``catalogs/allreduce.csv`` over ``roofline.allreduce_call_s``).
Loading a calibration never imports the fitting code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import find_gpu, read_csv_rows
from .engines import EngineProfile, find_engine
from .errors import CatalogError, UnknownNameError
from .field_checks import parse_number
from .io import read_json
from .resources import catalog_dir, default_calibration, resolve_user_path
from .roofline import N_COEF, Hardware, allreduce_call_s, factorize

DEFAULT_CALIBRATION = default_calibration()
EFFICIENCY_FILE = catalog_dir() / "gpu_efficiency.csv"
ALLREDUCE_FILE = catalog_dir() / "allreduce.csv"
FORM = "per-operator-v2"
# Assumed where neither the GPU nor its architecture has a measured row: large bf16 GEMMs reach ~60 % of the
# dense tensor peak and streaming reads ~80 % of datasheet bandwidth; attention as memory.
DEFAULT_EFFICIENCY = (0.60, 0.80)
UNCALIBRATED_THETA = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])


@lru_cache(maxsize=None)
def efficiency_priors(path: Path = EFFICIENCY_FILE) -> dict[str, tuple[float, float]]:
    """(GEMM, HBM) efficiency per GPU name, with architecture means under ``arch:<name>`` keys."""
    if not path.exists():
        return {}
    _, rows = read_csv_rows(path)
    out: dict[str, tuple[float, float]] = {}
    by_arch: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        try:  # an empty cell keeps the default for that figure
            gemm, hbm = row["gemm_fp16_efficiency"], row["hbm_efficiency"]
            pair = (parse_number(gemm) if gemm else DEFAULT_EFFICIENCY[0],
                    parse_number(hbm) if hbm else DEFAULT_EFFICIENCY[1])
        except (KeyError, ValueError):
            raise CatalogError("expected numbers in gemm_fp16_efficiency and hbm_efficiency", path=str(path),
                               where=f"row {row['__row__']}") from None
        if not all(0 < v <= 1 for v in pair):
            raise CatalogError("efficiencies must lie in (0, 1]", path=str(path), where=f"row {row['__row__']}")
        out[row["gpu"]] = pair
        by_arch.setdefault(row.get("architecture", ""), []).append(pair)
    for arch, pairs in by_arch.items():
        out[f"arch:{arch}"] = (float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs])))
    return out


@lru_cache(maxsize=None)
def allreduce_prior(path: Path = ALLREDUCE_FILE) -> float:
    """Measured all-reduce time over the nominal ring model, geometric mean over the measured message sizes (the
    sizes of a decode step's all-reduces): the prior of ``k_comm``. 1 (the nominal model) without the file."""
    if not path.exists():
        return 1.0
    _, rows = read_csv_rows(path)
    ratios = []
    for row in rows:
        try:
            hw = Hardware.from_specs([find_gpu(row["gpu"])], "fp16")  # its link rate and whether it is PCIe
            nominal = allreduce_call_s(parse_number(row["message_bytes"]), parse_number(row["gpu_count"]),
                                       hw.interconnect_bytes_per_s[0], hw.pcie_interconnect[0])
            ratios.append(parse_number(row["time_us"]) * 1e-6 / float(nominal))
        except (KeyError, ValueError, UnknownNameError):
            raise CatalogError("expected a known gpu and numbers in gpu_count, message_bytes and time_us",
                               path=str(path), where=f"row {row['__row__']}") from None
    if not ratios or not all(r > 0 for r in ratios):
        raise CatalogError("expected positive all-reduce times", path=str(path))
    return float(np.exp(np.mean(np.log(ratios))))


GDDR_ARCHITECTURES = ("Turing", "Ada Lovelace")


def gpu_class(gpu: str) -> str:
    """``hbm`` (data-centre GPUs with HBM) or ``gddr`` (T4, A10G, L4, L40S, workstation cards): the two
    populations whose prediction errors differ."""
    try:
        spec = find_gpu(gpu)
    except Exception:  # noqa: BLE001 - unknown GPUs are scored with the wider class
        return "gddr"
    hbm = spec.architecture in ("Volta", "Hopper") or spec.hbm_bandwidth_gb_s >= 1500
    return "hbm" if hbm and spec.architecture not in GDDR_ARCHITECTURES else "gddr"


def prior_theta(gpu: str, engine: EngineProfile) -> np.ndarray:
    """Coefficients before any serving measurement: 1 / achieved efficiency (GEMM, HBM, HBM for decode attention),
    the measured all-reduce ratio, the engine's overhead priors."""
    priors = efficiency_priors()
    try:
        arch = find_gpu(gpu).architecture
    except Exception:  # noqa: BLE001 - an unknown GPU has no architecture prior
        arch = ""
    gemm, hbm = priors.get(gpu, priors.get(f"arch:{arch}", DEFAULT_EFFICIENCY))
    return np.array([1.0 / gemm, 1.0 / hbm, 1.0 / hbm, allreduce_prior(), engine.step_overhead_us * 1e-6,
                     engine.layer_overhead_us * 1e-6])


@dataclass(frozen=True)
class Calibration:
    """Fitted coefficient vectors at each level of the hierarchy, plus the measured error of the fit."""

    global_theta: np.ndarray | None = None  # pooled multiplier of the priors
    per_gpu: dict[str, np.ndarray] = field(default_factory=dict)
    per_engine: dict[str, np.ndarray] = field(default_factory=dict)
    per_engine_gpu: dict[str, np.ndarray] = field(default_factory=dict)
    # error quantiles of predicted/measured - 1 per "engine|gpu_class|metric" (leave-one-source-out residuals)
    error_quantiles: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = "roofline priors (no serving measurement)"
    uncalibrated: bool = False

    def theta(self, engine: EngineProfile, gpu: str, dtype: str = "fp16") -> np.ndarray:
        """Coefficients for one (engine, GPU, weight precision)."""
        if self.uncalibrated:
            return UNCALIBRATED_THETA.copy()
        key = f"{engine.engine}|{gpu}"
        if key in self.per_engine_gpu:
            theta = self.per_engine_gpu[key].copy()
        else:
            # a level without its own fit keeps its prior, scaled by the pooled multiplier
            prior = prior_theta(gpu, engine) * (1.0 if self.global_theta is None else self.global_theta)
            theta = np.concatenate([self.per_gpu.get(gpu, prior)[:4], self.per_engine.get(engine.engine, prior)[4:]])
        # no kernel beats the datasheet: a pooled multiplier carried to another GPU must not promise that
        theta[:4] = np.maximum(theta[:4], 1.0)
        # quantised weight kernels reach a smaller fraction of the roofline than fp16 ones
        theta[:2] = theta[:2] / engine.kernel_efficiency(dtype)
        return theta

    def error_factor(self, engine: str, gpu: str, metric: str, confidence: float) -> float:
        """Factor to inflate a predicted time by so it holds with ``confidence`` given the measured error
        (1 at confidence 0.5 or below, never below 1: headroom is only ever added)."""
        if confidence <= 0.5:
            return 1.0
        for key in (f"{engine}|{gpu_class(gpu)}|{metric}", f"{engine}|*|{metric}", f"*|*|{metric}"):
            if key in self.error_quantiles:
                table = {float(q): v for q, v in self.error_quantiles[key].items()}
                qs = sorted(table)
                value = float(np.interp(confidence, qs, [table[q] for q in qs]))
                return float(max(1.0, np.exp(value)))
        return 1.0

    def probability_within(self, engine: str, gpu: str, metric: str, log_ratio: float) -> float | None:
        """P(measured <= predicted * exp(log_ratio)) from the held-out residual quantiles (linear between them,
        clamped to the outermost stored quantiles); None when the calibration has no quantiles."""
        for key in (f"{engine}|{gpu_class(gpu)}|{metric}", f"{engine}|*|{metric}", f"*|*|{metric}"):
            if key in self.error_quantiles:
                table = sorted((v, float(q)) for q, v in self.error_quantiles[key].items())
                values, probs = [v for v, _ in table], [q for _, q in table]
                return float(np.interp(log_ratio, values, probs))
        return None

    def theta_rows(self, engine: EngineProfile, gpus: list[str] | np.ndarray, dtype: str) -> np.ndarray:
        names, inverse = factorize(gpus)
        table = np.array([self.theta(engine, g, dtype) for g in names]).reshape(-1, N_COEF)
        return table[inverse]


UNCALIBRATED = Calibration(source="uncalibrated roofline (datasheet peaks, no overheads)", uncalibrated=True)
PRIORS = Calibration()


# Plausibility bounds of a coefficient vector (what a fit yields lies far inside them: efficiency factors 1-5,
# step_s 0.4-7 ms, layer_s 1-64 us). An efficiency factor over 100 would mean kernels reach under 1 % of the
# datasheet peak; a step over 1 s or a layer over 10 ms per iteration is no serving engine. ``global`` holds
# multipliers of the priors (about 1): more than 100x away from every prior means the prior or the data is wrong.
MAX_EFFICIENCY_FACTOR = 100.0
MAX_OVERHEAD_S = (1.0, 0.01)  # step_s, layer_s
MAX_MULTIPLIER = 100.0
COEFFICIENTS = ("k_compute", "k_memory", "k_kv", "k_comm", "step_s", "layer_s")


def _vector(value: object, path: Path, where: str, multiplier: bool = False) -> np.ndarray:
    """A coefficient vector: ``N_COEF`` finite numbers within the plausibility bounds (``global``'s are
    multipliers of the priors, the levels' absolute coefficients)."""
    def fail(message: str) -> CatalogError:
        return CatalogError(message, path=str(path), field=where)

    if not isinstance(value, list) or len(value) != N_COEF:
        raise fail(f"expected {N_COEF} finite non-negative coefficients")
    numbers = []
    for x in value:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise fail(f"expected {N_COEF} finite non-negative coefficients, got {x!r}")
        try:
            numbers.append(float(x))
        except OverflowError:  # a JSON integer beyond the range of a float
            numbers.append(float("inf"))
    arr = np.array(numbers)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise fail(f"expected {N_COEF} finite non-negative coefficients")
    if np.any(arr[:4] <= 0):
        raise fail("efficiency factors must be positive")
    limits = ((MAX_MULTIPLIER,) * N_COEF if multiplier
              else (MAX_EFFICIENCY_FACTOR,) * 4 + MAX_OVERHEAD_S)
    for name, x, limit in zip(COEFFICIENTS, arr, limits):
        if x > limit:
            what = f"multiplier of the {name} prior" if multiplier else name
            raise fail(f"{what} {x:.4g} is implausible: at most {limit:g}")
    return arr


def load_calibration(name: str | None, base: Path | None = None) -> Calibration:
    """``None`` -> the shipped calibration (priors if absent); ``"none"`` -> uncalibrated; else a JSON path."""
    if name == "none":
        return UNCALIBRATED
    if name == "priors":
        return PRIORS
    path = DEFAULT_CALIBRATION if name is None else resolve_user_path(name, base)  # scenario-relative
    if name is None and not path.exists():
        return PRIORS

    data = read_json(path, CatalogError, "calibration file")
    if not isinstance(data, dict) or data.get("form") != FORM:
        raise CatalogError(f"not a calibration of form {FORM!r} (refit with `infersave calibrate`)",
                           path=str(path), field="form")
    levels: dict[str, dict[str, np.ndarray]] = {}
    for level in ("per_gpu", "per_engine", "per_engine_gpu"):
        raw = data.get(level, {})
        if not isinstance(raw, dict):
            raise CatalogError("expected a mapping", path=str(path), field=level)
        levels[level] = {str(k): _vector(v, path, f"{level}.{k}") for k, v in raw.items()}
    _check_keys(levels, path)
    glob = data.get("global")
    global_theta = None if glob is None else _vector(glob, path, "global", multiplier=True)
    if global_theta is None and not any(levels.values()):
        raise CatalogError("has no coefficients (global is null and per_gpu, per_engine, per_engine_gpu are empty)",
                           path=str(path), field="global")
    return Calibration(global_theta=global_theta, error_quantiles=_quantiles(data.get("error_quantiles", {}), path),
                       source=str(data.get("source", path)), per_gpu=levels["per_gpu"],
                       per_engine=levels["per_engine"], per_engine_gpu=levels["per_engine_gpu"])


def _check_keys(levels: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """Every GPU and engine a calibration names must exist: a misspelt one would be ignored silently."""

    def known(kind: str, name: str, field: str) -> None:
        try:
            find_gpu(name) if kind == "gpu" else find_engine(name)
        except UnknownNameError as exc:
            raise CatalogError(str(exc).split(": ", 1)[-1], path=str(path), field=field) from None

    for gpu in levels["per_gpu"]:
        known("gpu", gpu, f"per_gpu.{gpu}")
    for engine in levels["per_engine"]:
        known("engine", engine, f"per_engine.{engine}")
    for key in levels["per_engine_gpu"]:
        engine, sep, gpu = key.partition("|")
        if not sep or not engine or not gpu:
            raise CatalogError(f"key {key!r} must be 'engine|GPU'", path=str(path), field=f"per_engine_gpu.{key}")
        known("engine", engine, f"per_engine_gpu.{key}")
        known("gpu", gpu, f"per_engine_gpu.{key}")


def _quantiles(raw: object, path: Path) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        raise CatalogError("expected a mapping", path=str(path), field="error_quantiles")
    out: dict[str, dict[str, float]] = {}
    for key, table in raw.items():
        field = f"error_quantiles.{key}"
        if len(str(key).split("|")) != 3:
            raise CatalogError(f"key {key!r} must be 'engine|gpu_class|metric'", path=str(path), field=field)
        if not isinstance(table, dict) or not table:
            raise CatalogError("expected a non-empty mapping of quantile -> log residual", path=str(path),
                               field=field)
        row: dict[str, float] = {}
        for q, v in table.items():
            try:
                qf = float(q)
            except ValueError:
                qf = -1.0
            if not 0 < qf < 1:
                raise CatalogError(f"quantile {q!r} must be a number in (0, 1)", path=str(path), field=field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) <= 10:  # NaN, inf, huge ints
                raise CatalogError(f"expected a finite log residual |x| <= 10, got {v!r}", path=str(path),
                                   field=f"{field}.{q}")
            row[str(q)] = float(v)
        out[str(key)] = row
    return out


def check_payload(payload: dict[str, Any], path: Path) -> None:
    """A calibration about to be written lies within the bounds ``load_calibration`` reads back (a fit to
    implausible measurements can leave them: the file would then be refused by every later command).

    Raises:
        CatalogError: naming ``path`` and the first coefficient vector beyond its bounds."""
    for level in ("per_gpu", "per_engine", "per_engine_gpu"):
        for key, vector in payload[level].items():
            _vector(vector, path, f"{level}.{key}")
    if payload["global"] is not None:
        _vector(payload["global"], path, "global", multiplier=True)


def calibration_payload(calibration: Calibration, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON form of a calibration (``load_calibration`` reads it back)."""
    def vec(v: np.ndarray) -> list[float]:
        return [float(x) for x in v]

    return {"form": FORM, "source": calibration.source, **(meta or {}),
            "coefficients": list(COEFFICIENTS),
            "global": None if calibration.global_theta is None else vec(calibration.global_theta),
            "per_gpu": {k: vec(v) for k, v in sorted(calibration.per_gpu.items())},
            "per_engine": {k: vec(v) for k, v in sorted(calibration.per_engine.items())},
            "per_engine_gpu": {k: vec(v) for k, v in sorted(calibration.per_engine_gpu.items())},
            "error_quantiles": calibration.error_quantiles}
