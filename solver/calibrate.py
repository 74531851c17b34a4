"""``calibrate``: fit the serving model on measurements, report held-out error, return the calibration."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .calibration import Calibration
from .errors import CatalogError
from .fitting import fit
from .measured import Dataset, dataset
from .measurements import in_scope, load_measurements
from .validation import error_quantiles, held_out, summary, with_error_quantiles


def usable_dataset(frame: pd.DataFrame, path: Path | str) -> Dataset:
    """The rows the planner models (serving engines with weights on the GPU, known model/GPU/engine)."""
    data = dataset(frame[in_scope(frame)].reset_index(drop=True))
    if len(data.rows) < 4:
        raise CatalogError("fewer than 4 usable measurement rows (model, GPU and engine must be known)",
                           path=str(path))
    return data


def calibrate_report(paths: list[Path], frames: list[pd.DataFrame] | None = None) -> tuple[str, Calibration]:
    """Held-out comparison (leave one source document out) and the calibration fitted on every row."""
    frame = pd.concat(frames if frames is not None else [load_measurements(p) for p in paths], ignore_index=True)
    data = usable_dataset(frame, paths[0] if paths else "measurements")
    skipped = int(in_scope(frame).sum()) - len(data.rows)
    out_of_scope = int((~in_scope(frame)).sum())
    errors = held_out(data, data.rows["source_id"].to_numpy())
    table = summary(errors, "engine")
    final = with_error_quantiles(fit(data, source=f"fitted on {len(data.rows)} rows of "
                                       f"{', '.join(Path(p).name for p in paths)}"), error_quantiles(errors))
    coeffs = pd.DataFrame([{"engine|gpu": k, **dict(zip(("k_compute", "k_memory", "k_kv", "k_comm", "step_ms",
                                                          "layer_us"), np.round(v * [1, 1, 1, 1, 1e3, 1e6], 3)))}
                           for k, v in sorted(final.per_engine_gpu.items())])
    reasons = ([f"{out_of_scope} out of scope (llama.cpp, or weights/KV offloaded, or marked SUSPECT)"]
               if out_of_scope else []) + \
        ([f"{skipped} with an unknown model, GPU or engine, or weights beyond the GPUs"] if skipped else [])
    note = f" of {len(frame)} ({'; '.join(reasons)} skipped)" if reasons else ""
    text = (f"Held-out error, leaving one source document out at a time, {len(data.rows)} usable rows{note}\n"
            "(absolute % error of each published metric; roofline = datasheet peaks; paper = Eq. 7 per GPU; "
            "ours = per-operator roofline, per (engine, GPU) fit):\n"
            f"{table.to_string(index=False)}\n\ncoefficients fitted on all rows:\n{coeffs.to_string(index=False)}")
    return text, final
