"""The memory and latency model against figures computed by hand from the model cards and GPU datasheets.

Every expected number below is worked out from config.json-style shapes (layers, heads, head_dim, ...) and the
datasheet rows in catalogs/gpus.csv, not read back from the engine.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from solver.catalog import find_gpu, find_model
from solver.errors import UnknownNameError
from solver.perf import kv_cache_bytes, weight_bytes
from solver.roofline import gemm_weight_bytes as decode_weight_bytes
from solver.predict import predict

GIB = 2**30
UTIL = 0.9  # default gpu_memory_utilization
CHUNK = 8192  # default prefill chunk


def hand_activation_bytes(*, batch, input_tokens, hidden, intermediate, gated, experts_per_token, vocab, tp=1):
    """Documented activation peak: chunk tokens x (4h + 2 x active FFN width) x 2 B / tp + batch x vocab x 4 B."""
    chunk = min(batch * input_tokens, CHUNK)
    ffn_width = (2 if gated else 1) * intermediate * experts_per_token
    return chunk * (4 * hidden + 2 * ffn_width) * 2 / tp + batch * vocab * 4


# ---- weights and KV: MHA, GQA, MoE ---------------------------------------------------------------------------


def test_opt_2_7b_mha_sizes():
    m = find_model("opt-2.7b")
    # MHA: 32 heads of 80 = hidden 2560; KV per token = 2 (K,V) x 32 layers x 32 kv heads x 80 x 2 bytes
    assert m.num_key_value_heads == m.num_attention_heads == 32
    assert m.kv_bytes_per_token("fp16") == 2 * 32 * 32 * 80 * 2 == 327_680
    # published parameter count 2,651,596,800 -> fp16 weights 5,303,193,600 bytes
    assert weight_bytes(m, "fp16") == 5_303_193_600
    # architecture check: 32 x (4 h^2 attention + 2 h x 4h ReLU FFN) + tied embedding = 2,645,278,720; the
    # published count is larger only by biases, norms and the learned position table (< 0.3 %)
    arch = 32 * (4 * 2560**2 + 2 * 2560 * 10240) + 50272 * 2560
    assert arch == 2_645_278_720
    assert 0 < m.total_params - arch < 0.003 * m.total_params
    # batch KV: 8 sequences of 1024 + 256 tokens
    assert float(kv_cache_bytes(m, "fp16", np.array([8]), np.array([1280]))[0]) == 327_680 * 8 * 1280


def test_llama_3_1_8b_gqa_sizes():
    m = find_model("llama-3.1-8b")
    assert m.kv_bytes_per_token("fp16") == 2 * 32 * 8 * 128 * 2 == 131_072
    # GQA: 4x smaller than an MHA model with the same 32 query heads
    assert m.kv_bytes_per_token("fp16") * 4 == 2 * 32 * 32 * 128 * 2
    assert m.kv_bytes_per_token("int8") == 65_536
    assert weight_bytes(m, "fp16") == 8_030_261_248 * 2
    kv = kv_cache_bytes(m, "fp16", np.array([1, 16]), np.array([4096, 4096]))
    assert kv.tolist() == [131_072 * 4096, 131_072 * 16 * 4096]


def test_mixtral_moe_sizes():
    m = find_model("mixtral-8x7b")
    assert m.is_moe and m.num_experts == 8 and m.num_experts_per_token == 2
    attn = 2 * 4096 * 4096 + 2 * 4096 * (8 * 128)  # Q,O: h x h;  K,V: h x kv_dim (8 kv heads of 128)
    expert = 3 * 4096 * 14336  # SwiGLU w1, w2, w3
    assert attn == 41_943_040 and expert == 176_160_768
    # total: all 8 experts resident + untied embeddings + router and norms = published 46,702,792,704
    total_arch = 32 * (attn + 8 * expert) + 2 * 32000 * 4096
    router_and_norms = 32 * 4096 * 8 + 2 * 32 * 4096 + 4096
    assert total_arch + router_and_norms == 46_702_792_704 == m.total_params
    assert weight_bytes(m, "fp16") == 2 * 46_702_792_704
    # active per token: attention + 2 of 8 experts per layer, plus the LM head = 12.75 B ("about 12.9 B active"
    # in the model card counts the input embedding too)
    active = 32 * (attn + 2 * expert) + 32000 * 4096
    assert active == 12_747_538_432 == m.matmul_params_per_token
    assert abs(active + 32000 * 4096 - 12.9e9) < 0.05e9
    # decode at batch 1 streams the non-expert weights plus 2/8 of the experts (not all 46.7 B)
    expert_total = 32 * 8 * expert
    dense = m.total_params - 32000 * 4096 - expert_total
    b1 = float(decode_weight_bytes(m, "fp16", np.array([1]))[0])
    assert b1 == pytest.approx(2 * (dense + expert_total * 2 / 8), rel=1e-12)
    # at a large batch essentially every expert is touched: 1 - (6/8)^256 ~ 1
    b256 = float(decode_weight_bytes(m, "fp16", np.array([256]))[0])
    assert b256 == pytest.approx(2 * (dense + expert_total), rel=1e-9)
    assert m.kv_bytes_per_token("fp16") == 2 * 32 * 8 * 128 * 2


@pytest.mark.parametrize("name", ["opt-2.7b", "llama-3.1-8b", "mixtral-8x7b"])
def test_quantised_weights_shrink(name):
    m = find_model(name)
    fp16 = weight_bytes(m, "fp16")
    assert weight_bytes(m, "int8") == fp16 / 2
    assert weight_bytes(m, "fp8") == fp16 / 2
    assert weight_bytes(m, "int4") == fp16 / 4
    assert weight_bytes(m, "fp32") == fp16 * 2


def test_int8_prediction_saves_half_the_weight_memory():
    """End to end: int8 weights (KV stays fp16) cut GPU memory by exactly half the fp16 weight bytes."""
    kw = dict(model="llama-3.1-8b", gpu="A100-80GB", batch_size=4, input_tokens=512, output_tokens=128,
              calibration="none")
    fp16 = predict(dtype="fp16", **kw)
    int8 = predict(dtype="int8", **kw)
    int4 = predict(dtype="int4", **kw)
    assert int8.kv_dtype == "fp16"
    weights = 8_030_261_248 * 2
    assert (fp16.gpu_mem_gib - int8.gpu_mem_gib) * GIB == pytest.approx(weights / 2, rel=1e-9)
    assert (fp16.gpu_mem_gib - int4.gpu_mem_gib) * GIB == pytest.approx(weights * 3 / 4, rel=1e-9)


# ---- KV offloading needed to fit -----------------------------------------------------------------------------

OFFLOAD_CASES = [
    # model, gpu, GiB, batch, in, out, hidden, intermediate, gated, experts/token, vocab, weight bytes, kv/token
    ("llama-3.1-8b", "L4", 24, 32, 2048, 2048, 4096, 14336, True, 1, 128256, 8_030_261_248 * 2, 131_072),
    ("opt-2.7b", "T4", 16, 64, 1024, 1024, 2560, 10240, False, 1, 50272, 5_303_193_600, 327_680),
    ("mixtral-8x7b", "H200", 141, 128, 2048, 2048, 4096, 14336, True, 2, 32000, 2 * 46_702_792_704, 131_072),
]


@pytest.mark.parametrize("case", OFFLOAD_CASES, ids=[c[0] for c in OFFLOAD_CASES])
def test_min_offload_ratio_by_hand(case):
    model, gpu, gib, batch, inp, out, h, inter, gated, k, vocab, weights, kv_tok = case
    usable = gib * GIB * UTIL
    act = hand_activation_bytes(batch=batch, input_tokens=inp, hidden=h, intermediate=inter, gated=gated,
                                experts_per_token=k, vocab=vocab)
    kv = kv_tok * batch * (inp + out)
    available = usable - weights - act
    expected = 1 - available / kv
    assert 0.1 < expected < 0.9  # the cases are chosen to need partial offloading

    kw = dict(model=model, gpu=gpu, batch_size=batch, input_tokens=inp, output_tokens=out, calibration="none")
    auto = predict(**kw)
    assert auto.fits
    # predict picks the planner's offload level: the smallest 10 % step at or above the exact minimum
    assert auto.offload_ratio == pytest.approx(math.ceil(expected * 10) / 10, abs=1e-9)
    assert auto.gpu_mem_gib * GIB <= usable * (1 + 1e-9)
    assert auto.gpu_mem_usable_gib * GIB == pytest.approx(usable, rel=1e-12)
    at = predict(offload_ratio=round(expected + 1e-4, 6), **kw)
    below = predict(offload_ratio=expected - 0.01, **kw)
    assert at.fits and at.gpu_mem_gib * GIB <= usable
    assert not below.fits and below.gpu_mem_gib * GIB > usable
    assert "offload" in below.why


def test_no_offload_needed_when_kv_fits():
    p = predict(model="llama-3.1-8b", gpu="A100-80GB", batch_size=1, input_tokens=512, output_tokens=128,
                calibration="none")
    assert p.fits and p.offload_ratio == 0.0


def test_model_larger_than_gpu_does_not_fit():
    p = predict(model="llama-3.1-70b", gpu="L4", batch_size=1, input_tokens=128, output_tokens=128,
                calibration="none")
    assert not p.fits and p.offload_ratio is None and p.tpot_s is None


# ---- latency rooflines -------------------------------------------------------------------------------------


def test_decode_step_7b_fp16_is_weight_streaming_bound():
    """Batch-1 decode of a 7B FP16 model is memory-bound: one pass over the weights at HBM bandwidth."""
    m = find_model("llama-2-7b")
    bw = 2039e9  # A100-80GB SXM, catalogs/gpus.csv
    weights = 6_738_415_616 * 2
    # the input embedding is a row gather, not a stream: a decode step reads the other weights
    streamed = weights - 32000 * 4096 * 2
    p = predict(model="llama-2-7b", gpu="A100-80GB", batch_size=1, input_tokens=128, output_tokens=128,
                calibration="none")
    assert m.total_params == 6_738_415_616
    assert 1.0 * streamed / bw <= p.tpot_s <= 1.3 * weights / bw
    assert 0.97 * weights / bw <= p.tpot_s


def test_prefill_is_compute_bound_at_large_batch():
    params, peak = 8_030_261_248, 312e12  # Llama-3.1-8B on A100-80GB, dense FP16 tensor peak
    kw = dict(model="llama-3.1-8b", gpu="A100-80GB", input_tokens=2048, output_tokens=1, calibration="none")
    p32 = predict(batch_size=32, **kw)
    tokens = 32 * 2048
    assert p32.ttft_s == pytest.approx(2 * params * tokens / peak, rel=0.30)
    # compute-bound: doubling the batch doubles the prefill time
    p64 = predict(batch_size=64, **kw)
    assert p64.ttft_s / p32.ttft_s == pytest.approx(2.0, rel=0.1)
    # whereas a one-token prefill is bound by reading the weights once
    p1 = predict(model="llama-3.1-8b", gpu="A100-80GB", batch_size=1, input_tokens=1, output_tokens=1,
                 calibration="none")
    assert p1.ttft_s == pytest.approx(params * 2 / 2039e9, rel=0.1)


def test_tensor_parallel_helps_less_than_linearly():
    kw = dict(model="llama-3.1-8b", gpu="A100-80GB", batch_size=16, input_tokens=1024, output_tokens=256,
              calibration="none")
    tp1 = predict(gpu_count=1, **kw)
    tp2 = predict(gpu_count=2, **kw)
    assert tp2.tpot_s < tp1.tpot_s
    assert tp2.tpot_s > tp1.tpot_s / 2  # all-reduce communication keeps it above a perfect split
    assert tp2.ttft_s < tp1.ttft_s


def test_offloading_raises_tpot():
    kw = dict(model="llama-3.1-8b", gpu="L4", batch_size=8, input_tokens=1024, output_tokens=256,
              calibration="none")
    r0, r5, r9 = (predict(offload_ratio=r, **kw) for r in (0.0, 0.5, 0.9))
    assert r0.fits and r5.fits and r9.fits
    assert r0.tpot_s < r5.tpot_s < r9.tpot_s
    # the extra time per step is at least the offloaded KV read over the host link (PCIe 4.0 x16, 32 GB/s peak)
    ctx = 1024 + 256 / 2
    kv_moved = 0.5 * 131_072 * 8 * ctx
    assert r5.tpot_s - r0.tpot_s >= kv_moved / 32e9 * 0.9
    assert r5.gpu_mem_gib < r0.gpu_mem_gib


# ---- GPU names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["A100-80GB", "a100 80gb", "NVIDIA A100 80GB", "nvidia-a100-80gb", "A100 80GB"])
def test_gpu_names_match_forgivingly(name):
    spec = find_gpu(name)
    assert spec.gpu == "A100-80GB" and spec.memory_gib == 80


def test_gpu_name_variants_resolve_to_the_right_card():
    assert find_gpu("a100").gpu == "A100"  # the 40 GB part, not the 80 GB one
    assert find_gpu("Tesla T4").gpu == "T4"
    assert find_gpu("H100 SXM").gpu == "H100"
    p = predict(model="llama-3.2-1b", gpu="nvidia h100", input_tokens=64, output_tokens=8, calibration="none")
    assert p.gpu == "H100"


def test_unknown_gpu_lists_close_matches():
    with pytest.raises(UnknownNameError) as info:
        find_gpu("A1000")
    message = str(info.value)
    assert "A1000" in message and "did you mean" in message and "A100" in message
    with pytest.raises(UnknownNameError, match="did you mean.*H100"):
        predict(model="llama-3.2-1b", gpu="H1000", input_tokens=64, output_tokens=8, calibration="none")


GRID = [("opt-2.7b", "g4dn.xlarge", 32, 1024, 128), ("llama-3.1-8b", "g5.xlarge", 16, 2048, 256),
        ("llama-3.1-8b", "g6e.xlarge", 64, 512, 512), ("qwen2.5-7b", "p4d.24xlarge", 8, 4096, 128)]


@pytest.mark.parametrize("model,instance,batch,inp,out", GRID)
@pytest.mark.parametrize("mode", ["offline", "online"])
def test_predict_and_planner_give_the_same_numbers(model, instance, batch, inp, out, mode):
    """One code path: the planner's candidate row and predict agree on offload, latency and throughput."""
    from solver.candidates import build_candidates
    from solver.scenario import resolve
    from solver.schema import Scenario

    wl = {"name": "w", "model": model, "mode": mode, "input_tokens": inp, "output_tokens": out,
          "batch_sizes": [batch]}
    wl |= {"num_requests": 1000, "deadline_hours": 1000.0} if mode == "offline" else {"request_rate_per_s": 1.0}
    sc = Scenario(workloads=[wl], instance_types=[instance], regions=["us-east-1"], settings={"max_tensor_parallel": 1})
    resolved = resolve(sc)
    cands = build_candidates(sc, resolved.instances, resolved.models, resolved.calibration, prune=False)
    rows = cands.table[(cands.table["tensor_parallel"] == 1) & (cands.table["pricing"] == "on_demand")]
    row = rows.sort_values("offload_ratio").iloc[0]
    p = predict(model=model, instance=instance, gpu_count=1, batch_size=batch, input_tokens=inp, output_tokens=out)
    assert p.fits and p.offload_ratio == pytest.approx(row["offload_ratio"])
    if mode == "offline":
        assert p.ttft_s == pytest.approx(row["ttft_s"], rel=1e-9)
        assert p.tpot_s == pytest.approx(row["tpot_s"], rel=1e-9)
        per_vm = row["requests_per_s_per_vm"] / row["replicas_per_vm"]
        assert batch / p.e2e_s == pytest.approx(per_vm, rel=1e-9)
    else:
        assert p.online_requests_per_s == pytest.approx(row["requests_per_s_per_vm"] / row["replicas_per_vm"],
                                                        rel=1e-9)


