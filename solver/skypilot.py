"""SkyPilot's catalog files (``vms.csv``) as they are: one row per availability zone -> one row per
(instance type, region). Used both by ``infersave catalog import`` (which writes the result) and by
``catalog.load_instances`` (which reads a SkyPilot file directly), so the rules live once:

* ``Price`` is the regional on-demand price (the same in every zone; if zones disagree the lowest is kept and
  the count reported). ``SpotPrice`` is the **cheapest zone's spot quote** in the region; quotes at or above the
  on-demand price are SkyPilot placeholders and are dropped (the cell stays empty when none are left).
* GCP lists accelerators as separate rows with an empty ``InstanceType``; as SkyPilot does, a host row that
  names an accelerator gets that accelerator row's price (same GPU, count, region and zone) added.
* Rows without whole GPUs (CPU-only, fractional) and GPUs the GPU table does not know are skipped and counted.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Collection

from .errors import CatalogError
from .field_checks import parse_number
from .schema import MAX_USD_PER_HOUR  # an accelerator's price is at most a VM's

VM_COLUMNS = ("InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "SpotPrice",
              "Region")


@dataclasses.dataclass
class ImportReport:
    """What one ``vms.csv`` became, for the user."""

    cloud: str
    source: str
    rows_in: int = 0
    rows_out: int = 0
    skipped_no_gpu: int = 0
    unknown_gpus: dict[str, int] = dataclasses.field(default_factory=dict)
    spot_placeholders: int = 0
    zones_disagree: int = 0

    def line(self) -> str:
        unknown = sum(self.unknown_gpus.values())
        return (f"{self.cloud}: {self.rows_in} zone rows -> {self.rows_out} (type, region) rows; spot = cheapest "
                f"zone quote per region, {self.spot_placeholders} quote(s) >= on-demand dropped as placeholders; "
                f"skipped {self.skipped_no_gpu} rows without whole GPUs and {unknown} with GPUs not in gpus.csv"
                + (f" ({', '.join(sorted(self.unknown_gpus))})" if unknown else "")
                + (f"; {self.zones_disagree} type(s) with on-demand prices differing by zone (lowest kept)"
                   if self.zones_disagree else ""))


def is_per_zone(header: list[str], rows: list[dict[str, str]]) -> bool:
    """A SkyPilot file as published (it has the zone column), not one collapsed per region. A row without an
    instance type in a file without zones is a broken row (refused by the loader), not a GCP accelerator price."""
    return "AvailabilityZone" in header


def cell_number(row: dict[str, str], column: str, path: Path, *, required: bool = False,
                missing: tuple[str, ...] = ("",)) -> float | None:
    """A numeric CSV cell; a ``missing`` (empty) cell is None (or an error when ``required``). ``NaN`` and
    ``inf`` are refused, not read as a missing price: an empty cell is how a catalog says "no price"."""
    raw = row.get(column, "")
    if raw in missing:
        if required:
            raise CatalogError("is empty", path=str(path), where=f"row {row['__row__']}", field=column)
        return None
    try:
        value = parse_number(raw)
    except ValueError as exc:
        raise CatalogError(str(exc), path=str(path), where=f"row {row['__row__']}", field=column) from None
    if not math.isfinite(value):
        raise CatalogError(f"expected a finite number (or an empty cell), got {raw!r}", path=str(path),
                           where=f"row {row['__row__']}", field=column)
    return value


# Checks one kept row (the row, its on-demand price, spot quote, whole GPU count) against the catalog schema;
# raises naming the file, row and column.
RowCheck = Callable[[dict[str, str], float, "float | None", int], None]


def collapse_zones(rows: list[dict[str, str]], path: Path, cloud: str, known_gpus: Collection[str], source: str,
                   retrieved: str, check: RowCheck | None = None) -> tuple[list[dict[str, Any]], ImportReport]:
    """Rows of this project's catalog format (``VM_COLUMNS`` + source, retrieved, and ``__row__``: the first zone
    row's line) from the rows of one SkyPilot ``vms.csv`` (see the module docstring). ``check`` is called on
    every kept zone row with a price (its real spot quote, below on-demand, or None), so a bad zone row is refused
    even where another zone's value would be the one kept."""
    rep = ImportReport(cloud=cloud, source=source, rows_in=len(rows))
    accel: dict[tuple[Any, ...], tuple[float | None, float | None]] = {}
    for r in rows:  # GCP: accelerator-only price rows
        if not r["InstanceType"] and r["AcceleratorName"]:
            quotes = (cell_number(r, "Price", path), cell_number(r, "SpotPrice", path))
            for column, value in zip(("Price", "SpotPrice"), quotes):
                if value is not None and not 0 <= value <= MAX_USD_PER_HOUR:
                    raise CatalogError(f"an accelerator price must lie in 0 .. {MAX_USD_PER_HOUR:g} USD/h, "
                                       f"got {value:g}", path=str(path), where=f"row {r['__row__']}", field=column)
            accel[(r["AcceleratorName"], r["AcceleratorCount"], r["Region"], r.get("AvailabilityZone", ""))] = quotes
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if not r["InstanceType"]:
            continue
        count = cell_number(r, "AcceleratorCount", path)
        if not r["AcceleratorName"] or not count or count != int(count):
            rep.skipped_no_gpu += 1
            continue
        if r["AcceleratorName"] not in known_gpus:
            rep.unknown_gpus[r["AcceleratorName"]] = rep.unknown_gpus.get(r["AcceleratorName"], 0) + 1
            continue
        price, spot = cell_number(r, "Price", path), cell_number(r, "SpotPrice", path)
        extra = accel.get((r["AcceleratorName"], r["AcceleratorCount"], r["Region"], r.get("AvailabilityZone", "")))
        if extra is not None:
            price = None if price is None or extra[0] is None else price + extra[0]
            spot = None if spot is None or extra[1] is None else spot + extra[1]
        if check is not None and price is not None:
            check(r, price, spot if spot is None or spot < price else None, int(count))
        groups[(r["InstanceType"], r["Region"])].append(r | {"_price": price, "_spot": spot, "_count": int(count)})
    out = []
    for (itype, region), zone_rows in sorted(groups.items()):
        prices = sorted({z["_price"] for z in zone_rows if z["_price"] is not None})
        if not prices:
            continue  # no on-demand price in this region: the engine cannot cost it
        rep.zones_disagree += len(prices) > 1
        price = prices[0]
        spots = [z["_spot"] for z in zone_rows if z["_spot"] is not None]
        rep.spot_placeholders += sum(s >= price for s in spots)
        real = [s for s in spots if s < price]
        first = zone_rows[0]
        out.append({"InstanceType": itype, "AcceleratorName": first["AcceleratorName"],
                    "AcceleratorCount": first["_count"], "vCPUs": cell_number(first, "vCPUs", path),
                    "MemoryGiB": cell_number(first, "MemoryGiB", path), "Price": price,
                    "SpotPrice": min(real) if real else None, "Region": region, "source": source,
                    "retrieved": retrieved, "__row__": first["__row__"]})
    rep.rows_out = len(out)
    return out, rep


__all__ = ["ImportReport", "VM_COLUMNS", "collapse_zones", "is_per_zone"]
