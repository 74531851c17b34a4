"""PNG plots of a sweep results table (``infersave plot``): cost vs SLO, fleet composition, cost vs price shock.

Made to be pasted into a finance deck:

* run-rate (online pools, USD/h) and one-off (offline jobs, USD) costs are drawn in separate panels, never added;
* a right-hand axis gives the % change against the base case (every price multiplier 1, no discount, SLO x1,
  demand x1, the first value of the other axes; the first solved point if the base was not swept);
* lines differ by colour *and* marker *and* line style, and lines that coincide are nudged apart sideways, so
  none hides another; colour is the price scenario, marker/style the other axes;
* the Pareto frontier is drawn per price scenario (one price world at a time);
* fleet composition is weighted by GPUs (an 8-GPU VM counts 8), one colour per GPU model, spot hatched;
* every figure carries a caption with the price retrieval date, calibration id and package version.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``, so importing
this module does not change the matplotlib backend of the caller (a notebook, an Airflow worker).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .io import atomic_write
from .provenance import caption, table_provenance
from .sweep import AXIS_PREFIX, SOLVED, axis_columns, label_axis, summary_table

PRICE_AXES = ("price.", "price_multiplier", "reserved_discount")
NEUTRAL = {"price_multiplier": 1.0, "reserved_discount": 0.0, "slo_scale": 1.0, "demand_growth": 1.0}
MAX_GROUPS = 10  # above this many lines a plot shows a band and the median only
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
STYLES = ["-", "--", ":", "-."]
COLORS = [f"C{i}" for i in range(10)]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return path


def _is_price(axis: str) -> bool:
    return axis.removeprefix(AXIS_PREFIX).startswith(PRICE_AXES)


def _neutral(axis: str, values: list[Any]) -> Any:
    name = axis.removeprefix(AXIS_PREFIX)
    return 1.0 if name.startswith("price.") else NEUTRAL.get(name, values[0] if values else None)


def base_point(summary: pd.DataFrame, axes: list[str]) -> pd.Series | None:
    """The base case: every axis at its neutral value, or the first solved point."""
    ok = summary[summary["status"].isin(SOLVED)]
    if ok.empty:
        return None
    mask = pd.Series(True, index=ok.index)
    for a in axes:
        mask &= ok[a] == _neutral(a, list(summary[a]))
    return ok[mask].iloc[0] if mask.any() else ok.iloc[0]


def _caption(fig: Figure, df: pd.DataFrame, prov: dict[str, Any] | None, what: str = "") -> None:

    axes = ", ".join(a.removeprefix(AXIS_PREFIX) for a in axis_columns(df)) or "no axes"
    n = df["point"].nunique()
    # supxlabel, not fig.text: the constrained layout then keeps room for it below the axes' own labels
    fig.supxlabel(f"{what}sweep of {n} points over {axes} · {caption(prov)}", fontsize=7, color="0.35", x=0.01,
                  ha="left")


def _money_axes(fig: Figure, summary: pd.DataFrame, n_extra_rows: int = 0) -> tuple[Any, Any | None]:
    """Run-rate panel, plus a one-off panel when some point has offline cost."""
    has_offline = bool((summary["offline_usd"].fillna(0) > 1e-9).any())
    if has_offline:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        return top, bottom
    return fig.subplots(), None


def _pct_axis(ax: Any, base: float | None) -> None:
    """A right-hand axis: % change against the base case's value."""
    if not base or base <= 0:
        return
    sec = ax.secondary_yaxis("right", functions=(lambda y: 100.0 * (y / base - 1.0),
                                                 lambda p: base * (1.0 + p / 100.0)))
    sec.set_ylabel("% vs base", fontsize=8)