def test_repeated_rows_are_estimated_once_and_alike():
    """``estimate`` computes each distinct replica row once: a table that repeats rows (every VM size of a GPU,
    every demand of the same shape) gets, row for row, what the rows get on their own."""
    from solver.calibration import PRIORS
    from solver.perf import Hardware, distinct_rows, estimate, make_serving

    gpus = np.array(["H100", "L4", "H100", "H100", "L4"])
    batch, l_in = np.array([64.0, 32.0, 64.0, 128.0, 32.0]), np.array([1024.0, 512.0, 1024.0, 1024.0, 512.0])
    first, inverse = distinct_rows(gpus == "H100", batch, l_in)
    assert len(first) == 3 and (inverse[[0, 2]] == inverse[0]).all() and inverse[1] == inverse[4]
    bounds = {"ttft": np.full(5, 2.0), "tpot": np.full(5, 0.05), "e2e": np.full(5, np.nan)}

    def run(rows):
        serving = make_serving(PRIORS, engine="vllm", dtype="bf16", mode="online", percentiles={}, gpus=gpus[rows],
                               bounds={k: v[rows] for k, v in bounds.items()}, confidence=0.5)
        return estimate(find_model("llama-3.1-8b"), Hardware.for_rows(gpus[rows], "bf16", find_gpu), dtype="bf16",
                        kv_dtype="bf16", batch=batch[rows], input_tokens=l_in[rows], output_tokens=np.full(len(rows), 256.0),
                        tp=np.ones(len(rows)), offload_ratio=0.0, serving=serving)

    together = run(np.arange(5))
    for k in range(5):
        alone = run(np.array([k]))
        assert together.requests_per_s[k] == alone.requests_per_s[0]
        assert together.ttft_s[k] == alone.ttft_s[0] and together.tpot_s[k] == alone.tpot_s[0]
