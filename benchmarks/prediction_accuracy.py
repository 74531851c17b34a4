"""How close are the planner's predictions to published measurements it was not fitted on?

For each validation scheme, every group (a source document, an organisation, or a GPU type) is held out in
turn: the CTCF is fitted on the other groups' rows and scored on the held-out rows. Printed per GPU and
overall: median and 90th-percentile absolute % error of TTFT, TPOT and throughput, for the uncalibrated
roofline beside the calibrated CTCF. Rows are the serving-engine rows of catalogs/measurements/published.csv
(see solver.measurements.in_scope); out-of-scope rows (llama.cpp, weight-offloaded runs) are scored last.

    python benchmarks/prediction_accuracy.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

from solver.calibrate import subset, usable_terms  # noqa: E402
from solver.ctcf import fit, metric_error, predict_times  # noqa: E402
from solver.measurements import DEFAULT_MEASUREMENTS, PHASE, in_scope, linear_terms, load_measurements  # noqa: E402
from solver.perf import UNCALIBRATED  # noqa: E402

KIND = {"ttft": "TTFT", "tpot": "TPOT", "throughput": "throughput"}


def organisation(source_id: str) -> str:
    """Documents of one organisation share an id prefix (trtllm-perf-v0.6, trtllm-perf-v0.9, ...)."""
    return "nvidia-trtllm" if source_id.startswith("trtllm") else source_id


def held_out_errors(terms, groups: pd.Series) -> pd.DataFrame:
    """Roofline and CTCF error of every row, the CTCF fitted without the row's group."""
    ctcf = np.full(len(groups), np.nan)
    for group in sorted(groups.unique()):
        test = np.flatnonzero(groups.to_numpy() == group)
        train = np.flatnonzero(groups.to_numpy() != group)
        if len(train) < 4:
            continue
        calib = fit(subset(terms, train))
        ctcf[test] = metric_error(subset(terms, test), predict_times(subset(terms, test), calib))
    return pd.DataFrame({"gpu": terms.rows["gpu"], "kind": terms.rows["metric"].map(PHASE).map(KIND),
                         "roofline": metric_error(terms, predict_times(terms, UNCALIBRATED)), "ctcf": ctcf})


def summary(errors: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for gpu, by_gpu in [*sorted(errors.groupby("gpu")), ("ALL", errors)]:
        for kind, g in [*sorted(by_gpu.groupby("kind")), ("all", by_gpu)]:
            g = g.dropna(subset=["ctcf"])
            if g.empty:
                continue
            rows.append({"gpu": gpu, "metric": kind, "rows": len(g),
                         "roofline med %": np.median(g["roofline"]), "roofline p90 %": np.percentile(g["roofline"], 90),
                         "CTCF med %": np.median(g["ctcf"]), "CTCF p90 %": np.percentile(g["ctcf"], 90)})
    return pd.DataFrame(rows).round(1)


def main() -> None:
    terms = usable_terms(DEFAULT_MEASUREMENTS)
    src = terms.rows["source_id"]
    schemes = {"leave one source document out": src, "leave one organisation out": src.map(organisation),
               "leave one GPU type out": terms.rows["gpu"]}
    pd.set_option("display.width", 200)
    for title, groups in schemes.items():
        table = summary(held_out_errors(terms, groups))
        print(f"\n## {title} ({groups.nunique()} groups, {len(groups)} rows)\n")
        print(table.to_string(index=False))
    frame = load_measurements(DEFAULT_MEASUREMENTS)
    out = linear_terms(frame[~in_scope(frame)].reset_index(drop=True))
    if len(out.measured_time):
        calib = fit(terms)
        err = metric_error(out, predict_times(out, calib))
        by = pd.DataFrame({"engine": out.rows["engine"], "err": err}).groupby("engine")["err"]
        print("\n## out of scope (CTCF fitted on every in-scope row): median / p90 abs % error")
        print(pd.DataFrame({"rows": by.size(), "median %": by.median().round(1),
                            "p90 %": by.quantile(0.9).round(1)}).to_string())


if __name__ == "__main__":
    main()
