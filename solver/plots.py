"""PNG plots of a sweep results table (``infersave plot``): cost vs SLO, fleet composition, cost vs price shock.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``, so importing
this module does not change the matplotlib backend of the caller (a notebook, an Airflow worker).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .io import atomic_write
from .sweep import AXIS_PREFIX, SOLVED, axis_columns, label_axis, summary_table

PRICE_AXES = ("price.", "price_multiplier", "reserved_discount")
MAX_GROUPS = 10  # above this many lines a plot shows points and the frontier only
MAX_CATEGORIES = 12  # instance types in the composition legend; the rest become "other"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return path


def _cost_label(df: pd.DataFrame) -> str:
    hours = df["horizon_hours"].dropna().unique()
    if len(hours) == 1:
        return f"fleet cost (USD per {hours[0]:g} h horizon)"
    return "fleet cost (USD over the horizon)"


def _point_label(row: pd.Series, axes: list[str]) -> str:
    return ", ".join(label_axis(a, row[a]) for a in axes)


def _groups(summary: pd.DataFrame, others: list[str]) -> list[tuple[str, pd.DataFrame]]:
    if not others:
        return [("all points", summary)]
    out = []
    for key, g in summary.groupby(others, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((", ".join(label_axis(a, v) for a, v in zip(others, key)), g))
    return out


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both x and y (lower is better for both), by x."""
    order = np.lexsort((y, x))
    front, best = [], math.inf
    for i in order:
        if y[i] < best - 1e-9:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


def plot_cost_vs_slo(df: pd.DataFrame, path: Path) -> Path | None:
    """Cost against the latency bound (slo_scale axis) or, without one, against each plan's worst TPOT."""
    summary = summary_table(df)
    ok = summary[summary["status"].isin(SOLVED)].copy()
    slo_col = AXIS_PREFIX + "slo_scale"
    if slo_col in summary.columns:
        xcol, xlabel = slo_col, "latency SLO scale (x every base TTFT/TPOT bound; larger = looser)"
        title = "Fleet cost vs latency SLO"
    else:
        ok = ok[np.isfinite(ok["worst_tpot_s"].astype(float))]
        ok["worst_tpot_ms"] = ok["worst_tpot_s"].astype(float) * 1e3
        xcol, xlabel = "worst_tpot_ms", "worst TPOT of the plan's online traffic (ms per output token)"
        title = "Fleet cost vs achieved latency"
    if ok.empty:
        return None
    others = [a for a in axis_columns(df) if a != slo_col]
    groups = _groups(ok, others)
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10"]
    if len(groups) <= MAX_GROUPS:
        for k, (label, g) in enumerate(groups):
            g = g.sort_values(xcol)
            style = "-o" if xcol == slo_col else "o"
            ax.plot(g[xcol].astype(float), g["objective"], style, color=cmap(k % 10), label=label, ms=6, lw=1.3,
                    alpha=0.9)
    else:
        ax.plot(ok[xcol].astype(float), ok["objective"], "o", color="tab:blue", alpha=0.6, label="sweep points")
    x, y = ok[xcol].astype(float).to_numpy(), ok["objective"].to_numpy(float)
    front = pareto_front(x, y)
    ax.step(x[front], y[front], where="post", color="black", lw=2.2, ls="--", label="Pareto frontier (all points)",
            zorder=5)
    ax.plot(x[front], y[front], "s", color="black", ms=4, zorder=6)
    if xcol == slo_col:
        if x.max() / max(x.min(), 1e-12) >= 4:
            ax.set_xscale("log", base=2)
        ticks = sorted(set(np.round(x, 6)))
        if len(ticks) <= 12:
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    n_bad = int((~summary["status"].isin(SOLVED)).sum())
    ax.set_title(title + (f"  ({n_bad} point(s) without a plan not shown)" if n_bad else ""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_cost_label(df))
    ax.margins(x=0.06)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title=", ".join(
        a.removeprefix(AXIS_PREFIX) for a in others) or None, title_fontsize=8)
    return _save(fig, path)


