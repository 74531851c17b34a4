"""Users' own serving measurements -> rows of the published-measurements schema (catalogs/measurements/published.csv).

Two result formats are read, autodetected from their keys:

* vLLM ``benchmarks/benchmark_serving.py --save-result`` (also ``vllm bench serve``): one flat JSON object with
  ``backend``, ``model_id``, ``num_prompts``, ``request_rate`` (a number or ``"inf"``), ``max_concurrency`` (null when
  unlimited), ``duration``, ``completed``, ``total_input_tokens``, ``total_output_tokens``, ``request_throughput``,
  ``output_throughput``, ``total_token_throughput`` and, per selected metric (``ttft``, ``tpot``, ``itl``, ``e2el``),
  ``mean_<m>_ms``, ``median_<m>_ms``, ``std_<m>_ms`` and ``p<P>_<m>_ms`` for every ``--metric-percentiles`` P
  (default 99). ``input_lens``/``output_lens`` lists are present in some versions.
* GuideLLM benchmark reports (``guidellm benchmark --output-path x.json``): ``{"benchmarks": [...]}``, each benchmark
  with ``metrics`` -> ``time_to_first_token_ms`` / ``time_per_output_token_ms`` / ``inter_token_latency_ms`` /
  ``request_latency`` (s) / ``prompt_token_count`` / ``output_token_count`` / ``requests_per_second`` /
  ``output_tokens_per_second`` -> ``successful`` -> ``mean``, ``median``, ``percentiles`` {``p50``, ``p90``,
  ``p99`` ...}; the load comes from the strategy (``config.strategy`` from v0.4, ``args.strategy`` in v0.3): ``type_``
  synchronous (concurrency 1), concurrent (``streams``), throughput (``max_concurrency`` or unlimited), constant or
  poisson (``rate`` requests/s).

Every row is an online (continuous-batching) measurement: ``batch_size`` is empty and ``concurrency`` and/or
``request_rate_per_s`` say what load was offered; ``statistic`` says whether a latency is a mean, median or
percentile. ``input_tokens``/``output_tokens`` are the mean lengths over completed requests, rounded. ``source`` is
the file path; the user supplies model, GPU, GPU count, engine and dtype, which neither file records reliably.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal, overload

import pandas as pd

from .errors import CatalogError
from .io import read_json
from .measurements import COLUMNS

ROW_COLUMNS = (*COLUMNS, "notes", "request_rate_per_s", "concurrency", "statistic", "num_prompts")
# (file statistic key, our statistic name)
VLLM_STATS = (("mean", "mean"), ("median", "median"), ("p90", "p90"), ("p99", "p99"))
GUIDELLM_STATS = (("mean", "mean"), ("median", "median"), ("p90", "p90"), ("p99", "p99"))


def read_user_benchmark(path: str | os.PathLike[str], *, model: str, gpu: str, gpu_count: int = 1, engine: str = "vllm",
                        dtype: str = "fp16", kv_dtype: str | None = None) -> pd.DataFrame:
    """Rows (published.csv columns plus the optional online columns) from a vLLM benchmark_serving or a GuideLLM
    result file. Raises CatalogError naming the file and field when the file is neither format or lacks a field."""
    path = Path(path)

    data = read_json(path, CatalogError, "JSON benchmark result")
    if not isinstance(gpu_count, int) or gpu_count < 1:
        raise CatalogError(f"gpu_count must be a positive integer, got {gpu_count!r}", path=str(path),
                           field="gpu_count")
    base = {"model": model, "gpu": gpu, "gpu_count": gpu_count, "engine": engine, "dtype": dtype,
            "kv_dtype": kv_dtype or dtype, "source": str(path)}
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
        rows = _guidellm_rows(data, path, base)
    elif isinstance(data, dict) and ("mean_ttft_ms" in data or "request_throughput" in data):
        rows = _vllm_rows(data, path, base)
    else:
        keys = sorted(data)[:6] if isinstance(data, dict) else type(data).__name__
        raise CatalogError("neither a vLLM benchmark_serving result (needs 'mean_ttft_ms') nor a GuideLLM report "
                           f"(needs a 'benchmarks' list); found {keys}", path=str(path), field="benchmarks")
    if not rows:
        raise CatalogError("no latency metric found (no ttft/tpot values)", path=str(path), field="metrics")
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


# ---- vLLM benchmark_serving ------------------------------------------------------------------------------------------

@overload
def _num(value: Any, path: Path, field: str, *, required: Literal[True] = ...) -> float: ...
@overload
def _num(value: Any, path: Path, field: str, *, required: bool) -> float | None: ...
def _num(value: Any, path: Path, field: str, *, required: bool = True) -> float | None:
    if value is None or value == "":
        if required:
            raise CatalogError("missing value", path=str(path), field=field)
        return None
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise CatalogError(f"expected a number, got {value!r}", path=str(path), field=field) from None
    if math.isnan(out) or out < 0:
        raise CatalogError(f"expected a non-negative number, got {value!r}", path=str(path), field=field)
    return out


def _mean_len(data: dict[str, Any], lens_key: str, total_key: str, path: Path) -> float:
    lens = data.get(lens_key)
    completed = _num(data.get("completed"), path, "completed")
    if isinstance(lens, list) and lens:
        # output_lens holds 0 for failed requests; input_lens holds every request's prompt length
        errors = data.get("errors")
        ok = [n for i, n in enumerate(lens) if not (isinstance(errors, list) and i < len(errors) and errors[i])]
        ok = [n for n in ok if isinstance(n, (int, float))]
        if lens_key == "output_lens":
            ok = [n for n in ok if n > 0]
        if ok:
            return sum(ok) / len(ok)
    if not completed:
        raise CatalogError("no completed requests", path=str(path), field="completed")
    return _num(data.get(total_key), path, total_key) / completed


def _vllm_rows(data: dict[str, Any], path: Path, base: dict[str, Any]) -> list[dict[str, Any]]:
    rate = _num(data.get("request_rate"), path, "request_rate", required=False)
    conc = _num(data.get("max_concurrency"), path, "max_concurrency", required=False)
    l_in = _mean_len(data, "input_lens", "total_input_tokens", path)
    l_out = _mean_len(data, "output_lens", "total_output_tokens", path)
    date = str(data.get("date", ""))
    date = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) >= 8 and date[:8].isdigit() else date
    # every request of a closed loop is sent at once, the first wave in lockstep: the run's size says how many waves
    prompts = _num(data.get("completed"), path, "completed", required=False)
    load = {"request_rate_per_s": rate if rate is not None else math.inf, "concurrency": conc, "num_prompts": prompts}
    context = (f"vLLM benchmark_serving result: backend {data.get('backend')!r}, model_id {data.get('model_id')!r}, "
               f"num_prompts {data.get('num_prompts')}, completed {data.get('completed')}, request_rate "
               f"{data.get('request_rate')!r}, max_concurrency {data.get('max_concurrency')!r}, duration "
               f"{data.get('duration')} s; mean input {l_in:.1f} / output {l_out:.1f} tokens")
    rows = []
    for metric, key in (("ttft_s", "ttft"), ("tpot_s", "tpot"), ("e2e_s", "e2el")):
        for file_stat, stat in VLLM_STATS:
            field = f"{file_stat}_{key}_ms"
            value = _num(data.get(field), path, field, required=False)
            if value is None or value <= 0:
                continue
            rows.append(_row(base, metric, value / 1000.0, "s", l_in, l_out, date, load, stat,
                             f"{context}; {field} = {data.get(field)} ms as printed"))
    value = _num(data.get("output_throughput"), path, "output_throughput", required=False)
    if value and rows:
        rows.append(_row(base, "output_tokens_per_s", value, "tokens/s", l_in, l_out, date, load, "",
                         f"{context}; output_throughput = {data.get('output_throughput')} tok/s as printed "
                         "(whole server, all concurrent requests)"))
    return rows


# ---- GuideLLM ----------------------------------------------------------------------------------------------------------

def _successful(metrics: dict[str, Any], name: str) -> dict[str, Any] | None:
    block = metrics.get(name)
    if not isinstance(block, dict):
        return None
    ok = block.get("successful", block)
    return ok if isinstance(ok, dict) else None


def _stat(summary: dict[str, Any], file_stat: str) -> Any:
    if file_stat in ("mean", "median"):
        value = summary.get(file_stat)
        if value is None and file_stat == "median":
            value = (summary.get("percentiles") or {}).get("p50")
        return value
    return (summary.get("percentiles") or {}).get(file_stat)


def _guidellm_load(bench: dict[str, Any], path: Path, where: str) -> tuple[float | None, float | None, str]:
    config: dict[str, Any] = bench["config"] if isinstance(bench.get("config"), dict) else {}
    args: dict[str, Any] = bench["args"] if isinstance(bench.get("args"), dict) else {}
    strategy = config.get("strategy") or args.get("strategy") or bench.get("strategy")
    if not isinstance(strategy, dict) or "type_" not in strategy:
        raise CatalogError("benchmark has no scheduling strategy (config.strategy / args.strategy with type_)",
                           path=str(path), where=where, field="strategy")
    kind = str(strategy["type_"])
    if kind == "synchronous":
        return None, 1.0, kind
    if kind == "concurrent":
        return None, _num(strategy.get("streams"), path, f"{where}.strategy.streams"), kind
    if kind == "throughput":
        conc = _num(strategy.get("max_concurrency"), path, f"{where}.strategy.max_concurrency", required=False)
        return math.inf, conc, kind
    if kind in ("constant", "poisson"):
        return _num(strategy.get("rate"), path, f"{where}.strategy.rate"), None, kind
    raise CatalogError(f"unknown strategy type {kind!r}", path=str(path), where=where, field="strategy.type_")


def _guidellm_rows(data: dict[str, Any], path: Path, base: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for k, bench in enumerate(data["benchmarks"]):
        where = f"benchmarks[{k}]"
        if not isinstance(bench, dict) or not isinstance(bench.get("metrics"), dict):
            raise CatalogError("benchmark has no 'metrics' object", path=str(path), where=where, field="metrics")
        metrics = bench["metrics"]
        rate, conc, kind = _guidellm_load(bench, path, where)
        lens = []
        for name in ("prompt_token_count", "output_token_count"):
            summary = _successful(metrics, name)
            if summary is None or summary.get("mean") is None:
                raise CatalogError("missing mean token count", path=str(path), where=where, field=f"metrics.{name}")
            lens.append(_num(summary["mean"], path, f"{where}.metrics.{name}.successful.mean"))
        l_in, l_out = lens
        start = bench.get("start_time") or (bench.get("run_stats") or {}).get("start_time")
        date = pd.Timestamp(float(start), unit="s").strftime("%Y-%m-%d") if isinstance(start, (int, float)) else ""
        load = {"request_rate_per_s": rate, "concurrency": conc}
        context = (f"GuideLLM benchmark {k} (strategy {kind}"
                   + (f", streams/concurrency {conc:g}" if conc is not None else "")
                   + (f", rate {rate:g} req/s" if rate is not None and math.isfinite(rate) else "")
                   + f"); mean prompt {l_in:.1f} / output {l_out:.1f} tokens")
        for metric, name, scale in (("ttft_s", "time_to_first_token_ms", 1e-3),
                                    ("tpot_s", "inter_token_latency_ms", 1e-3),
                                    ("e2e_s", "request_latency", 1.0)):
            summary = _successful(metrics, name)
            if summary is None:
                continue
            for file_stat, stat in GUIDELLM_STATS:
                raw = _stat(summary, file_stat)
                value = _num(raw, path, f"{where}.metrics.{name}.successful.{file_stat}", required=False)
                if value is None or value <= 0:
                    continue
                unit_note = "s" if scale == 1.0 else "ms"
                rows.append(_row(base, metric, value * scale, "s", l_in, l_out, date, load, stat,
                                 f"{context}; metrics.{name}.successful.{file_stat} = {raw} {unit_note} as printed"
                                 + ("; GuideLLM inter-token latency excludes the first token (= vLLM TPOT)"
                                    if name == "inter_token_latency_ms" else "")))
        summary = _successful(metrics, "output_tokens_per_second")
        if summary is not None and summary.get("mean"):
            raw = summary["mean"]
            rows.append(_row(base, "output_tokens_per_s", _num(raw, path, f"{where}.metrics.output_tokens_per_second"),
                             "tokens/s", l_in, l_out, date, load, "",
                             f"{context}; metrics.output_tokens_per_second.successful.mean = {raw} tok/s as printed "
                             "(whole server)"))
    return rows


def _row(base: dict[str, Any], metric: str, value: float, unit: str, l_in: float, l_out: float, date: str,
         load: dict[str, Any], statistic: str, notes: str) -> dict[str, Any]:
    return {**base, "source_id": "user", "batch_size": math.nan, "input_tokens": int(round(l_in)),
            "output_tokens": int(round(l_out)), "metric": metric, "value": float(value), "unit": unit, "date": date,
            "notes": notes, "request_rate_per_s": math.nan if load["request_rate_per_s"] is None
            else load["request_rate_per_s"], "concurrency": math.nan if load["concurrency"] is None
            else load["concurrency"], "statistic": statistic,
            "num_prompts": math.nan if load.get("num_prompts") is None else load["num_prompts"]}
