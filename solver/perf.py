"""The model of the machine: memory, KV offloading and latency, vectorised over candidates.

Structure follows the InferSave paper (arXiv 2504.11816, Eqs. 4-7) with a serving engineer's corrections:

* memory = weights + KV cache (GQA-aware: 2 * layers * kv_heads * head_dim * bytes per token) + activation peak;
  the part of the KV that does not fit stays in host memory (offload ratio ``r``), but at least one layer's KV
  must be resident for attention to run (paper Algorithm 1, case 2);
* prefill and decode times are rooflines per GPU: max(FLOPs / peak, bytes / HBM bandwidth). The paper's decode
  term counts FLOPs only and overshoots throughput 3-12x because decode is bandwidth-bound;
* tensor parallelism divides FLOPs and bytes by ``tp`` and adds two ring all-reduces per layer;
* the CTCF corrects the theoretical compute time per GPU and phase: ``alpha * t + beta * layers`` (paper Eq. 7
  with the offset per layer, so it transfers across model depths);
* offloaded KV moves over the host link: written during prefill overlapped with compute (Eq. 5, max) and read
  back every decode step before attention (Eq. 6, additive).

All functions are pure and broadcast over numpy arrays, so one call evaluates a whole candidate table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .schema import DTYPE_BYTES, GPUSpec, ModelCard

GB = 1e9
GIB = 2**30
# Ring all-reduce start-up cost per call (NCCL small-message latency is of order 10 us on NVLink);
# a modelling assumption, absorbed by the CTCF offset where measurements exist.
ALLREDUCE_LATENCY_S = 10e-6
# Pinned-memory copies reach about three quarters of the PCIe theoretical rate (e.g. ~24 of 32 GB/s on gen4).
HOST_LINK_EFFICIENCY = 0.75
ACTIVATION_BYTES = 2.0
LOGIT_BYTES = 4.0


@dataclass(frozen=True)
class PhaseCoefficients:
    """CTCF for one GPU: measured = alpha * theoretical + beta_per_layer_s * layers, per phase, plus a
    factor on the all-reduce time of tensor parallelism."""

    prefill_alpha: float = 1.0
    prefill_beta_per_layer_s: float = 0.0
    decode_alpha: float = 1.0
    decode_beta_per_layer_s: float = 0.0
    comm_alpha: float = 1.0  # scales the tensor-parallel all-reduce time (achieved vs nominal link rate)


@dataclass(frozen=True)
class Calibration:
    """Per-GPU CTCF coefficients; GPUs without their own fit use ``default``."""

    per_gpu: dict[str, PhaseCoefficients] = field(default_factory=dict)
    default: PhaseCoefficients = PhaseCoefficients()
    source: str = "uncalibrated roofline"

    def for_gpu(self, gpu: str) -> PhaseCoefficients:
        return self.per_gpu.get(gpu, self.default)


UNCALIBRATED = Calibration()


@dataclass(frozen=True)
class Hardware:
    """Per-GPU figures as arrays (one entry per candidate) so the model broadcasts over a table."""

    memory_bytes: np.ndarray
    hbm_bytes_per_s: np.ndarray
    peak_flops: np.ndarray
    host_link_bytes_per_s: np.ndarray
    interconnect_bytes_per_s: np.ndarray

    @classmethod
    def for_rows(cls, gpus: np.ndarray, dtype: str, lookup) -> Hardware:
        """Per-row hardware for a column of GPU names, looking each distinct name up once."""
        names, inverse = np.unique(np.asarray(gpus, dtype=object).astype(str), return_inverse=True)
        unique = cls.from_specs([lookup(n) for n in names], dtype)
        return cls(**{k: getattr(unique, k)[inverse] for k in cls.__dataclass_fields__})

    @classmethod
    def from_specs(cls, specs: list[GPUSpec], dtype: str | list[str]) -> Hardware:
        dtypes = [dtype] * len(specs) if isinstance(dtype, str) else dtype
        return cls(
            memory_bytes=np.array([s.memory_gib * GIB for s in specs]),
            hbm_bytes_per_s=np.array([s.hbm_bandwidth_gb_s * GB for s in specs]),
            peak_flops=np.array([s.peak_tflops(d) * 1e12 for s, d in zip(specs, dtypes)]),
            host_link_bytes_per_s=np.array([s.host_link_gb_s * GB * HOST_LINK_EFFICIENCY for s in specs]),
            interconnect_bytes_per_s=np.array([s.interconnect_gb_s * GB for s in specs]),
        )


def weight_bytes(model: ModelCard, dtype: str) -> float:
    """All parameters at the weight precision (MoE: every expert is resident)."""
    return model.total_params * DTYPE_BYTES[dtype]


def kv_cache_bytes(model: ModelCard, kv_dtype: str, batch: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """KV cache of ``batch`` sequences of ``tokens`` tokens each, all layers."""
    return model.kv_bytes_per_token(kv_dtype) * np.asarray(batch, float) * np.asarray(tokens, float)


def activation_peak_bytes(model: ModelCard, batch: np.ndarray, input_tokens: np.ndarray, chunk_tokens: int,
                          tp: np.ndarray) -> np.ndarray:
    """Peak transient memory of one prefill chunk: hidden states and FFN intermediates, plus fp32 logits.

    tokens_in_chunk * (4h + 2 * active FFN width) * 2 bytes / tp  +  batch * vocab * 4 bytes.
    """
    chunk = np.minimum(np.asarray(batch, float) * input_tokens, chunk_tokens)
    ffn_width = (2 if model.ffn_gated else 1) * model.intermediate_size * model.num_experts_per_token
    hidden = chunk * (4 * model.hidden_size + 2 * ffn_width) * ACTIVATION_BYTES / tp
    return hidden + np.asarray(batch, float) * model.vocab_size * LOGIT_BYTES


def decode_weight_bytes(model: ModelCard, dtype: str, batch: np.ndarray) -> np.ndarray:
    """Weights streamed per decode step: the embedding lookup is skipped; for MoE only the experts the batch
    routes to are read, an expected fraction 1 - (1 - k/E)^batch of them."""
    lookup = model.vocab_size * model.hidden_size if not model.tie_word_embeddings else 0
    dense = model.total_params - lookup - model.expert_params_total
    if model.is_moe:
        touched = 1.0 - (1.0 - model.num_experts_per_token / model.num_experts) ** np.asarray(batch, float)
    else:
        touched = np.zeros_like(np.asarray(batch, float))
    return (dense + touched * model.expert_params_total) * DTYPE_BYTES[dtype]


def prefill_theory_s(model: ModelCard, dtype: str, hw: Hardware, batch: np.ndarray, input_tokens: np.ndarray,
                     tp: np.ndarray) -> np.ndarray:
    """Roofline prefill time per GPU: max(2*P_active*T + 2*B*L_in^2*d_attn*layers (causal), weights) / tp."""
    tokens = np.asarray(batch, float) * input_tokens
    d_attn = model.num_attention_heads * model.head_dim
    flops = 2.0 * model.matmul_params_per_token * tokens
    flops = flops + 2.0 * np.asarray(batch, float) * np.square(input_tokens, dtype=float) * d_attn * model.num_layers
    bytes_moved = weight_bytes(model, dtype)
    return np.maximum(flops / hw.peak_flops, bytes_moved / hw.hbm_bytes_per_s) / tp


def decode_context(input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """Average context length over the decode steps (FlexGen's s + n/2)."""
    return np.asarray(input_tokens, float) + np.asarray(output_tokens, float) / 2.0


def decode_theory_s(model: ModelCard, dtype: str, kv_dtype: str, hw: Hardware, batch: np.ndarray,
                    context: np.ndarray, tp: np.ndarray, offload_ratio: np.ndarray | float = 0.0) -> np.ndarray:
    """Roofline decode step per GPU: max(FLOPs, weights read + resident KV read) / tp.

    FLOPs = 2*P_active*B + 4*B*ctx*d_attn*layers; bytes = weights + (1 - r) * B*ctx*kv_per_token.
    """
    batch = np.asarray(batch, float)
    d_attn = model.num_attention_heads * model.head_dim
    flops = 2.0 * model.matmul_params_per_token * batch + 4.0 * batch * context * d_attn * model.num_layers
    kv_read = (1.0 - np.asarray(offload_ratio, float)) * kv_cache_bytes(model, kv_dtype, batch, context)
    bytes_moved = decode_weight_bytes(model, dtype, batch) + kv_read
    return np.maximum(flops / hw.peak_flops, bytes_moved / hw.hbm_bytes_per_s) / tp


def allreduce_s(model: ModelCard, hw: Hardware, tokens: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """Two ring all-reduces of tokens*h activations per layer; zero without tensor parallelism."""
    tp = np.asarray(tp, float)
    message = np.asarray(tokens, float) * model.hidden_size * ACTIVATION_BYTES
    one = 2.0 * (tp - 1.0) / tp * message / hw.interconnect_bytes_per_s + ALLREDUCE_LATENCY_S
    return np.where(tp > 1, 2.0 * model.num_layers * one, 0.0)


def ctcf(theory_s: np.ndarray, alpha: np.ndarray | float, beta_per_layer_s: np.ndarray | float,
         layers: int) -> np.ndarray:
    """Paper Eq. 7: calibrated compute time = alpha * theoretical + beta (here beta per layer)."""
    return np.asarray(alpha) * theory_s + np.asarray(beta_per_layer_s) * layers


@dataclass(frozen=True)
class Estimate:
    """Per-candidate predictions (arrays); times in seconds, memory in bytes per GPU unless named."""

    weights_per_gpu: np.ndarray
    kv_total: np.ndarray
    kv_resident_per_gpu: np.ndarray
    activation_per_gpu: np.ndarray
    gpu_mem_required: np.ndarray
    gpu_mem_usable: np.ndarray
    min_offload_ratio: np.ndarray
    host_kv_bytes: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    tokens_per_s: np.ndarray
    output_tokens_per_s: np.ndarray
    requests_per_s: np.ndarray


def estimate(model: ModelCard, hw: Hardware, *, dtype: str, kv_dtype: str, batch: np.ndarray,
             input_tokens: np.ndarray, output_tokens: np.ndarray, tp: np.ndarray,
             offload_ratio: np.ndarray | float, coefficients: dict[str, np.ndarray],
             gpu_memory_utilization: float = 0.9, prefill_chunk_tokens: int = 8192) -> Estimate:
    """Memory and latency of one engine replica (``tp`` GPUs) serving ``batch`` sequences at once.

    ``coefficients`` holds CTCF arrays ``prefill_alpha``, ``prefill_beta``, ``decode_alpha``, ``decode_beta``,
    ``comm_alpha``.
    """
    batch = np.asarray(batch, float)
    tp = np.asarray(tp, float)
    r = np.asarray(offload_ratio, float)
    seq = np.asarray(input_tokens, float) + output_tokens
    kv_total = kv_cache_bytes(model, kv_dtype, batch, seq)
    weights = weight_bytes(model, dtype) / tp
    act = activation_peak_bytes(model, batch, input_tokens, prefill_chunk_tokens, tp)
    usable = hw.memory_bytes * gpu_memory_utilization
    layer_kv = kv_total / model.num_layers / tp
    resident = np.maximum((1.0 - r) * kv_total / tp, np.where(r > 0, layer_kv, 0.0))
    avail = usable - weights - act
    min_r = np.where(avail >= kv_total / tp, 0.0, 1.0 - np.maximum(avail, 0.0) * tp / np.maximum(kv_total, 1.0))
    min_r = np.where((avail < layer_kv) | (weights >= usable), np.inf, min_r)

    ctx = decode_context(input_tokens, output_tokens)
    prefill = ctcf(prefill_theory_s(model, dtype, hw, batch, input_tokens, tp), coefficients["prefill_alpha"],
                   coefficients["prefill_beta"], model.num_layers)
    prefill = prefill + coefficients["comm_alpha"] * allreduce_s(model, hw, batch * input_tokens, tp)
    kv_write = r * kv_cache_bytes(model, kv_dtype, batch, np.asarray(input_tokens, float) + 1) / tp
    ttft = np.maximum(prefill, kv_write / hw.host_link_bytes_per_s)
    step = ctcf(decode_theory_s(model, dtype, kv_dtype, hw, batch, ctx, tp, r), coefficients["decode_alpha"],
                coefficients["decode_beta"], model.num_layers)
    kv_read = r * kv_cache_bytes(model, kv_dtype, batch, ctx) / tp
    tpot = step + coefficients["comm_alpha"] * allreduce_s(model, hw, batch, tp) + kv_read / hw.host_link_bytes_per_s
    e2e = ttft + (np.asarray(output_tokens, float) - 1.0) * tpot
    return Estimate(
        weights_per_gpu=np.broadcast_to(weights, batch.shape).astype(float), kv_total=kv_total,
        kv_resident_per_gpu=resident, activation_per_gpu=act, gpu_mem_required=weights + resident + act,
        gpu_mem_usable=usable, min_offload_ratio=min_r, host_kv_bytes=r * kv_total, ttft_s=ttft, tpot_s=tpot,
        e2e_s=e2e, tokens_per_s=batch * seq / e2e, output_tokens_per_s=batch * output_tokens / e2e,
        requests_per_s=batch / e2e,
    )


def coefficient_arrays(calibration: Calibration, gpus: list[str]) -> dict[str, np.ndarray]:
    """CTCF coefficients laid out per candidate row."""
    names, inverse = np.unique(np.asarray(gpus, dtype=object).astype(str), return_inverse=True)
    if len(names) < len(gpus):
        return {k: v[inverse] for k, v in coefficient_arrays(calibration, list(names)).items()}
    coeffs = [calibration.for_gpu(g) for g in gpus]
    return {
        "prefill_alpha": np.array([c.prefill_alpha for c in coeffs]),
        "prefill_beta": np.array([c.prefill_beta_per_layer_s for c in coeffs]),
        "decode_alpha": np.array([c.decode_alpha for c in coeffs]),
        "decode_beta": np.array([c.decode_beta_per_layer_s for c in coeffs]),
        "comm_alpha": np.array([c.comm_alpha for c in coeffs]),
    }
