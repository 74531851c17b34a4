"""``infersave catalog show`` (GPU offerings and prices, like ``sky show-gpus``) and ``infersave catalog import``
(SkyPilot catalog ``vms.csv`` files -> this project's catalog CSVs, see ``catalogs/SCHEMA.md``).

Import rules (the same as the shipped catalogs were built with, and as ``load_instances`` applies when it reads
a SkyPilot file directly) are in ``solver.skypilot``: one row per (instance type, region), the regional
on-demand price, the cheapest zone's spot quote, GCP accelerator rows added to their hosts, rows without whole
GPUs or with GPUs ``catalogs/gpus.csv`` does not know skipped and counted.
* Every row keeps ``source`` (the file imported, or ``--source``) and ``retrieved`` (``--retrieved``, default today).
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from .catalog import (default_catalog_paths, gpu_specs, instance_row_check, load_instances, normalise, read_csv_rows,
                      suggest)
from .errors import CatalogError, InputError, UnknownNameError
from .io import file_kind, neutralise_cell, write_texts
from .provenance import catalog_info
from .report import render_text
from .skypilot import VM_COLUMNS, ImportReport, collapse_zones

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

    paths = catalogs or default_catalog_paths()
    rows = []
    for path in paths:
        retrieved = ",".join(catalog_info(Path(path))["retrieved"])
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


def convert_vms(path: Path, cloud: str, source: str, retrieved: str) -> tuple[list[dict[str, Any]], ImportReport]:
    """Rows of this project's catalog format from one SkyPilot ``vms.csv`` (rules in ``solver.skypilot``)."""
    header, rows = read_csv_rows(path)
    missing = [c for c in VM_COLUMNS if c not in header]  # AvailabilityZone is optional (one row per region)
    if missing:
        raise CatalogError(f"missing column(s) {missing}", path=str(path), where="row 1")
    return collapse_zones(rows, path, cloud, gpu_specs(), source, retrieved, instance_row_check(path, cloud))


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
    if not root.is_dir() and not root.is_file():
        raise InputError(f"SkyPilot catalog folder {file_kind(root)}", path=str(root))
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
            writer.writerow({k: ("" if v is None else format(v, ".10g") if isinstance(v, float) else neutralise_cell(v))
                             for k, v in r.items() if k in OUT_COLUMNS})
        texts[Path(out_dir) / f"{cloud}.csv"] = buf.getvalue()
    write_texts(texts, "--out")
    return list(texts), reports


__all__ = ["ImportReport", "convert_vms", "import_skypilot", "offerings", "offerings_text"]