def _groups(summary: pd.DataFrame, others: list[str]) -> list[tuple[str, tuple[Any, ...], pd.DataFrame]]:
    if not others:
        return [("all points", (), summary)]
    out = []
    for key, g in summary.groupby(others, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((", ".join(label_axis(a, v) for a, v in zip(others, key)), key, g))
    return out


def _style(others: list[str], key: tuple[Any, ...], levels: dict[str, list[Any]]) -> dict[str, Any]:
    """Colour from the price axes, marker and line style from the rest, so coinciding lines stay distinct."""
    price_idx = [levels[a].index(v) for a, v in zip(others, key) if _is_price(a)]
    rest_idx = [levels[a].index(v) for a, v in zip(others, key) if not _is_price(a)]
    c = int(np.ravel_multi_index(price_idx, [len(levels[a]) for a in others if _is_price(a)])) if price_idx else 0
    r = int(np.ravel_multi_index(rest_idx, [len(levels[a]) for a in others if not _is_price(a)])) if rest_idx else 0
    if not price_idx:
        c = r
    return {"color": COLORS[c % 10], "marker": MARKERS[r % len(MARKERS)], "ls": STYLES[r % len(STYLES)]}


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both x and y (lower is better for both), by x."""
    order = np.lexsort((y, x))
    front, best = [], math.inf
    for i in order:
        if y[i] < best - 1e-9:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


def _lines(ax: Any, groups: list[Any], xcol: str, ycol: str, others: list[str], levels: dict[str, Any],
           log_x: bool) -> None:
    """One line per group; each is nudged sideways by a small step so that identical lines stay visible."""
    n = len(groups)
    for k, (label, key, g) in enumerate(groups):
        g = g.sort_values(xcol)
        x = g[xcol].astype(float).to_numpy()
        step = (k - (n - 1) / 2) * 0.012
        x = x * 2 ** step if log_x else x + step * (np.ptp(x) if np.ptp(x) > 0 else 1.0)
        st = _style(others, key, levels)
        ax.plot(x, g[ycol].to_numpy(float), ls=st["ls"], marker=st["marker"], color=st["color"], label=label, ms=6,
                lw=1.4, alpha=0.9, mfc="white" if k % 2 else st["color"])


def plot_cost_vs_slo(df: pd.DataFrame, path: Path, prov: dict[str, Any] | None = None) -> Path | None:
    """Run-rate (and one-off) cost against the SLO scale, or without an slo_scale axis against worst TPOT."""
    summary = summary_table(df)
    ok = summary[summary["status"].isin(SOLVED)].copy()
    slo_col = AXIS_PREFIX + "slo_scale"
    axes = axis_columns(df)
    if slo_col in summary.columns:
        xcol, xlabel = slo_col, "latency SLO scale (x every base TTFT/TPOT bound; larger = looser)"
    else:
        ok = ok[np.isfinite(ok["worst_tpot_s"].astype(float))]
        ok["worst_tpot_ms"] = ok["worst_tpot_s"].astype(float) * 1e3
        xcol, xlabel = "worst_tpot_ms", "worst TPOT of the plan's online traffic (ms per output token)"
    if ok.empty:
        return None
    others = [a for a in axes if a != slo_col]
    levels = {a: list(dict.fromkeys(summary[a])) for a in others}
    groups = _groups(ok, others)
    fig = Figure(figsize=(10, 7), layout="constrained")
    top, bottom = _money_axes(fig, ok)
    x_all = ok[xcol].astype(float)
    log_x = xcol == slo_col and x_all.max() / max(x_all.min(), 1e-12) >= 4
    base = base_point(summary, axes)
    price_axes = [a for a in others if _is_price(a)]
    for ax, ycol, ylabel in ((top, "online_usd_per_hour", "run-rate, online (USD/h)"),
                             (bottom, "offline_usd", "one-off, offline jobs (USD)")):
        if ax is None:
            continue
        if len(groups) <= MAX_GROUPS:
            _lines(ax, groups, xcol, ycol, others, levels, log_x)
        else:
            ax.plot(x_all, ok[ycol], "o", color="C0", alpha=0.5, label="sweep points")
        scenarios = _groups(ok, price_axes) if ycol == "online_usd_per_hour" else []
        for k, (label, key, g) in enumerate(scenarios):  # a frontier per price world, never across them
            x, y = g[xcol].astype(float).to_numpy(), g[ycol].to_numpy(float)
            front = pareto_front(x, y)
            color = _style(price_axes, key, levels)["color"] if price_axes else "black"
            ax.step(x[front], y[front], where="post", color=color, lw=3, alpha=0.25, zorder=1,
                    label=f"frontier: {label}" if price_axes else "Pareto frontier")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if base is not None:
            _pct_axis(ax, float(base[ycol]))
    (bottom or top).set_xlabel(xlabel)
    if log_x:
        for ax in (top, bottom):
            if ax is not None:
                ax.set_xscale("log", base=2)
    ticks = sorted(set(np.round(x_all, 6)))
    if xcol == slo_col and len(ticks) <= 12:
        (bottom or top).set_xticks(ticks, [f"{t:g}" for t in ticks])
    n_bad = int((~summary["status"].isin(SOLVED)).sum())
    top.set_title("Fleet cost vs latency SLO" + (f"  ({n_bad} point(s) without a plan not shown)" if n_bad else ""))
    top.legend(loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8, title="colour: price · marker: rest",
               title_fontsize=8)
    _caption(fig, df, prov)
    return _save(fig, path)


def plot_cost_vs_confidence(df: pd.DataFrame, path: Path, prov: dict[str, Any] | None = None) -> Path | None:
    """The price of certainty: cost against the probability (given the model's measured error) that every SLO
    holds; one line per combination of the other axes."""
    col = AXIS_PREFIX + "confidence"
    summary = summary_table(df)
    if col not in summary.columns:
        return None
    ok = summary[summary["status"].isin(SOLVED)].copy()
    if ok.empty:
        return None
    axes = axis_columns(df)
    others = [a for a in axes if a != col]
    levels = {a: list(dict.fromkeys(summary[a])) for a in others}
    fig = Figure(figsize=(10, 6), layout="constrained")
    top, bottom = _money_axes(fig, ok)
    base = base_point(summary, axes)
    for ax, ycol, ylabel in ((top, "online_usd_per_hour", "run-rate, online (USD/h)"),
                             (bottom, "offline_usd", "one-off, offline jobs (USD)")):
        if ax is None:
            continue
        _lines(ax, _groups(ok, others), col, ycol, others, levels, False)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if base is not None:
            _pct_axis(ax, float(base[ycol]))
    ticks = sorted(set(ok[col].astype(float)))
    (bottom or top).set_xticks(ticks, [f"{t:.0%}" for t in ticks])
    (bottom or top).set_xlabel("confidence that every SLO holds, given the model's held-out error")
    top.set_title("The price of certainty: fleet cost vs confidence")
    if others:
        top.legend(loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8)
    _caption(fig, df, prov)
    return _save(fig, path)


def _composition(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per point x (GPU, spot): GPUs, run-rate USD/h and one-off USD, each pool counted once."""
    pools = df.dropna(subset=["pool"]).drop_duplicates(["point", "pool"]).copy()
    pools["spot"] = pools["pricing"].astype(str) == "spot"
    pools["gpus"] = pools["count"].astype(float) * pools["gpu_count"].astype(float)
    online = pools["mode"].astype(str) == "online"
    hours = pools["horizon_hours"].astype(float).where(pools["horizon_hours"] > 0, 1.0)
    pools["usd_h"] = np.where(online, pools["pool_usd"] / hours, 0.0)
    pools["one_off"] = np.where(online, 0.0, pools["pool_usd"])
    pools["gpus"] = np.where(online | (pools["pool_usd"] > 0), pools["gpus"], 0.0)  # idle offline pools: no GPUs
    out = {}
    for value in ("gpus", "usd_h", "one_off"):
        out[value] = pools.pivot_table(index="point", columns=["gpu", "spot"], values=value, aggfunc="sum",
                                       fill_value=0.0)
    return out


def _short_label(row: pd.Series, axes: list[str]) -> str:
    """Stacked, horizontal tick label: point id, then one short line per axis."""
    short = {"spot+on-demand": "spot+OD", "on-demand": "OD"}
    return f"#{row['point']}\n" + "\n".join(short.get(t, t) for t in (label_axis(a, row[a]) for a in axes))


def plot_composition(df: pd.DataFrame, path: Path, prov: dict[str, Any] | None = None) -> Path:
    """Stacked bars per sweep point: GPUs by GPU model (spot hatched), run-rate USD/h, and one-off USD."""
    summary = summary_table(df)
    axes = axis_columns(df)
    points = summary["point"].to_list()
    comp = {k: v.reindex(points, fill_value=0.0) for k, v in _composition(df).items()}
    has_offline = bool(comp["one_off"].to_numpy().sum() > 0)
    gpus_all = sorted({g for g, _ in comp["gpus"].columns})
    colors = {g: COLORS[i % 10] for i, g in enumerate(gpus_all)}
    width_in = min(max(9.0, 0.75 * len(points) + 3), 40.0)
    fig = Figure(figsize=(width_in, 10 if has_offline else 8), layout="constrained")
    panels = fig.subplots(3 if has_offline else 2, 1, sharex=True)
    xs = np.arange(len(points))
    specs = [("gpus", "GPUs (an 8-GPU VM counts 8)", ",.0f"), ("usd_h", "run-rate, online (USD/h)", ",.1f")]
    if has_offline:
        specs.append(("one_off", "one-off, offline jobs (USD)", ",.1f"))
    for ax, (key, ylabel, fmt) in zip(panels, specs):
        table = comp[key]
        bottom = np.zeros(len(points))
        for gpu, spot in sorted(table.columns, key=lambda c: (gpus_all.index(c[0]), c[1])):
            vals = table[(gpu, spot)].to_numpy(float)
            ax.bar(xs, vals, bottom=bottom, color=colors[gpu], hatch="///" if spot else None, width=0.72,
                   edgecolor="white", lw=0.6)
            bottom += vals
        ymax = bottom.max() if len(bottom) and bottom.max() > 0 else 1.0
        for x, total, status in zip(xs, bottom, summary["status"]):
            if status not in SOLVED:
                ax.text(x, ymax * 0.03, status, ha="center", va="bottom", fontsize=7, color="tab:red")
            elif total > 0 and len(points) <= 30:
                ax.text(x, total, format(total, fmt), ha="center", va="bottom", fontsize=7)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_ylim(0, ymax * 1.15)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    panels[0].set_title(f"Fleet composition per sweep point ({len(points)} points)")
    handles = [Patch(facecolor=colors[g], label=g) for g in gpus_all]
    handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="///", label="spot"))
    panels[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="GPU",
                     title_fontsize=8)
    labels = [_short_label(r, axes) for _, r in summary.iterrows()]
    panels[-1].set_xticks(xs, labels, rotation=0, fontsize=7 if len(points) <= 16 else 6)
    panels[-1].set_xlim(-0.6, len(points) - 0.4)
    _caption(fig, df, prov)
    return _save(fig, path)