def _composition(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per point x category (instance type, '(spot)' for spot pools): VMs and USD, each pool counted once."""
    pools = df.dropna(subset=["pool"]).drop_duplicates(["point", "pool"]).copy()
    spot = pools["pricing"].astype(str) == "spot"
    pools["category"] = pools["instance_type"].astype(str) + np.where(spot, " (spot)", "")
    vms = pools.pivot_table(index="point", columns="category", values="count", aggfunc="sum", fill_value=0)
    usd = pools.pivot_table(index="point", columns="category", values="pool_usd", aggfunc="sum", fill_value=0.0)
    order = usd.sum().sort_values(ascending=False).index
    if len(order) > MAX_CATEGORIES:
        keep, rest = list(order[:MAX_CATEGORIES - 1]), list(order[MAX_CATEGORIES - 1:])
        vms = vms[keep].assign(other=vms[rest].sum(axis=1))
        usd = usd[keep].assign(other=usd[rest].sum(axis=1))
    else:
        vms, usd = vms[list(order)], usd[list(order)]
    return vms, usd


def plot_composition(df: pd.DataFrame, path: Path) -> Path:
    """Stacked bars per sweep point: VMs by instance type (top) and cost by instance type (bottom)."""
    summary = summary_table(df)
    axes = axis_columns(df)
    points = summary["point"].to_list()
    labels = [f"#{r['point']}  " + _point_label(r, axes) if axes else f"#{r['point']}"
              for _, r in summary.iterrows()]
    vms, usd = _composition(df)
    vms, usd = vms.reindex(points, fill_value=0), usd.reindex(points, fill_value=0.0)
    cmap = matplotlib.colormaps["tab20"]
    width_in = min(max(8.0, 0.42 * len(points) + 4), 40.0)
    fig = Figure(figsize=(width_in, 8.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    xs = np.arange(len(points))
    for ax, table, ylabel in ((top, vms, "VMs (count)"), (bottom, usd, _cost_label(df))):
        base = np.zeros(len(points))
        for k, cat in enumerate(table.columns):
            vals = table[cat].to_numpy(float)
            ax.bar(xs, vals, bottom=base, color=cmap(k % 20), label=cat, width=0.75, edgecolor="white", lw=0.4)
            base += vals
        ax.set_ylabel(ylabel)
        ax.set_xlim(-0.6, len(points) - 0.4)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ymax = base.max() if len(base) and base.max() > 0 else 1.0
        ax.set_ylim(0, ymax * 1.12)
        for x, status in zip(xs, summary["status"]):
            if status not in SOLVED:
                ax.text(x, ymax * 0.03, status, rotation=90, ha="center", va="bottom", fontsize=8, color="tab:red")
    for x, total in zip(xs, usd.sum(axis=1).to_numpy()):
        if total > 0:
            bottom.text(x, total, f"{total:,.0f}", ha="center", va="bottom", fontsize=7, rotation=90)
    top.set_title(f"Fleet composition per sweep point ({len(points)} points): VMs and cost by instance type")
    bottom.set_xticks(xs, labels, rotation=90, fontsize=8 if len(points) <= 30 else 6)
    bottom.set_xlabel("sweep point (" + ", ".join(a.removeprefix(AXIS_PREFIX) for a in axes) + ")" if axes
                      else "sweep point")
    if len(vms.columns):
        top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="instance type",
                   title_fontsize=8)
    return _save(fig, path)


def plot_cost_vs_price(df: pd.DataFrame, path: Path) -> Path | None:
    """Cost against each price axis (multiplier or reserved discount), one line per combination of the rest."""
    axes = axis_columns(df)
    price_axes = [a for a in axes if a.removeprefix(AXIS_PREFIX).startswith(PRICE_AXES)]
    if not price_axes:
        return None
    summary = summary_table(df)
    ok = summary[summary["status"].isin(SOLVED)]
    if ok.empty:
        return None
    cmap = matplotlib.colormaps["tab10"]
    fig = Figure(figsize=(9, 4.8 * len(price_axes)), layout="constrained")
    subplots = fig.subplots(len(price_axes), 1, squeeze=False)[:, 0]
    for ax, pa in zip(subplots, price_axes):
        name = pa.removeprefix(AXIS_PREFIX)
        others = [a for a in axes if a != pa]
        groups = _groups(ok, others)
        if name == "reserved_discount":
            xlabel, xfmt = "reserved-instance discount on on-demand prices", lambda v: f"{v:.0%}"
        else:
            target = "all instances" if name == "price_multiplier" else " ".join(name.split(".")[1:])
            xlabel, xfmt = f"price multiplier on {target} (x catalog price, on-demand and spot)", lambda v: f"{v:g}"
        if len(groups) <= MAX_GROUPS:
            for k, (label, g) in enumerate(groups):
                g = g.sort_values(pa)
                ax.plot(g[pa].astype(float), g["objective"], "-o", color=cmap(k % 10), label=label, ms=5, lw=1.4)
        else:
            stats = ok.groupby(pa)["objective"].agg(["min", "median", "max"]).sort_index()
            ax.fill_between(stats.index.astype(float), stats["min"], stats["max"], alpha=0.25, color="tab:blue",
                            label=f"range over {len(groups)} combinations of the other axes")
            ax.plot(stats.index.astype(float), stats["median"], "-o", color="tab:blue", label="median")
        ticks = sorted(ok[pa].astype(float).unique())
        if len(ticks) <= 12:
            ax.set_xticks(ticks, [xfmt(t) for t in ticks])
        ax.axvline(0.0 if name == "reserved_discount" else 1.0, color="grey", lw=0.8, ls=":")
        ax.set_title(f"Fleet cost vs price shock: {name}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(_cost_label(df))
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title=", ".join(
            a.removeprefix(AXIS_PREFIX) for a in others) or None, title_fontsize=8)
    return _save(fig, path)


PLOTS = {"cost_vs_slo.png": plot_cost_vs_slo, "fleet_composition.png": plot_composition,
         "cost_vs_price.png": plot_cost_vs_price}


def plot_all(df: pd.DataFrame, out_dir: str | Path) -> tuple[list[Path], dict[str, str]]:
    """Write every plot the table's axes support into ``out_dir``; returns (written, {skipped: reason})."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], {}
    reasons = {"cost_vs_slo.png": "no point has a plan with online traffic",
               "cost_vs_price.png": "no price axis (price.*, price_multiplier, reserved_discount) with a solved point"}
    for name, fn in PLOTS.items():
        result = fn(df, out_dir / name)
        if result is None:
            skipped[name] = reasons.get(name, "not supported by this table")
        else:
            written.append(result)
    return written, skipped


__all__ = ["plot_all", "plot_composition", "plot_cost_vs_price", "plot_cost_vs_slo", "pareto_front"]
