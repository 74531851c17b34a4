"""Per-operator roofline of one engine iteration, linear in the calibrated coefficients.

One iteration of a serving engine runs every running sequence's next decode token and, with chunked prefill,
some prompt tokens, through the model once. Its time is the sum of its operators, not the max of totals:

    t_iter = max(k_c * compute_s, k_m * weight_s)      weight GEMMs (+ prefill attention FLOPs), roofline,
           + 0.5 min(k_c * compute_s, k_m * weight_s)  of which half the shorter part is not hidden
           + k_kv * kv_s                               decode attention: resident KV bytes at its own efficiency
           + k_comm * comm_s                           tensor-parallel all-reduces (link latency + bytes)
           + host_s                                    offloaded KV read back over PCIe (paper Eq. 6, additive)
           + step_s + layer_s * layers                 engine overhead (scheduler, kernel launches)

Every weight GEMM of a dense model has the same FLOPs/byte ratio (2T / bytes per parameter for T tokens), so
the max of the summed GEMM FLOPs and bytes equals the sum of per-GEMM maxima (and so does the partial overlap).
The compute efficiency ``k_c`` is shared by prefill and large-batch decode: one GPU, one GEMM efficiency. For a
fixed choice of the GEMM branch the time is linear in ``theta = (k_c, k_m, k_kv, k_comm, step_s, layer_s)``;
this is what calibration fits (the branch is re-chosen after each fit).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .schema import DTYPE_BYTES, GPUSpec, ModelCard

GB = 1e9
GIB = 2**30
ACTIVATION_BYTES = 2.0
COEFFICIENTS = ("k_compute", "k_memory", "k_kv", "k_comm", "step_s", "layer_s")
N_COEF = len(COEFFICIENTS)
# NCCL all-reduce start-up latency per call: ~10 us inside an NVLink/NVSwitch domain; over PCIe each of the
# 2(tp-1) ring steps pays a PCIe round trip (~5 us). Nominal figures; k_comm absorbs what measurements show
# (its prior, ~2.4, is the measured nccl-tests time over this nominal one: catalogs/allreduce.csv).
NVLINK_ALLREDUCE_LATENCY_S = 10e-6
PCIE_RING_STEP_LATENCY_S = 5e-6
# Pinned-memory copies reach about three quarters of the PCIe theoretical rate (e.g. ~24 of 32 GB/s on gen4).
HOST_LINK_EFFICIENCY = 0.75
# Share of the shorter of a GEMM's compute and weight-streaming times that is not hidden under the longer one
# (prologues, epilogues, wave quantisation, operators of other intensities in the same layer): the step takes
# max(a, b) + GEMM_UNHIDDEN_SHARE * min(a, b), up to 1.5x the pure roofline at the ridge point. 0 is the pure
# roofline and 1 no overlap at all; 0.5 is the smallest value on the flat optimum of the held-out error
# (leave one source document out over catalogs/measurements/published.csv, benchmarks/prediction_accuracy.py:
# median 14.4 % at 0, 13.4 % at 0.2, 12.9 % at 0.35, 12.5 % at 0.5 and 0.7, 12.3 % at 1; online TTFT 27.0 % at
# 0, 21.7 % at 0.5).
GEMM_UNHIDDEN_SHARE = 0.5


def gemm_parts(compute_s: np.ndarray, memory_s: np.ndarray, share: float = GEMM_UNHIDDEN_SHARE
               ) -> tuple[np.ndarray, np.ndarray]:
    """The GEMM time on its compute branch and on its memory branch; the step takes the larger of the two,
    max(c, m) + share * min(c, m). Each branch is affine in both parts, which keeps the serving model's fixed
    points (``serving``) piecewise affine. ``share=0`` is the pure roofline (the baselines we compare with)."""
    return compute_s + share * memory_s, memory_s + share * compute_s


@dataclass(frozen=True)
class Hardware:
    """Per-row GPU figures (one entry per candidate) so the model broadcasts over a table."""

    memory_bytes: np.ndarray
    hbm_bytes_per_s: np.ndarray
    peak_flops: np.ndarray
    host_link_bytes_per_s: np.ndarray
    interconnect_bytes_per_s: np.ndarray
    pcie_interconnect: np.ndarray  # bool: all-reduce crosses PCIe (no NVLink)

    @classmethod
    def from_specs(cls, specs: list[GPUSpec], dtype: str | list[str]) -> Hardware:
        dtypes = [dtype] * len(specs) if isinstance(dtype, str) else dtype
        return cls(
            memory_bytes=np.array([s.memory_gib * GIB for s in specs]),
            hbm_bytes_per_s=np.array([s.hbm_bandwidth_gb_s * GB for s in specs]),
            peak_flops=np.array([s.peak_tflops(d) * 1e12 for s, d in zip(specs, dtypes)]),
            host_link_bytes_per_s=np.array([s.host_link_gb_s * GB * HOST_LINK_EFFICIENCY for s in specs]),
            interconnect_bytes_per_s=np.array([s.interconnect_gb_s * GB for s in specs]),
            pcie_interconnect=np.array([s.interconnect.lower().startswith("pcie") for s in specs]),
        )

    @classmethod
    def for_rows(cls, gpus: np.ndarray, dtype: str, lookup: Callable[[str], GPUSpec]) -> Hardware:
        """Per-row hardware for a column of GPU names, looking each distinct name up once."""
        names, inverse = factorize(gpus)
        unique = cls.from_specs([lookup(n) for n in names], dtype)
        return unique.take(inverse)

    def take(self, rows: np.ndarray) -> Hardware:
        """The figures of the given rows (an index array), in that order."""
        return Hardware(**{k: getattr(self, k)[rows] for k in Hardware.__dataclass_fields__})


def factorize(values: np.ndarray | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values as strings, each row's index into them), in order of first appearance: hashing, not
    ``np.unique``'s sort (sorting millions of GPU names cost seconds at 10,000 workloads)."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    return np.asarray(uniques, dtype=object).astype(str), np.asarray(codes, dtype=np.intp)


@dataclass(frozen=True)
class IterationWork:
    """Work of one (or a sum of) engine iteration(s), per replica, in roofline seconds at datasheet peaks."""

    compute_s: np.ndarray  # GEMM + prefill-attention FLOPs / peak / tp
    weight_s: np.ndarray  # weight bytes read / HBM bandwidth / tp
    kv_s: np.ndarray  # resident decode KV bytes read / HBM bandwidth / tp
    comm_s: np.ndarray  # all-reduce time at the nominal link rate
    host_s: np.ndarray  # offloaded KV over the host link (not calibrated: a measured copy rate)
    steps: np.ndarray  # number of iterations (carries step_s)
    layer_steps: np.ndarray  # iterations x layers (carries layer_s)



def weight_bytes(model: ModelCard, dtype: str) -> float:
    """All parameters at the weight precision (MoE: every expert is resident)."""
    return model.total_params * DTYPE_BYTES[dtype]


def gemm_weight_bytes(model: ModelCard, dtype: str, tokens: np.ndarray) -> np.ndarray:
    """Weights one forward pass over ``tokens`` tokens streams: the embedding lookup is skipped; for MoE only the
    experts the tokens route to, an expected fraction 1 - (1 - k/E)^tokens of them."""
    lookup = model.vocab_size * model.hidden_size if not model.tie_word_embeddings else 0
    dense = model.total_params - lookup - model.expert_params_total
    tokens = np.asarray(tokens, float)
    if model.is_moe:
        touched = 1.0 - (1.0 - model.num_experts_per_token / model.num_experts) ** np.maximum(tokens, 1.0)
    else:
        touched = np.zeros_like(tokens)
    return (dense + touched * model.expert_params_total) * DTYPE_BYTES[dtype]


def allreduce_call_s(message_bytes: np.ndarray | float, tp: np.ndarray | float, link_bytes_per_s: np.ndarray | float,
                     pcie: np.ndarray | bool) -> np.ndarray:
    """Nominal time of one ring all-reduce: 2(tp-1)/tp of the message over the link, plus the start-up latency
    (NVLink ~10 us flat; over PCIe every ring step pays a round trip, so it grows with tp). ``k_comm`` scales it
    to what NCCL achieves (its prior: ``calibration.allreduce_prior``)."""
    tp = np.asarray(tp, float)
    latency = np.where(pcie, 2.0 * (tp - 1.0) * PCIE_RING_STEP_LATENCY_S, NVLINK_ALLREDUCE_LATENCY_S)
    return 2.0 * (tp - 1.0) / np.maximum(tp, 1.0) * np.asarray(message_bytes, float) / link_bytes_per_s + latency


def allreduce_s(model: ModelCard, hw: Hardware, tokens: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """Two ring all-reduces of tokens x hidden activations per layer; zero without tensor parallelism."""
    tp = np.asarray(tp, float)
    message = np.asarray(tokens, float) * model.hidden_size * ACTIVATION_BYTES
    one = allreduce_call_s(message, tp, hw.interconnect_bytes_per_s, hw.pcie_interconnect)
    return np.where(tp > 1, 2.0 * model.num_layers * one, 0.0)


def iteration_work(model: ModelCard, hw: Hardware, *, dtype: str, kv_dtype: str, tp: np.ndarray,
                   decode_seqs: np.ndarray | float, decode_context_tokens: np.ndarray | float,
                   prefill_tokens: np.ndarray | float, prefill_attention_pairs: np.ndarray | float, offload_ratio: np.ndarray | float = 0.0,
                   runs: np.ndarray | None = None) -> IterationWork:
    """Roofline work of one iteration.

    Args:
        decode_seqs: sequences producing one token this iteration.
        decode_context_tokens: sum of those sequences' context lengths (KV tokens read by decode attention).
        prefill_tokens: prompt tokens processed this iteration (a chunk of one or more prompts).
        prefill_attention_pairs: sum over prefilled tokens of the context they attend to (causal: about
            L^2 / 2 for a whole prompt of L tokens).
        offload_ratio: share of each sequence's KV kept in host memory.
        runs: 1 where the iteration runs (default: where it has any token); the steady state of a replica
            always runs one, however few tokens it holds on average.
    """
    tp = np.asarray(tp, float)
    decode_seqs = np.asarray(decode_seqs, float)
    prefill_tokens = np.asarray(prefill_tokens, float)
    tokens = decode_seqs + prefill_tokens
    d_attn = model.num_attention_heads * model.head_dim
    # the LM head runs only on the tokens that are sampled: every decode token and the last token of a prompt
    lm_head = 2.0 * model.vocab_size * model.hidden_size
    body = 2.0 * (model.matmul_params_per_token - model.vocab_size * model.hidden_size)
    flops = body * tokens + lm_head * (decode_seqs + np.minimum(prefill_tokens, 1.0))
    flops = flops + 4.0 * d_attn * model.num_layers * np.asarray(prefill_attention_pairs, float)
    r = np.asarray(offload_ratio, float)
    kv_bytes = model.kv_bytes_per_token(kv_dtype) * np.asarray(decode_context_tokens, float)
    nonzero = (tokens > 0).astype(float) if runs is None else np.asarray(runs, float)
    return IterationWork(
        compute_s=flops / hw.peak_flops / tp,
        weight_s=gemm_weight_bytes(model, dtype, tokens) / hw.hbm_bytes_per_s / tp * nonzero,
        kv_s=(1.0 - r) * kv_bytes / hw.hbm_bytes_per_s / tp,
        comm_s=allreduce_s(model, hw, tokens, tp) * nonzero,
        host_s=r * kv_bytes / tp / hw.host_link_bytes_per_s,
        steps=nonzero,
        layer_steps=nonzero * model.num_layers,
    )


# A latency is a sum of iterations of a few kinds: ``[(work, how many such iterations), ...]``.
Phases = list[tuple[IterationWork, np.ndarray | float]]


def time_s(work: IterationWork, theta: np.ndarray, share: float = GEMM_UNHIDDEN_SHARE) -> np.ndarray:
    """Calibrated time of one iteration under coefficients ``theta`` (broadcast: rows x 6)."""
    theta = np.asarray(theta, float)
    gemm = np.maximum(*gemm_parts(theta[..., 0] * work.compute_s, theta[..., 1] * work.weight_s, share))
    return (gemm + theta[..., 2] * work.kv_s + theta[..., 3] * work.comm_s + work.host_s
            + theta[..., 4] * work.steps + theta[..., 5] * work.layer_steps)


def phases_time_s(phases: Phases, theta: np.ndarray, share: float = GEMM_UNHIDDEN_SHARE) -> np.ndarray:
    """Calibrated time of a sequence of iterations (each kind keeps its own roofline branch)."""
    return sum(np.asarray(count, float) * time_s(work, theta, share) for work, count in phases)


def features(phases: Phases, theta: np.ndarray, share: float = GEMM_UNHIDDEN_SHARE
             ) -> tuple[np.ndarray, np.ndarray]:
    """Linear form of ``phases_time_s``: (rows x 6 feature matrix, constant), each iteration kind on the GEMM
    branch that holds under ``theta``; exact at ``theta``, and what a least-squares fit re-linearises."""
    theta = np.asarray(theta, float)
    A, const = 0.0, 0.0
    for work, count in phases:
        cb = (theta[..., 0] * work.compute_s >= theta[..., 1] * work.weight_s).astype(float)
        n = np.asarray(count, float)
        on_c, on_m = cb + (1.0 - cb) * share, (1.0 - cb) + cb * share
        A = A + n[..., None] * np.stack([on_c * work.compute_s, on_m * work.weight_s, work.kv_s, work.comm_s,
                                         work.steps, work.layer_steps], axis=-1)
        const = const + n * work.host_s
    return np.asarray(A), np.asarray(const)