def plot_cost_vs_price(df: pd.DataFrame, path: Path, prov: dict[str, Any] | None = None) -> Path | None:
    """Run-rate (and one-off) cost against each price axis, one line per combination of the other axes."""
    axes = axis_columns(df)
    price_axes = [a for a in axes if _is_price(a)]
    summary = summary_table(df)
    ok = summary[summary["status"].isin(SOLVED)]
    if not price_axes or ok.empty:
        return None
    has_offline = bool((ok["offline_usd"].fillna(0) > 1e-9).any())
    money = [("online_usd_per_hour", "run-rate (USD/h)")] + ([("offline_usd", "one-off (USD)")] if has_offline
                                                              else [])
    fig = Figure(figsize=(6.5 * len(money) + 3, 4.6 * len(price_axes)), layout="constrained")
    grid = fig.subplots(len(price_axes), len(money), squeeze=False)
    base = base_point(summary, axes)
    for row, pa in zip(grid, price_axes):
        name = pa.removeprefix(AXIS_PREFIX)
        others = [a for a in axes if a != pa]
        levels = {a: list(dict.fromkeys(summary[a])) for a in others}
        groups = _groups(ok, others)
        xfmt: Callable[[float], str]
        if name == "reserved_discount":
            xlabel, xfmt = "reserved-instance discount on on-demand prices", lambda v: f"{v:.0%}"
        else:
            target = "all instances" if name == "price_multiplier" else " ".join(name.split(".")[1:])
            xlabel, xfmt = f"price multiplier on {target} (x catalog price)", lambda v: f"{v:g}"
        for ax, (ycol, ylabel) in zip(row, money):
            if len(groups) <= MAX_GROUPS:
                _lines(ax, groups, pa, ycol, others, levels, log_x=False)
            else:
                stats = ok.groupby(pa)[ycol].agg(["min", "median", "max"]).sort_index()
                ax.fill_between(stats.index.astype(float), stats["min"], stats["max"], alpha=0.25, color="C0",
                                label=f"range over {len(groups)} combinations")
                ax.plot(stats.index.astype(float), stats["median"], "-o", color="C0", label="median")
            ticks = sorted(ok[pa].astype(float).unique())
            if len(ticks) <= 12:
                ax.set_xticks(ticks, [xfmt(t) for t in ticks])
            ax.axvline(0.0 if name == "reserved_discount" else 1.0, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{ylabel} vs {name}", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            if base is not None:
                _pct_axis(ax, float(base[ycol]))
        row[-1].legend(loc="upper left", bbox_to_anchor=(1.15, 1.0), fontsize=8, title=", ".join(
            a.removeprefix(AXIS_PREFIX) for a in others) or None, title_fontsize=8)
    _caption(fig, df, prov)
    return _save(fig, path)


PLOTS = {"cost_vs_slo.png": plot_cost_vs_slo, "fleet_composition.png": plot_composition,
         "cost_vs_price.png": plot_cost_vs_price, "cost_vs_confidence.png": plot_cost_vs_confidence}


def plot_all(df: pd.DataFrame, out_dir: str | Path,
             prov: dict[str, Any] | None = None) -> tuple[list[Path], dict[str, str]]:
    """Write every plot the table's axes support into ``out_dir``; returns (written, {skipped: reason}).
    ``prov`` (``solver.provenance``) is read from the table's ``provenance.*`` columns when not given."""

    prov = prov or table_provenance(df)
    out_dir = Path(out_dir)
    # folders this call creates (the first write makes them), deepest first: removed again if a plot fails
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    written: list[Path] = []
    skipped: dict[str, str] = {}
    reasons = {"cost_vs_slo.png": "no point has a plan with online traffic",
               "cost_vs_confidence.png": "no confidence axis with a solved point",
               "cost_vs_price.png": "no price axis (price.*, price_multiplier, reserved_discount) with a solved point"}
    try:
        for name, fn in PLOTS.items():
            result = fn(df, out_dir / name, prov=prov)
            if result is None:
                skipped[name] = reasons.get(name, "not supported by this table")
            else:
                written.append(result)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()  # only if empty: never what was there before
            except OSError:
                break
        raise
    return written, skipped


__all__ = ["base_point", "pareto_front", "plot_all", "plot_composition", "plot_cost_vs_confidence", "plot_cost_vs_price",
           "plot_cost_vs_slo"]
