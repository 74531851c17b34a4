"""``infersave catalog show`` (GPU offerings and prices, like ``sky show-gpus``) and ``infersave catalog import``
(SkyPilot catalog ``vms.csv`` files -> this project's catalog CSVs, see ``catalogs/SCHEMA.md``).

Import rules (the same as the shipped catalogs were built with):

* SkyPilot lists one row per availability zone; we keep one row per (instance type, region).
* ``Price`` is the regional on-demand price (the same in every zone; if zones disagree the lowest is kept and
  the count reported). ``SpotPrice`` is the **cheapest zone's spot quote** in the region; quotes at or above the
  on-demand price are SkyPilot placeholders and are dropped (the cell stays empty when none are left).
* GCP lists accelerators as separate rows with an empty ``InstanceType``; as SkyPilot does, a host row that
  names an accelerator gets that accelerator row's price (same GPU, count, region and zone) added.
* Rows without whole GPUs (CPU-only, fractional) and GPUs that ``catalogs/gpus.csv`` does not know are skipped
  and counted, so the engine can load every imported file.
* Every row keeps ``source`` (the file imported, or ``--source``) and ``retrieved`` (``--retrieved``, default today).
"""
from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from pathlib import Path
from typing import Any

from .catalog import CATALOG_DIR, CLOUD_FILES, VM_COLUMNS, gpu_specs, load_instances, normalise, read_csv_rows, suggest
from .errors import CatalogError, InputError, UnknownNameError
from .io import atomic_write_text
from .provenance import _catalog_info
from .report import render_text
from .io import neutralise_cell

OUT_COLUMNS = [*VM_COLUMNS, "source", "retrieved"]
SHOW_COLUMNS = ["gpu", "gpu_count", "cloud", "region", "instance_type", "vcpus", "host_mem_gib", "usd_per_hour",
                "spot_usd_per_hour", "retrieved"]


# ---- show --------------------------------------------------------------------------------------------------


def _canonical(name: str, known: list[str], what: str, field: str) -> str:
    by_key = {normalise(k): k for k in known}
    if normalise(name) in by_key:
        return by_key[normalise(name)]
    raise UnknownNameError(f"unknown {what} {name!r}{suggest(name, known)}", field=field)


def offerings(catalogs: list[Path] | None = None, *, gpu: str | None = None, cloud: str | None = None,
              region: str | None = None) -> Any:
    """Every GPU offering of the catalogs as a DataFrame (``SHOW_COLUMNS``), filtered and sorted by GPU, count,
    on-demand price. Unknown filter values raise ``UnknownNameError`` with close matches."""
    import pandas as pd


    paths = catalogs or [CATALOG_DIR / f for f in CLOUD_FILES]
    rows = []
    for path in paths:
        retrieved = ",".join(_catalog_info(Path(path))["retrieved"])
        for inst in load_instances(Path(path), gpu_specs()):
            rows.append({"gpu": inst.gpu, "gpu_count": inst.gpu_count, "cloud": inst.cloud, "region": inst.region,
                         "instance_type": inst.instance_type, "vcpus": inst.vcpus, "host_mem_gib": inst.host_mem_gib,
                         "usd_per_hour": inst.usd_per_hour, "spot_usd_per_hour": inst.spot_usd_per_hour,
                         "retrieved": retrieved})
    df = pd.DataFrame(rows, columns=SHOW_COLUMNS)
    for value, column, what, field in ((gpu, "gpu", "GPU", "--gpu"), (cloud, "cloud", "cloud", "--cloud"),
                                       (region, "region", "region", "--region")):
        if value is not None:
            df = df[df[column] == _canonical(value, sorted(df[column].unique()), what, field)]
    return df.sort_values(["gpu", "gpu_count", "usd_per_hour", "cloud", "region", "instance_type"]).reset_index(
        drop=True)


def offerings_text(df: Any) -> str:
    """A ``sky show-gpus``-like table: one line per offering, GPU groups in order."""
    from rich.table import Table


    table = Table(title=f"GPU offerings ({len(df)})")
    for col, right in (("GPU", False), ("count", True), ("cloud", False), ("region", False), ("instance", False),
                       ("vCPUs", True), ("host GiB", True), ("on-demand $/h", True), ("spot $/h", True),
                       ("retrieved", False)):
        table.add_column(col, justify="right" if right else "left")
    for r in df.itertuples(index=False):
        spot = "-" if r.spot_usd_per_hour is None or r.spot_usd_per_hour != r.spot_usd_per_hour else \
            f"{r.spot_usd_per_hour:.4f}"
        table.add_row(r.gpu, str(r.gpu_count), r.cloud, r.region, r.instance_type, f"{r.vcpus:g}",
                      f"{r.host_mem_gib:g}", f"{r.usd_per_hour:.4f}", spot, r.retrieved)
    return render_text(table, width=200)


