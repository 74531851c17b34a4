"""Published (or users') measurements -> the engine iterations each measured number is made of.

Every measured metric is a time: TTFT, TPOT and E2E directly; a throughput is inverted into the time of the
work it counts (prefill tok/s -> the prefill of the batch, decode tok/s -> one decode iteration, output or total
tok/s -> the whole batch). How a row was run decides its iterations:

* ``batch_size`` given: a static batch (the paper's model; 2023-24 benchmark tables, offline runs);
* ``concurrency`` given: a closed loop of N clients on a continuous-batching engine, as many running as the KV
  cache holds: a first wave in lockstep, then a steady state in which every iteration decodes ~N sequences and
  mixes in N * L_in / L_out prompt tokens (``RowModel._closed_loop``);
* ``request_rate_per_s`` given: an open loop; the iteration mix comes from the analytic steady state at the
  current coefficients (re-linearised at every fitting pass);
* none: saturated throughput of a continuous-batching engine, at the largest concurrency whose KV fits and whose
  steady-state tokens per iteration, b (1 + L_in / L_out), the token budget holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .catalog import find_gpu, find_model
from .engines import EngineProfile, engine_profiles
from .errors import PlannerError
from .roofline import GEMM_UNHIDDEN_SHARE, GIB, Hardware, Phases, features, phases_time_s, weight_bytes
from .prefill import prefill_phases
from .serving import QUANTILE, online_state
from .shape import Shape

# engine names as measurement sources print them -> profile names
ENGINE_ALIASES = {"tensorrt-llm": "trtllm", "trt-llm": "trtllm", "text-generation-inference": "tgi",
                  "hf-accelerate": "flexgen", "deepspeed-zero-inference": "flexgen"}
SATURATED_BATCH_CAP = 2048  # TensorRT-LLM's default max_batch_size for saturated-throughput benchmarks
MEMORY_UTILIZATION = 0.9
RATE_METRICS = ("prefill_tokens_per_s", "decode_tokens_per_s", "output_tokens_per_s", "tokens_per_s")
# a published statistic as a probability (measurements say "median" where SLOs say "p50")
QUANTILE_OF = {**QUANTILE, "median": QUANTILE["p50"]}
PHASE = {"ttft_s": "ttft", "prefill_tokens_per_s": "ttft", "tpot_s": "tpot", "decode_tokens_per_s": "tpot",
         "e2e_s": "throughput", "output_tokens_per_s": "throughput", "tokens_per_s": "throughput"}


def engine_of(name: str) -> EngineProfile | None:
    key = ENGINE_ALIASES.get(str(name).lower(), str(name).lower())
    return engine_profiles().get(key)


def serving_mode(row: pd.Series) -> str:
    """static | closed_loop | open_loop | saturated: how the measured run was driven."""
    def given(col: str) -> bool:
        try:  # an infinite rate ("inf": every request sent at once) is a closed loop or saturation, not a rate
            return np.isfinite(float(row.get(col, np.nan)))
        except (TypeError, ValueError):
            return False

    if given("concurrency"):
        return "closed_loop"
    if given("request_rate_per_s"):
        return "open_loop"
    return "static" if given("batch_size") else "saturated"


@dataclass(frozen=True)
class RowModel:
    """One measurement as iterations: its phases (a function of theta for open-loop rows) and measured time."""

    shape: Shape
    engine: EngineProfile
    mode: str
    metric: str
    measured_time_s: float
    batch: float  # sequences in flight (static batch, concurrency or saturated batch)
    rate: float
    statistic: str = "mean"
    clients: float = float("nan")  # a closed loop's clients (more than ``batch`` when the KV cache holds fewer)
    prompts: float = float("nan")  # requests in the whole run (a closed loop's first wave is batch / prompts of them)

    def phases(self, theta: np.ndarray, share: float = GEMM_UNHIDDEN_SHARE) -> Phases:
        s, eng, b = self.shape, self.engine, np.array([self.batch])
        l_in, l_out = float(s.input_tokens[0]), float(s.output_tokens[0])
        chunk = eng.chunk_tokens
        if self.mode == "static" or eng.scheduling == "static":
            prefill = prefill_phases(s, b, chunk)
            decode = s.work(b, 0.0, 0.0)
        elif self.mode == "open_loop":
            state = online_state(s, theta, eng, np.array([float(eng.default_max_seqs)]),
                                 np.array([self.rate]), {})
            n, t = float(state.decode_seqs[0]), float(state.iteration_s[0])
            p = self.rate * t * l_in if np.isfinite(t) else 0.0
            prefill = prefill_phases(s, np.array([1.0]), chunk, decode_seqs=n)
            decode = s.work(np.array([1.0 + n]), p, p * l_in / 2.0, runs=np.ones(1))
        elif self.mode == "closed_loop":
            return self._closed_loop(theta, share)
        else:  # saturated: ~b decodes, each iteration mixing in b * L_in / L_out prompt tokens
            p = self.batch * l_in / max(l_out, 1.0)
            prefill = prefill_phases(s, np.array([1.0]), chunk, decode_seqs=max(self.batch - 1.0, 0.0))
            decode = s.work(b, p, p * l_in / 2.0, runs=np.ones(1))
        steps = max(l_out - 1.0, 0.0)
        phase = PHASE[self.metric]
        if phase == "ttft":
            if self.mode == "open_loop":  # plus half of the iteration it arrives in
                return [*prefill, (decode, 0.5)]
            return prefill
        if phase == "tpot":
            return [(decode, 1.0)]
        if self.mode in ("static",) or eng.scheduling == "static":
            return [*prefill, (decode, steps)]
        # continuous, throughput: L_out mixed iterations produce b * L_out tokens
        return [(decode, l_out)]

    def _closed_loop(self, theta: np.ndarray, share: float) -> Phases:
        """N clients, b of them running (what the KV cache holds). They start in lockstep: the first wave's b
        prompts are prefilled together in chunks of the token budget, a request waiting for the chunks before its
        own, then decoded together. Chunked prefill staggers their finishes, so later waves run desynchronised, a
        steady state: every iteration decodes ~b sequences and mixes in b * L_in / L_out prompt tokens, a new
        prompt is prefilled beside b - 1 decodes, and clients beyond b wait for running requests to finish. With
        T prompts in the run the first wave is b / T of the requests (none of them when T is not stated)."""
        s, eng, b = self.shape, self.engine, np.array([self.batch])
        l_in, l_out = float(s.input_tokens[0]), float(s.output_tokens[0])
        phase, q = PHASE[self.metric], QUANTILE_OF.get(self.statistic)
        first = min(self.batch / self.prompts, 1.0) if np.isfinite(self.prompts) else 0.0
        work, chunks = prefill_phases(s, b, eng.token_budget)[0]
        decode = s.work(b, 0.0, 0.0)
        p = self.batch * l_in / max(l_out, 1.0)
        mixed = s.work(b, p, p * l_in / 2.0, runs=np.ones(1))
        own = prefill_phases(s, np.array([1.0]), eng.chunk_tokens, decode_seqs=max(self.batch - 1.0, 0.0))
        if phase == "throughput":
            return [(work, chunks * first), (decode, max(l_out - 1.0, 0.0) * first), (mixed, l_out * (1.0 - first))]
        if phase == "tpot":
            return [(decode, first), (mixed, 1.0 - first)]
        queued = max(self.clients / self.batch - 1.0, 0.0)  # running requests a waiting client waits for, each
        # in the steady state prompts arrive at b / E2E per second and queue for the token budget (M/D/1 over their
        # prefill, Pollaczek-Khinchine; the wait as a multiple of the own prefill, at the current coefficients)
        own_s = float(phases_time_s(own, theta, share)[0])
        e2e_s = own_s + (l_out - 1.0) * float(phases_time_s([(mixed, 1.0)], theta, share)[0])
        rho = min(self.batch / max(e2e_s, 1e-12) * own_s, 0.95)
        ahead = rho / (2.0 * (1.0 - rho))
        if q is None:  # the mean over both kinds of request
            steady = [*own, *[(w, k * ahead) for w, k in own], (mixed, 0.5)] + [(w, k * queued) for w, k in own] \
                + [(mixed, (l_out - 1.0) * queued)]
            return [(work, np.maximum(0.5 * chunks, 1.0) * first)] + [(w, k * (1.0 - first)) for w, k in steady]
        if first >= 1.0 - q:  # the quantile lies among the first wave's requests, at its place in the wave
            return [(work, np.maximum((1.0 - (1.0 - q) / first) * chunks, 1.0))]
        waves = float(np.ceil(queued)) if q > 0.5 else queued
        return [*own, (mixed, 1.0)] + [(w, k * waves) for w, k in own] + [(mixed, (l_out - 1.0) * waves)]


def row_model(row: pd.Series) -> RowModel | None:
    """The iterations of one measurement row; None when the model, GPU or engine is unknown, or the weights do
    not fit the GPUs (layer-split or weight-offloaded runs the planner does not describe)."""
    engine = engine_of(row["engine"])
    try:
        model, spec = find_model(str(row["model"])), find_gpu(str(row["gpu"]))
    except PlannerError:
        return None
    if engine is None:
        return None
    dtype = str(row["dtype"])
    kv_dtype = str(row["kv_dtype"]) if isinstance(row.get("kv_dtype"), str) and row["kv_dtype"] else dtype
    kv_dtype = "fp16" if kv_dtype in ("int4", "int8") else kv_dtype
    tp, l_in, l_out = int(row["gpu_count"]), float(row["input_tokens"]), float(row["output_tokens"])
    if weight_bytes(model, dtype) / tp > spec.memory_gib * GIB * MEMORY_UTILIZATION:
        return None
    mode = serving_mode(row)
    hw = Hardware.from_specs([spec], dtype)
    shape = Shape(model, hw, dtype, kv_dtype, np.array([float(tp)]), np.array([max(l_in, 1.0)]),
                  np.array([max(l_out, 1.0)]), np.array([0.0]))
    usable = spec.memory_gib * GIB * MEMORY_UTILIZATION - weight_bytes(model, dtype) / tp
    kv_batch = float(max(1, usable // max(model.kv_bytes_per_token(kv_dtype) * (l_in + l_out) / tp, 1.0)))
    clients = float("nan")
    if mode == "static":
        batch = float(row["batch_size"])
    elif mode == "closed_loop":  # more clients than the KV cache holds queue for it
        clients = float(row["concurrency"])
        batch = min(clients, kv_batch)
    elif mode == "saturated":
        # in the steady state each iteration carries the running decodes and the prompts that replace them,
        # b (1 + L_in / L_out) tokens, which the engine's token budget bounds
        budget_batch = engine.token_budget * l_out / max(l_in + l_out, 1.0)
        batch = max(1.0, min(float(SATURATED_BATCH_CAP), kv_batch, budget_batch))
    else:
        batch = float("nan")
    rate = float(row["request_rate_per_s"]) if mode == "open_loop" else 0.0
    metric, value = str(row["metric"]), float(row["value"])
    b = 1.0 if mode in ("closed_loop", "open_loop") and PHASE[metric] == "ttft" else batch
    if metric == "prefill_tokens_per_s":
        time = b * l_in / value
    elif metric == "decode_tokens_per_s":
        time = (b if np.isfinite(b) else 1.0) / value
    elif metric in ("output_tokens_per_s", "tokens_per_s"):
        if mode == "open_loop":
            return None  # an open loop's throughput is its arrival rate, not a timing
        tokens = l_out if metric == "output_tokens_per_s" else l_in + l_out
        time = batch * tokens / value
    else:
        time = value
    stat = row.get("statistic", "mean")
    return RowModel(shape, engine, mode, metric, time, batch, rate, stat if isinstance(stat, str) and stat else "mean",
                    clients if np.isfinite(clients) else batch, float(row.get("num_prompts", np.nan)))


@dataclass(frozen=True)
class Dataset:
    """The usable rows and their iteration models, aligned."""

    rows: pd.DataFrame
    models: list[RowModel]

    @property
    def measured(self) -> np.ndarray:
        return np.array([m.measured_time_s for m in self.models])

    def subset(self, idx: np.ndarray) -> Dataset:
        return Dataset(self.rows.iloc[idx].reset_index(drop=True), [self.models[i] for i in idx])


def dataset(frame: pd.DataFrame) -> Dataset:
    kept, models = [], []
    for i, row in frame.iterrows():
        m = row_model(row)
        if m is not None:
            kept.append(i)
            models.append(m)
    rows = frame.loc[kept].reset_index(drop=True)
    rows["serving_mode"] = [m.mode for m in models]
    rows["profile"] = [m.engine.engine for m in models]
    return Dataset(rows, models)


def predict_times(data: Dataset, thetas: np.ndarray, share: float = GEMM_UNHIDDEN_SHARE) -> np.ndarray:
    """Predicted time of every row under per-row coefficients (rows x 6); ``share`` is the GEMM's unhidden share
    (``roofline.gemm_parts``; 0 for the pure-roofline baselines)."""
    return np.array([float(phases_time_s(m.phases(th, share), th, share)[0]) for m, th in zip(data.models, thetas)])


def linear_system(data: Dataset, thetas: np.ndarray, share: float = GEMM_UNHIDDEN_SHARE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(A, c) with predicted time = A @ theta + c, linearised at ``thetas`` (rows x 6)."""
    A, c = [], []
    for m, th in zip(data.models, thetas):
        a, k = features(m.phases(th, share), th, share)
        A.append(np.asarray(a).reshape(-1)[:6])
        c.append(float(np.asarray(k).reshape(-1)[0]))
    return np.array(A), np.array(c)


def metric_error(data: Dataset, predicted_time: np.ndarray) -> np.ndarray:
    """Absolute % error in the unit the metric was published in (a throughput is scored as a throughput)."""
    is_rate = data.rows["metric"].isin(RATE_METRICS).to_numpy()
    measured = data.measured
    pred = np.where(is_rate, measured / predicted_time, predicted_time / measured)
    return 100.0 * np.abs(pred - 1.0)
