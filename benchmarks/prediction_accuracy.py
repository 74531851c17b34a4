"""How close are the planner's predictions to published measurements it was not fitted on?

Leaving one source document (then one organisation, then one GPU type) out at a time, the serving model is
fitted on the rest and scored on the held-out rows: median and p90 absolute % error of each metric (TTFT, TPOT,
throughput), per serving mode, engine and GPU class, for the uncalibrated roofline, the paper's constant-offset
CTCF and our per-operator model. Out-of-scope rows (llama.cpp, weight-offloaded runs) are scored last.

    python benchmarks/prediction_accuracy.py [MEASUREMENTS.csv ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from solver.calibrate import usable_dataset
from solver.fitting import fit, row_thetas
from solver.measured import dataset, metric_error, predict_times
from solver.measurements import DEFAULT_MEASUREMENTS, in_scope, load_measurements
from solver.validation import held_out, organisation, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measurements", nargs="*", type=Path, default=[DEFAULT_MEASUREMENTS])
    args = parser.parse_args()
    frame = pd.concat([load_measurements(p) for p in args.measurements], ignore_index=True)
    data = usable_dataset(frame, args.measurements[0])
    pd.set_option("display.width", 220)
    src = data.rows["source_id"].to_numpy()
    schemes = {"leave one source document out": src,
               "leave one organisation out": np.array([organisation(s) for s in src]),
               "leave one GPU type out": data.rows["gpu"].to_numpy()}
    for title, groups in schemes.items():
        errors = held_out(data, groups)
        print(f"\n## {title} ({len(set(groups))} groups, {len(groups)} rows)")
        for by in ("mode", "engine", "gpu_class", "gpu"):
            table = summary(errors, by)
            if by != "mode":
                table = table[table["metric"] == "all"]
            print(f"\n### by {by}\n")
            print(table.to_string(index=False))
    out_frame = frame[~in_scope(frame)].reset_index(drop=True)
    out = dataset(out_frame)
    if len(out.rows):
        calib = fit(data)
        err = metric_error(out, predict_times(out, row_thetas(calib, out)))
        by = pd.DataFrame({"engine": out.rows["engine"], "err": err}).groupby("engine")["err"]
        print("\n## out of scope (fitted on every in-scope row): median / p90 abs % error")
        print(pd.DataFrame({"rows": by.size(), "median %": by.median().round(1),
                            "p90 %": by.quantile(0.9).round(1)}).to_string())


if __name__ == "__main__":
    main()