# ---- import ------------------------------------------------------------------------------------------------


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


def _num(row: dict[str, str], column: str, path: Path) -> float | None:
    raw = row.get(column, "")
    if raw in ("", "nan", "NaN"):
        return None
    try:
        return float(raw)
    except ValueError:
        raise CatalogError(f"expected a number, got {raw!r}", path=str(path), where=f"row {row['__row__']}",
                           field=column) from None


def convert_vms(path: Path, cloud: str, source: str, retrieved: str) -> tuple[list[dict[str, Any]], ImportReport]:
    """Rows of this project's catalog format from one SkyPilot ``vms.csv`` (see the module docstring)."""
    header, rows = read_csv_rows(path)
    missing = [c for c in VM_COLUMNS if c not in header]  # AvailabilityZone is optional (one row per region)
    if missing:
        raise CatalogError(f"missing column(s) {missing}", path=str(path), where="row 1")
    rep = ImportReport(cloud=cloud, source=source, rows_in=len(rows))
    known = gpu_specs()
    accel: dict[tuple, tuple[float | None, float | None]] = {}
    for r in rows:  # GCP: accelerator-only price rows
        if not r["InstanceType"] and r["AcceleratorName"]:
            accel[(r["AcceleratorName"], r["AcceleratorCount"], r["Region"], r.get("AvailabilityZone", ""))] = (
                _num(r, "Price", path), _num(r, "SpotPrice", path))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if not r["InstanceType"]:
            continue
        count = _num(r, "AcceleratorCount", path)
        if not r["AcceleratorName"] or not count or count != int(count):
            rep.skipped_no_gpu += 1
            continue
        if r["AcceleratorName"] not in known:
            rep.unknown_gpus[r["AcceleratorName"]] = rep.unknown_gpus.get(r["AcceleratorName"], 0) + 1
            continue
        price, spot = _num(r, "Price", path), _num(r, "SpotPrice", path)
        extra = accel.get((r["AcceleratorName"], r["AcceleratorCount"], r["Region"], r.get("AvailabilityZone", "")))
        if extra is not None:
            price = None if price is None or extra[0] is None else price + extra[0]
            spot = None if spot is None or extra[1] is None else spot + extra[1]
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
                    "AcceleratorCount": first["_count"], "vCPUs": _num(first, "vCPUs", path),
                    "MemoryGiB": _num(first, "MemoryGiB", path), "Price": price,
                    "SpotPrice": min(real) if real else None, "Region": region, "source": source,
                    "retrieved": retrieved})
    rep.rows_out = len(out)
    return out, rep


def _find_vms(root: Path) -> list[tuple[str, Path]]:
    """(cloud, vms.csv) pairs: ``ROOT/vms.csv`` (cloud = ROOT's name) and ``ROOT/<cloud>/vms.csv``."""
    if root.is_file():
        return [(root.parent.name, root)]
    found = [(root.name, root / "vms.csv")] if (root / "vms.csv").is_file() else []
    found += [(p.parent.name, p) for p in sorted(root.glob("*/vms.csv"))]
    return found


def import_skypilot(root: str | Path, out_dir: str | Path, *, source: str | None = None,
                    retrieved: str | None = None) -> tuple[list[Path], list[ImportReport]]:
    """Convert every SkyPilot ``vms.csv`` under ``root`` into ``out_dir/<cloud>.csv``; nothing is written unless
    every file converts. Returns (written paths, reports)."""
    import csv
    import io

    root = Path(root)
    if not root.exists():
        raise InputError("SkyPilot catalog folder not found", path=str(root))
    pairs = _find_vms(root)
    if not pairs:
        raise InputError("no vms.csv found (expected DIR/vms.csv or DIR/<cloud>/vms.csv)", path=str(root))
    retrieved = retrieved or datetime.date.today().isoformat()
    try:
        datetime.date.fromisoformat(retrieved)
    except ValueError:
        raise InputError(f"expected YYYY-MM-DD, got {retrieved!r}", field="--retrieved") from None
    texts, reports = {}, []
    for cloud, path in pairs:
        rows, rep = convert_vms(path, cloud, source or path.resolve().as_posix(), retrieved)
        reports.append(rep)
        if not rows:
            continue
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=OUT_COLUMNS, lineterminator="\n")
        writer.writeheader()

        for r in rows:
            writer.writerow({k: ("" if v is None else format(v, ".10g") if isinstance(v, float)
                                 else neutralise_cell(v)) for k, v in r.items()})
        texts[Path(out_dir) / f"{cloud}.csv"] = buf.getvalue()

    for target, text in texts.items():
        atomic_write_text(target, text)
    return list(texts), reports


__all__ = ["ImportReport", "convert_vms", "import_skypilot", "offerings", "offerings_text"]
