"""Sweep files and their axes: validation (file:line:axes.NAME errors) and applying one point to the base."""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError

from ..catalog import suggest
from ..errors import ScenarioError, first_problem
from ..io import file_kind
from ..scenario import Resolved, line_of, load_scenario, read_yaml, region_hint, validation_error
from ..schema import MAX_USD_PER_HOUR, MIN_USD_PER_HOUR, SLO, Frozen, Instance, Scenario, Workload

PRICE_KEYS = ("gpu", "cloud", "family", "type")
PLAIN_AXES = ("price_multiplier", "reserved_discount", "pricing", "spot_share", "slo_scale", "demand_growth",
              "regions", "confidence", "commitment_discount")
PRICINGS = ("on_demand", "spot", "both")

class Sweep(Frozen):
    """A sweep file: a base scenario and the axes whose Cartesian product is solved."""

    name: str = "sweep"
    description: str = ""
    base: str = Field(min_length=1, description="scenario YAML, relative to the sweep file")
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(min_length=1)
    time_limit_s: float | None = Field(default=None, gt=0, le=3600, description="per point (s)")
    mip_gap: float = Field(default=1e-6, ge=0, le=1)

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for v in self.axes.values())


@dataclasses.dataclass(frozen=True)
class LoadedSweep:
    """A validated sweep with its base scenario resolved."""

    sweep: Sweep
    base: Resolved
    path: str

    @property
    def axis_names(self) -> list[str]:
        return list(self.sweep.axes)

    def points(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(point id, {axis: value}) over the Cartesian product, the last axis varying fastest."""
        names = self.axis_names
        for i, values in enumerate(itertools.product(*(self.sweep.axes[n] for n in names))):
            yield i, dict(zip(names, values))


# ---- loading and validation --------------------------------------------------------------------------------


def _family(instance_type: str) -> str:
    for i, ch in enumerate(instance_type):
        if ch in ".-_":
            return instance_type[:i]
    return instance_type


def _matches(kind: str, key: str, inst: Instance) -> bool:
    if kind == "gpu":
        return inst.gpu == key
    if kind == "cloud":
        return inst.cloud == key
    if kind == "type":
        return inst.instance_type == key
    # family: g6e matches g6e.xlarge; a2-highgpu matches a2-highgpu-1g
    t = inst.instance_type
    return t == key or (t.startswith(key) and t[len(key)] in ".-_")


MAX_FACTOR = 1000.0  # a multiplier, SLO scale or demand growth beyond is a unit slip, not a scenario


def _prices(axis: str, inst: Instance) -> bool:
    """Whether the price axis ``axis`` (``price_multiplier`` or ``price.<kind>.<key>``) scales ``inst``'s prices."""
    if not axis.startswith("price."):
        return True
    kind, key = axis.split(".", 2)[1:]
    return _matches(kind, key, inst)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check_axis(name: str, values: list[Any], instances: list[Instance], fail: Callable[..., ScenarioError]) -> None:
    """Raise a ScenarioError (file:line:axes.NAME[.i]) for an unknown axis or a bad value."""
    if name.startswith("price."):
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[1] not in PRICE_KEYS or not parts[2]:
            raise fail(f"a price axis is price.<{'|'.join(PRICE_KEYS)}>.<name>, e.g. price.gpu.H100", name)
        kind, key = parts[1], parts[2]
        if not any(_matches(kind, key, inst) for inst in instances):
            known = sorted({_family(i.instance_type) if kind == "family" else
                            getattr(i, {"type": "instance_type"}.get(kind, kind)) for i in instances})
            raise fail(f"no instance in the base scenario's catalog has {kind} {key!r}{suggest(key, known)}", name)
        kind = "multiplier"
    elif name in PLAIN_AXES:
        kind = {"price_multiplier": "multiplier"}.get(name, name)
    else:
        axes = ["price.gpu.<GPU>", "price.cloud.<cloud>", "price.family.<family>", "price.type.<type>", *PLAIN_AXES]
        raise fail(f"unknown axis{suggest(name, list(PLAIN_AXES))}; known axes: {', '.join(axes)}", name)
    if len({repr(v) for v in values}) != len(values):
        raise fail("repeated value: each point of an axis must be distinct", name)
    known_regions = {i.region for i in instances}
    for i, v in enumerate(values):
        x = number(v)
        if kind in ("multiplier", "slo_scale", "demand_growth") and (x is None or not 0 < x <= MAX_FACTOR):
            raise fail(f"expected a positive factor up to {MAX_FACTOR:g}, got {v!r}", name, i)
        if kind == "commitment_discount" and (x is None or not 0 < x <= 10):
            raise fail(f"expected a factor 0 < k <= 10 on commitment prices, got {v!r}", name, i)
        if kind == "spot_share" and (x is None or not 0 <= x <= 1):
            raise fail(f"expected a share 0 <= s <= 1, got {v!r}", name, i)
        if kind == "confidence" and (x is None or not 0.5 <= x < 1):
            raise fail(f"expected a confidence 0.5 <= c < 1, got {v!r}", name, i)
        if kind == "reserved_discount" and (x is None or not 0 <= x < 1):
            raise fail(f"expected a discount 0 <= d < 1, got {v!r}", name, i)
        if kind == "pricing" and v not in PRICINGS:
            raise fail(f"expected one of {', '.join(PRICINGS)}, got {v!r}", name, i)
        if kind == "regions":
            if not isinstance(v, list) or not v or not all(isinstance(r, str) for r in v):
                raise fail(f"expected a non-empty list of region names, got {v!r}", name, i)
            for r in v:
                if r not in known_regions:
                    raise fail(f"unknown region {r!r}{region_hint(r, instances)}", name, i)


def parse_sweep(data: Any, path: str = "<sweep>", node: yaml.Node | None = None) -> Sweep:
    if not isinstance(data, dict):
        raise ScenarioError("a sweep file must be a YAML mapping with 'base' and 'axes'", path=path)
    try:
        return Sweep(**data)
    except ValidationError as exc:
        raise validation_error(exc, path, node) from None


def load_sweep(path: str | Path, base: Resolved | None = None) -> LoadedSweep:
    """Read and validate a sweep file and resolve its base scenario (or use ``base``)."""
    path = Path(path)
    data, node = read_yaml(path)
    sweep = parse_sweep(data, str(path), node)
    if base is None:
        base_path = Path(sweep.base)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        if not base_path.is_file():
            line = line_of(node, ("base",))
            raise ScenarioError(f"base scenario {str(base_path)!r} {file_kind(base_path)}", path=str(path),
                                where=f"line {line}" if line else None, field="base")
        base = load_scenario(base_path)

    def fail(message: str, axis: str, index: int | None = None) -> ScenarioError:
        loc = ("axes", axis) if index is None else ("axes", axis, index)
        line = line_of(node, loc)
        field = f"axes.{axis}" if index is None else f"axes.{axis}[{index}]"
        return ScenarioError(message, path=str(path), where=f"line {line}" if line else None, field=field)

    for name, values in sweep.axes.items():
        _check_axis(name, values, base.instances, fail)
    check_point_bounds(sweep.axes, base, fail)
    return LoadedSweep(sweep, base, str(path))


def make_sweep(base: Resolved, axes: dict[str, list[Any]], **fields: Any) -> LoadedSweep:
    """A sweep from Python: ``make_sweep(load_scenario(p), {"slo_scale": [0.5, 1, 2]})``."""
    sweep = Sweep(base=base.path, axes=axes, **fields)

    def fail(message: str, axis: str, index: int | None = None) -> ScenarioError:
        return ScenarioError(message, field=f"axes.{axis}" + ("" if index is None else f"[{index}]"))

    for name, values in sweep.axes.items():
        _check_axis(name, values, base.instances, fail)
    check_point_bounds(sweep.axes, base, fail)
    return LoadedSweep(sweep, base, "<sweep>")


def check_point_bounds(axes: dict[str, list[Any]], base: Resolved, fail: Callable[..., ScenarioError]) -> None:
    """Every point stays within the bounds a scenario and catalog must keep (``apply_point`` copies without
    validating): each workload grown or with its SLO scaled by each value is validated again, and each instance's
    price at the extreme product of the price axes that apply to it stays within the catalog's bounds."""
    for name in ("demand_growth", "slo_scale"):
        for i, v in enumerate(axes.get(name, [])):
            for w in base.scenario.workloads:
                changed = _grow(w, float(v)) if name == "demand_growth" else \
                    w.model_copy(update={"slo": _scale_slo(w.slo, float(v))})
                try:
                    Workload.model_validate(changed.model_dump())
                except ValidationError as exc:
                    loc, msg, _ = first_problem(exc)
                    raise fail(f"workload {w.name!r} at {v!r}: {loc}: {msg}", name, i) from None
    price_axes = [n for n in axes if n.startswith("price.") or n == "price_multiplier"]
    if not price_axes and "reserved_discount" not in axes:
        return
    for inst in base.instances:
        low = high = 1.0
        for n in price_axes:
            if _prices(n, inst):
                factors = [float(x) for x in axes[n]]
                low, high = low * min(factors), high * max(factors)
        discount = max((float(x) for x in axes.get("reserved_discount", [])), default=0.0)
        prices = [p for p in (inst.usd_per_hour, inst.spot_usd_per_hour) if p is not None]
        for price in prices:
            for value, worst in ((price * high, "above"), (price * low * (1.0 - discount), "below")):
                if not MIN_USD_PER_HOUR <= value <= MAX_USD_PER_HOUR:
                    by_discount = worst == "below" and discount > 0 and price * low >= MIN_USD_PER_HOUR
                    axis = "reserved_discount" if by_discount or not price_axes else price_axes[0]
                    raise fail(f"{' x '.join(price_axes + ['reserved_discount'] * (discount > 0))} put "
                               f"{inst.instance_type} in {inst.region} at {value:.3g} USD/h, {worst} the catalog's "
                               f"{MIN_USD_PER_HOUR:g} .. {MAX_USD_PER_HOUR:,.0f} USD/h", axis)


# ---- one point ---------------------------------------------------------------------------------------------


def _scale_slo(slo: SLO, s: float) -> SLO:
    def mul(v: float | None) -> float | None:
        return None if v is None else v * s

    return slo.model_copy(update=dict(max_ttft_s=mul(slo.max_ttft_s), max_tpot_s=mul(slo.max_tpot_s),
                                      max_e2e_s=mul(slo.max_e2e_s),
                                      min_tokens_per_s=None if slo.min_tokens_per_s is None
                                      else slo.min_tokens_per_s / s))


def _grow(w: Workload, g: float) -> Workload:
    return w.model_copy(update=dict(
        request_rate_per_s=None if w.request_rate_per_s is None else w.request_rate_per_s * g,
        rate_profile=None if w.rate_profile is None else [v * g for v in w.rate_profile],
        num_requests=None if w.num_requests is None else max(1, round(w.num_requests * g))))


def apply_point(base: Resolved, values: dict[str, Any]) -> Resolved:
    """The base scenario and catalog with one point's axis values applied."""
    sc: Scenario = base.scenario
    workloads = list(sc.workloads)
    update: dict[str, Any] = {}
    on_demand_factor: dict[int, float] = {}
    spot_factor: dict[int, float] = {}
    for name, v in values.items():
        if name.startswith("price.") or name == "price_multiplier":
            for k, inst in enumerate(base.instances):
                if _prices(name, inst):
                    on_demand_factor[k] = on_demand_factor.get(k, 1.0) * float(v)
                    spot_factor[k] = spot_factor.get(k, 1.0) * float(v)
        elif name == "reserved_discount":
            for k in range(len(base.instances)):
                on_demand_factor[k] = on_demand_factor.get(k, 1.0) * (1.0 - float(v))
        elif name == "pricing":
            update["pricing"] = v
        elif name == "spot_share":
            update["max_spot_share"] = float(v)
            update.setdefault("pricing", "both")
        elif name == "slo_scale":
            workloads = [w.model_copy(update={"slo": _scale_slo(w.slo, float(v))}) for w in workloads]
        elif name == "demand_growth":
            workloads = [_grow(w, float(v)) for w in workloads]
        elif name == "regions":
            update["regions"] = list(v)
        elif name == "confidence":
            update["confidence"] = float(v)
        elif name == "commitment_discount":  # k multiplies every commitment price (hourly plans' committed VMs)
            update["commitment_price_scale"] = float(v)
        else:  # pragma: no cover - load_sweep rejects unknown axes
            raise ScenarioError(f"unknown axis {name!r}")
    instances = base.instances
    if on_demand_factor or spot_factor:
        instances = []
        for k, inst in enumerate(base.instances):
            od, sp = on_demand_factor.get(k, 1.0), spot_factor.get(k, 1.0)
            if od == 1.0 and sp == 1.0:
                instances.append(inst)
                continue
            instances.append(inst.model_copy(update=dict(
                usd_per_hour=inst.usd_per_hour * od,
                spot_usd_per_hour=None if inst.spot_usd_per_hour is None else inst.spot_usd_per_hour * sp)))
    scenario = sc.model_copy(update=update | {"workloads": workloads})
    return dataclasses.replace(base, scenario=scenario, instances=instances)
