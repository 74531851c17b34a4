#!/usr/bin/env python3
"""Measure, on one GPU, the facts InferSave's per-operator roofline model needs.

Sections (each in try/except, each with its own time budget, CSV rows written as they come):
  1. bf16 weight-GEMM throughput for Llama-3.1-8B shapes (QKV, O, gate_up, down, lm_head) vs token count M
  2. HBM bandwidth (large device-to-device copy; bytes read + written) and a read-only reduction
  3. pinned host<->device copies (H2D, D2H), plus pageable for comparison
  4. decode attention (1 query token / sequence, GQA 32q/8kv heads, head_dim 128) through SDPA backends
  5. whole model: transformers LlamaForCausalLM with Llama-3.1-8B dimensions, random bf16 weights,
     eager prefill (TTFT) and decode step (TPOT) with a DynamicCache, then decode replayed as a CUDA graph
     over a StaticCache.

Outputs (under $OUT, or --out DIR):
  device_h200.csv      whole-model rows in the catalogs/measurements/published.csv schema
  device_h200_ops.csv  operator rows: kind,shape,tokens_or_batch,context,time_s,achieved_tflops,achieved_gb_s,notes

Timing: CUDA events after warm-ups, median of >= 5 repetitions. Small kernels are timed as a CUDA graph of
n_inner back-to-back calls (so launch gaps do not count) cycling over several input copies whose total size is
several times the 60 MB L2 (so repeated calls do not read from cache); the time per call is replay time / n_inner.

--smoke runs everything at tiny sizes on the CPU (or GPU if present) in seconds, to test the logic.
"""
import argparse
import csv
import gc
import math
import os
import statistics
import time
import traceback

import torch
import torch.nn.functional as F

DATE = "2026-11-29"
MODEL = "llama-3.1-8b"
SOURCE_ID = "infersave-device-h200-2026-11-29"

MODEL_FIELDS = ["source_id", "model", "gpu", "gpu_count", "engine", "dtype", "kv_dtype", "batch_size",
                "input_tokens", "output_tokens", "metric", "value", "unit", "source", "date", "notes"]
OPS_FIELDS = ["kind", "shape", "tokens_or_batch", "context", "time_s", "achieved_tflops", "achieved_gb_s", "notes"]

T0 = time.time()
CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if CUDA else "cpu")
SUMMARY = []  # short lines printed again at the end


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


def sync():
    if CUDA:
        torch.cuda.synchronize()


def free():
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


class CsvOut:
    def __init__(self, path, fields):
        self.path, self.fields = path, fields
        with open(path, "w", newline="") as f:
            csv.DictWriter(f, fieldnames=fields).writeheader()

    def row(self, **kw):
        r = {k: kw.get(k, "") for k in self.fields}
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(r)
            f.flush()


def fmt(x, p=4):
    if x is None or x == "":
        return ""
    if isinstance(x, float):
        return f"{x:.{p}g}"
    return str(x)


def time_fn(fn, reps=7, warmup=3):
    """Median seconds of fn() over reps, after warmup calls. CUDA events on GPU, perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(reps):
        if CUDA:
            s = torch.cuda.Event(enable_timing=True)
            e = torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            ts.append(s.elapsed_time(e) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


def spread(ts):
    return (max(ts) - min(ts)) / statistics.median(ts) if ts and statistics.median(ts) > 0 else 0.0


def bench_calls(call, n_inner, reps=7, warmup=3, use_graph=True):
    """Seconds per call of call(i), i = 0..n_inner-1, run back to back; as a CUDA graph when possible.
    Returns (sec_per_call, list_of_replay_times, how)."""
    def body():
        for i in range(n_inner):
            call(i)

    how = "eager loop"
    fn = body
    g = None
    if CUDA and use_graph:
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                body()
            torch.cuda.current_stream().wait_stream(s)
            sync()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                body()
            fn = g.replay
            how = "cuda graph"
        except Exception as ex:  # fall back to eager launches
            log(f"  graph capture failed ({type(ex).__name__}: {str(ex)[:120]}); eager loop")
            g = None
            fn = body
            sync()
    med, ts = time_fn(fn, reps=reps, warmup=warmup)
    del g
    return med / n_inner, [t / n_inner for t in ts], how


class Budget:
    def __init__(self, total_s):
        self.end = T0 + total_s

    def section(self, cap_s):
        return min(self.end, time.time() + cap_s)


def left(deadline):
    return deadline - time.time()


# --------------------------------------------------------------------------------------------------
# 1. GEMMs
# --------------------------------------------------------------------------------------------------
def sec_gemm(args, ops, deadline):
    H, I, NQ, NKV, HD, V = args.hidden, args.inter, args.heads, args.kv_heads, args.head_dim, args.vocab
    shapes = [  # name, K, N  (y[M,N] = x[M,K] @ W[N,K]^T, as nn.Linear)
        ("qkv", H, (NQ + 2 * NKV) * HD),
        ("o", NQ * HD, H),
        ("gate_up", H, 2 * I),
        ("down", I, H),
        ("lm_head", H, V),
    ]
    Ms = args.gemm_m
    peak_flops, peak_bw = 990e12, 4.8e12
    for name, K, N in shapes:
        if left(deadline) < 0:
            log("gemm: out of time, skipping", name)
            break
        wbytes = N * K * 2
        ncopy = max(1, min(16, math.ceil(args.l2_rotate_bytes / wbytes)))
        Ws = [torch.randn(N, K, device=DEV, dtype=args.dtype) * 0.02 for _ in range(ncopy)]
        for M in Ms:
            if left(deadline) < 0:
                break
            try:
                x = torch.randn(M, K, device=DEV, dtype=args.dtype)
                flops = 2.0 * M * N * K
                tot_bytes = wbytes + (M * K + M * N) * 2
                est = max(flops / (0.7 * peak_flops), tot_bytes / (0.8 * peak_bw), 2e-6)
                n_inner = max(1, min(64, math.ceil(args.inner_target_s / est)))
                t, ts, how = bench_calls(lambda i: F.linear(x, Ws[i % ncopy]), n_inner,
                                         reps=args.reps, warmup=3)
                tf = flops / t / 1e12
                gbs = wbytes / t / 1e9
                note = (f"bf16 F.linear x[M,K]@W[N,K]^T; M={M} K={K} N={N}; {how} of {n_inner} calls cycling "
                        f"{ncopy} weight copies; median of {args.reps} replays; spread {spread(ts):.2%}; "
                        f"achieved_gb_s counts weight bytes only (all bytes incl. x and y: "
                        f"{tot_bytes / t / 1e9:.1f} GB/s); random normal data")
                ops.row(kind="gemm_bf16", shape=f"{name} K={K} N={N}", tokens_or_batch=M, context="",
                        time_s=fmt(t, 6), achieved_tflops=fmt(tf, 5), achieved_gb_s=fmt(gbs, 5), notes=note)
                log(f"gemm {name:8s} M={M:6d}: {t * 1e6:9.2f} us  {tf:7.1f} TFLOP/s  W {gbs:7.1f} GB/s  ({how} x{n_inner})")
                SUMMARY.append(f"gemm {name} M={M}: {t * 1e6:.1f}us {tf:.0f}TF/s {gbs:.0f}GB/s")
                del x
            except Exception as ex:
                log(f"gemm {name} M={M} FAILED: {ex}")
                ops.row(kind="gemm_bf16", shape=f"{name} K={K} N={N}", tokens_or_batch=M,
                        notes=f"FAILED: {type(ex).__name__}: {str(ex)[:200]}")
        del Ws
        free()
    # square reference GEMM (peak matrix rate on random data)
    try:
        S = args.square
        a = torch.randn(S, S, device=DEV, dtype=args.dtype)
        b = torch.randn(S, S, device=DEV, dtype=args.dtype)
        t, ts, how = bench_calls(lambda i: torch.mm(a, b), 1, reps=args.reps, warmup=3)
        tf = 2.0 * S ** 3 / t / 1e12
        ops.row(kind="gemm_bf16", shape=f"square {S}x{S}x{S}", tokens_or_batch=S, time_s=fmt(t, 6),
                achieved_tflops=fmt(tf, 5), achieved_gb_s="",
                notes=f"peak reference: torch.mm bf16 random normal; {how}; median of {args.reps}; spread {spread(ts):.2%}")
        log(f"gemm square {S}: {t * 1e3:.3f} ms {tf:.1f} TFLOP/s")
        SUMMARY.append(f"gemm square {S}: {tf:.0f} TFLOP/s")
        del a, b
    except Exception as ex:
        log("square gemm FAILED", ex)
    free()


# --------------------------------------------------------------------------------------------------
# 2. HBM bandwidth
# --------------------------------------------------------------------------------------------------
def sec_hbm(args, ops, deadline):
    nbytes = args.hbm_bytes
    src = torch.randn(nbytes // 2, device=DEV, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    t, ts, _ = bench_calls(lambda i: dst.copy_(src), 1, reps=max(args.reps, 10), warmup=3, use_graph=False)
    gbs = 2 * nbytes / t / 1e9
    ops.row(kind="hbm_copy_d2d", shape=f"{nbytes / 2**30:.2f} GiB bf16 copy_", tokens_or_batch="", context="",
            time_s=fmt(t, 6), achieved_tflops="", achieved_gb_s=fmt(gbs, 5),
            notes=f"dst.copy_(src) device-to-device; bytes counted = read + written = {2 * nbytes}; "
                  f"median of {max(args.reps, 10)}; spread {spread(ts):.2%}")
    log(f"hbm copy {nbytes / 2**30:.2f} GiB: {t * 1e3:.3f} ms  {gbs:.1f} GB/s (read+write)")
    SUMMARY.append(f"hbm copy: {gbs:.0f} GB/s (read+write)")
    # read-only: a sum reduction in fp32 accumulate
    try:
        t, ts, _ = bench_calls(lambda i: src.sum(dtype=torch.float32), 1, reps=max(args.reps, 10), warmup=3,
                               use_graph=False)
        gbs_r = nbytes / t / 1e9
        ops.row(kind="hbm_read_sum", shape=f"{nbytes / 2**30:.2f} GiB bf16 sum", time_s=fmt(t, 6),
                achieved_gb_s=fmt(gbs_r, 5),
                notes=f"src.sum(dtype=float32): bytes read only = {nbytes}; median of {max(args.reps, 10)}; "
                      f"spread {spread(ts):.2%}")
        log(f"hbm read (sum) {nbytes / 2**30:.2f} GiB: {t * 1e3:.3f} ms  {gbs_r:.1f} GB/s (read)")
        SUMMARY.append(f"hbm read-only sum: {gbs_r:.0f} GB/s")
    except Exception as ex:
        log("hbm sum FAILED", ex)
    del src, dst
    free()


# --------------------------------------------------------------------------------------------------
# 3. Host <-> device
# --------------------------------------------------------------------------------------------------
def sec_pcie(args, ops, deadline):
    for nbytes in args.pcie_bytes:
        if left(deadline) < 0:
            log("pcie: out of time")
            break
        for pinned in (True, False):
            if not pinned and nbytes != args.pcie_bytes[0]:
                continue  # pageable only at the smallest size
            try:
                ta = time.time()
                host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=(pinned and CUDA))
                host.fill_(7)
                talloc = time.time() - ta
                dev = torch.empty(nbytes, dtype=torch.uint8, device=DEV)
                dev.fill_(3)
                kindn = "pinned" if (pinned and CUDA) else "pageable"
                for direction in ("h2d", "d2h"):
                    if direction == "h2d":
                        fn = lambda: dev.copy_(host, non_blocking=True)
                    else:
                        fn = lambda: host.copy_(dev, non_blocking=True)
                    reps = max(5, args.reps) if pinned else 5
                    t, ts = time_fn(fn, reps=reps, warmup=2)
                    gbs = nbytes / t / 1e9
                    ops.row(kind=f"{direction}_{kindn}", shape=f"{nbytes / 2**20:.0f} MiB uint8", time_s=fmt(t, 6),
                            achieved_gb_s=fmt(gbs, 5),
                            notes=f"{'host->device' if direction == 'h2d' else 'device->host'} copy_ "
                                  f"(non_blocking) of {nbytes} bytes, {kindn} host memory "
                                  f"(host alloc+touch took {talloc:.2f}s); CUDA events; median of {reps}; "
                                  f"spread {spread(ts):.2%}")
                    log(f"{direction} {kindn} {nbytes / 2**20:.0f} MiB: {t * 1e3:.2f} ms  {gbs:.2f} GB/s")
                    SUMMARY.append(f"{direction} {kindn} {nbytes / 2**20:.0f}MiB: {gbs:.1f} GB/s")
                del host, dev
                free()
            except Exception as ex:
                log(f"pcie {nbytes} pinned={pinned} FAILED: {ex}")
                ops.row(kind="h2d_d2h", shape=f"{nbytes} bytes pinned={pinned}",
                        notes=f"FAILED: {type(ex).__name__}: {str(ex)[:200]}")


# --------------------------------------------------------------------------------------------------
# 4. Decode attention
# --------------------------------------------------------------------------------------------------
def sec_attention(args, ops, deadline):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    NQ, NKV, HD = args.heads, args.kv_heads, args.head_dim
    try:
        from flash_attn import flash_attn_with_kvcache  # noqa
        have_fa = True
    except Exception:
        have_fa = False
    log(f"attention: flash_attn package present: {have_fa}")
    variants = [("sdpa-flash-gqa", SDPBackend.FLASH_ATTENTION, True),
                ("sdpa-efficient-gqa", SDPBackend.EFFICIENT_ATTENTION, True),
                ("sdpa-cudnn-gqa", SDPBackend.CUDNN_ATTENTION, True),
                ("sdpa-default-expandedkv", None, False)]
    if not CUDA:
        variants = [("sdpa-default-gqa", None, True), ("sdpa-default-expandedkv", None, False)]
    broken = set()
    for ctx in args.attn_ctx:
        for B in args.attn_b:
            if left(deadline) < 0:
                log("attention: out of time")
                return
            kv_bytes = 2 * B * ctx * NKV * HD * 2
            nset = max(1, min(64, math.ceil(args.l2_rotate_bytes / kv_bytes)))
            try:
                qs = [torch.randn(B, NQ, 1, HD, device=DEV, dtype=args.dtype) for _ in range(nset)]
                ks = [torch.randn(B, NKV, ctx, HD, device=DEV, dtype=args.dtype) for _ in range(nset)]
                vs = [torch.randn(B, NKV, ctx, HD, device=DEV, dtype=args.dtype) for _ in range(nset)]
            except Exception as ex:
                log(f"attn alloc B={B} ctx={ctx} FAILED {ex}")
                continue
            flops = 4.0 * B * NQ * ctx * HD
            for vname, backend, gqa in variants:
                if vname in broken or left(deadline) < 0:
                    continue
                try:
                    if gqa:
                        kk, vv = ks, vs
                        kw = dict(enable_gqa=True)
                    else:
                        rep = NQ // NKV
                        # expanded sets are 4x larger; cap their number to bound memory
                        nexp = max(1, min(nset, math.ceil(args.l2_rotate_bytes / (kv_bytes * rep))))
                        kk = [k.repeat_interleave(rep, dim=1) for k in ks[:nexp]]
                        vv = [v.repeat_interleave(rep, dim=1) for v in vs[:nexp]]
                        kw = {}
                    n_k = len(kk)

                    def call(i):
                        j = i % n_k
                        if backend is None:
                            return F.scaled_dot_product_attention(qs[j], kk[j], vv[j], **kw)
                        with sdpa_kernel([backend]):
                            return F.scaled_dot_product_attention(qs[j], kk[j], vv[j], **kw)

                    est = max(kv_bytes * (1 if gqa else NQ // NKV) / 3e12, 5e-6)
                    n_inner = max(1, min(64, math.ceil(args.inner_target_s / est), max(n_k, 1) * 4))
                    call(0)
                    sync()
                    t, ts, how = bench_calls(call, n_inner, reps=args.reps, warmup=3)
                    gbs = kv_bytes / t / 1e9
                    note = (f"1 query token/seq, {NQ} q heads, {NKV} kv heads, head_dim {HD}, bf16; "
                            f"{'enable_gqa=True (KV not expanded)' if gqa else 'KV expanded to ' + str(NQ) + ' heads beforehand (repeat_interleave, not timed; kernel reads 4x the bytes)'}; "
                            f"backend={'default choice' if backend is None else backend.name}; "
                            f"achieved_gb_s = unique KV bytes ({kv_bytes}) / time; {how} of {n_inner} calls cycling "
                            f"{n_k} KV sets; median of {args.reps}; spread {spread(ts):.2%}")
                    ops.row(kind=f"attn_decode_{vname}", shape=f"B={B} ctx={ctx} q{NQ}/kv{NKV}/d{HD}",
                            tokens_or_batch=B, context=ctx, time_s=fmt(t, 6), achieved_tflops=fmt(flops / t / 1e12, 4),
                            achieved_gb_s=fmt(gbs, 5), notes=note)
                    log(f"attn {vname:24s} B={B:4d} ctx={ctx:5d}: {t * 1e6:9.2f} us  KV {gbs:7.1f} GB/s ({how} x{n_inner})")
                    SUMMARY.append(f"attn {vname} B={B} ctx={ctx}: {t * 1e6:.1f}us {gbs:.0f}GB/s")
                    if not gqa:
                        del kk, vv
                except Exception as ex:
                    msg = f"{type(ex).__name__}: {str(ex)[:160]}"
                    log(f"attn {vname} B={B} ctx={ctx} FAILED: {msg}")
                    ops.row(kind=f"attn_decode_{vname}", shape=f"B={B} ctx={ctx}", tokens_or_batch=B, context=ctx,
                            notes=f"FAILED: {msg}")
                    broken.add(vname)
                    sync()
            if have_fa and CUDA and left(deadline) > 0:
                try:
                    from flash_attn import flash_attn_with_kvcache
                    qf = [q.transpose(1, 2).contiguous() for q in qs]
                    kf = [k.transpose(1, 2).contiguous() for k in ks]
                    vf = [v.transpose(1, 2).contiguous() for v in vs]
                    n_inner = max(1, min(64, nset * 4))
                    t, ts, how = bench_calls(lambda i: flash_attn_with_kvcache(qf[i % nset], kf[i % nset], vf[i % nset]),
                                             n_inner, reps=args.reps)
                    gbs = kv_bytes / t / 1e9
                    ops.row(kind="attn_decode_flash_attn_kvcache", shape=f"B={B} ctx={ctx}", tokens_or_batch=B,
                            context=ctx, time_s=fmt(t, 6), achieved_gb_s=fmt(gbs, 5),
                            notes=f"flash_attn.flash_attn_with_kvcache native GQA; {how}; median of {args.reps}")
                    log(f"attn flash_attn_kvcache B={B} ctx={ctx}: {t * 1e6:.2f} us {gbs:.1f} GB/s")
                    del qf, kf, vf
                except Exception as ex:
                    log("flash_attn FAILED", ex)
            del qs, ks, vs
            free()


# --------------------------------------------------------------------------------------------------
# 5. Whole model
# --------------------------------------------------------------------------------------------------
def build_model(args):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg_kw = dict(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.inter,
                  num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                  head_dim=args.head_dim, max_position_embeddings=args.max_pos, rms_norm_eps=1e-5,
                  tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001)
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_theta": 500000.0}
    if args.smoke:
        rope["original_max_position_embeddings"] = min(8192, args.max_pos // 2)
    try:
        cfg = LlamaConfig(rope_parameters=rope, **cfg_kw)
    except TypeError:
        r = dict(rope)
        theta = r.pop("rope_theta")
        cfg = LlamaConfig(rope_theta=theta, rope_scaling=r, **cfg_kw)
    cfg._attn_implementation = "sdpa"
    prev = torch.get_default_dtype()
    torch.set_default_dtype(args.dtype)
    try:
        with torch.device(DEV):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    model = model.to(device=DEV, dtype=args.dtype).eval()
    nparam = sum(p.numel() for p in model.parameters())
    return cfg, model, nparam


def cache_kwname(model):
    import inspect
    sig = inspect.signature(model.forward).parameters
    return "past_key_values" if "past_key_values" in sig else "cache"


def ev_time(fn):
    """One timed call: CUDA events (GPU) or perf_counter; returns (seconds, result)."""
    if CUDA:
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        out = fn()
        e.record()
        e.synchronize()
        return s.elapsed_time(e) / 1e3, out
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def sec_model(args, rows, ops, budget, versions):
    from transformers import DynamicCache, StaticCache
    src = (f"InferSave device measurement, benchmarks/device/measure_gpu.py, NVIDIA H200 "
           f"(torch {versions['torch']}, transformers {versions['transformers']})")
    gpu_label = "H200" if not args.smoke else "smoke-test-not-a-measurement"
    common = dict(source_id=SOURCE_ID, model=MODEL, gpu=gpu_label, gpu_count=1, dtype="bf16", kv_dtype="bf16",
                  source=src, date=DATE)
    ta = time.time()
    cfg, model, nparam = build_model(args)
    sync()
    log(f"model built: {nparam / 1e9:.3f} B params in {time.time() - ta:.1f}s; "
        f"attn_impl={getattr(cfg, '_attn_implementation', '?')}; mem {torch.cuda.memory_allocated() / 2**30 if CUDA else 0:.1f} GiB")
    ckw = cache_kwname(model)
    V = args.vocab
    gen = torch.Generator(device=DEV)
    gen.manual_seed(0)

    def ids(B, L):
        return torch.randint(0, V, (B, L), device=DEV, generator=gen)

    parts = set(args.model_parts.split(","))
    # ---- prefill (TTFT) ----
    deadline = budget.section(args.cap_prefill)
    with torch.inference_mode():
        for B, L in (args.prefill if "prefill" in parts else []):
            if left(deadline) < 0:
                log("prefill: out of time")
                break
            try:
                x = ids(B, L)
                fn = lambda: model(input_ids=x, use_cache=True, logits_to_keep=1)
                t1, _ = ev_time(fn)  # warm-up (also a first estimate)
                reps = args.reps if t1 < 0.5 else 5
                ts = []
                for _ in range(reps):
                    t, out = ev_time(fn)
                    ts.append(t)
                    del out
                t = statistics.median(ts)
                peak = torch.cuda.max_memory_allocated() / 2**30 if CUDA else 0
                note = (f"one forward of batch {B} x {L} random prompt tokens, LlamaForCausalLM (Llama-3.1-8B dims, "
                        f"32 layers, vocab 128256, random bf16 weights), attn sdpa, eager (no compile/graphs), "
                        f"use_cache=True (DynamicCache created and filled), logits_to_keep=1 (lm_head on last "
                        f"token only); excludes tokenization and sampling; CUDA events; median of {reps} after 1 "
                        f"warm-up; spread {spread(ts):.2%}; peak GPU mem {peak:.1f} GiB; "
                        f"prefill throughput {B * L / t:.0f} tok/s")
                rows.row(engine="hf-transformers-eager", batch_size=B, input_tokens=L, output_tokens=1,
                         metric="ttft_s", value=fmt(t, 6), unit="s", notes=note, **common)
                log(f"prefill B={B:3d} L={L:5d}: {t * 1e3:9.2f} ms  ({B * L / t:.0f} tok/s)")
                SUMMARY.append(f"prefill B={B} L={L}: {t * 1e3:.1f} ms ({B * L / t:.0f} tok/s)")
                del x
            except Exception as ex:
                log(f"prefill B={B} L={L} FAILED: {ex}")
                traceback.print_exc()
            free()

    # ---- eager decode with DynamicCache ----
    deadline = budget.section(args.cap_decode)
    with torch.inference_mode():
        for ctx in (args.decode_ctx if "decode" in parts else []):
            for B in args.decode_b:
                if left(deadline) < 0:
                    log("decode eager: out of time")
                    break
                try:
                    cache = DynamicCache(config=cfg) if "config" in DynamicCache.__init__.__code__.co_varnames else DynamicCache()
                    tp, out = ev_time(lambda: model(input_ids=ids(B, ctx), use_cache=True, logits_to_keep=1,
                                                    **{ckw: cache}))
                    cache = out.past_key_values
                    del out
                    ts = []
                    nwarm, nrep = 3, max(10, args.reps)
                    for step in range(nwarm + nrep):
                        tok = ids(B, 1)
                        t, out = ev_time(lambda: model(input_ids=tok, use_cache=True, **{ckw: cache}))
                        cache = out.past_key_values
                        del out
                        if step >= nwarm:
                            ts.append(t)
                    t = statistics.median(ts)
                    peak = torch.cuda.max_memory_allocated() / 2**30 if CUDA else 0
                    note = (f"decode step: one forward of 1 new token per sequence, batch {B}, KV cache (DynamicCache, "
                            f"bf16) holding context {ctx} tokens from a real prefill ({tp:.3f}s); eager HF "
                            f"transformers (no compile, no CUDA graphs; CPU launch-bound at small batch), attn sdpa; "
                            f"includes DynamicCache torch.cat growth and lm_head for 1 token; excludes sampling; "
                            f"steps {nwarm + 1}..{nwarm + nrep} after prefill (cache length {ctx + nwarm}..{ctx + nwarm + nrep - 1}); "
                            f"CUDA events per step (synchronized between steps); median of {nrep}; spread {spread(ts):.2%}; "
                            f"peak GPU mem {peak:.1f} GiB; {B / t:.0f} output tok/s")
                    rows.row(engine="hf-transformers-eager", batch_size=B, input_tokens=ctx, output_tokens=1,
                             metric="tpot_s", value=fmt(t, 6), unit="s", notes=note, **common)
                    log(f"decode eager B={B:3d} ctx={ctx:5d}: {t * 1e3:8.3f} ms/step  ({B / t:.0f} tok/s)")
                    SUMMARY.append(f"decode eager B={B} ctx={ctx}: {t * 1e3:.2f} ms/step")
                    del cache
                except Exception as ex:
                    log(f"decode eager B={B} ctx={ctx} FAILED: {ex}")
                    traceback.print_exc()
                free()

    # ---- profile: where the time of one eager decode step goes (static and dynamic caches) ----
    if "profile" in parts:
        from torch.profiler import ProfilerActivity, profile
        B, ctx = args.profile_cfg
        with torch.inference_mode():
            for kind in ("static", "dynamic"):
                try:
                    if kind == "static":
                        cache = StaticCache(config=cfg, max_cache_len=ctx + 64)
                    else:
                        cache = DynamicCache(config=cfg)
                    out = model(input_ids=ids(B, ctx), use_cache=True, logits_to_keep=1, **{ckw: cache})
                    cache = out.past_key_values
                    del out
                    tok = ids(B, 1)
                    for _ in range(2):
                        out = model(input_ids=tok, use_cache=True, **{ckw: cache})
                        cache = out.past_key_values
                        del out
                    sync()
                    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if CUDA else [])
                    with profile(activities=acts) as prof:
                        for _ in range(2):
                            out = model(input_ids=tok, use_cache=True, **{ckw: cache})
                            cache = out.past_key_values
                            del out
                        sync()
                    key = "self_cuda_time_total" if CUDA else "self_cpu_time_total"
                    log(f"profile {kind} cache, B={B} ctx={ctx}, 2 decode steps, top ops by {key}:")
                    print(prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=70), flush=True)
                    del cache
                except Exception as ex:
                    log(f"profile {kind} FAILED: {ex}")
                    traceback.print_exc()
                free()

    # ---- decode replayed as a CUDA graph over a StaticCache ----
    # variant "stock": transformers as shipped. For a StaticCache (is_compileable) and q_len 1, create_causal_mask
    #   never skips the mask (masking_utils: allow_is_causal_skip is turned off), so the sdpa path cannot use
    #   enable_gqa: it expands K/V to 32 heads (repeat_kv: a copy of the whole static cache, 4x, per layer) and runs
    #   masked SDPA over all max_cache_len slots (seen in a torch.profiler trace on the H200: ~70% of the step).
    # variant "gqa_nomask": the model module's create_causal_mask patched to return None for q_len 1, so SDPA runs
    #   enable_gqa=True on the unexpanded static cache (over all max_cache_len slots, zeros included: timing only).
    import importlib
    _mm = importlib.import_module(type(model).__module__)
    _orig_ccm = _mm.create_causal_mask

    def _ccm_nomask(*a, **kw):
        emb = kw.get("inputs_embeds")
        if emb is not None and emb.shape[1] == 1:
            return None
        return _orig_ccm(*a, **kw)
    deadline = budget.section(args.cap_graph)
    graph_ok = {v: True for v in args.graph_variants}
    with torch.inference_mode():
        for B, ctx in (args.graph_cfgs if "graph" in parts else []):
          for variant in args.graph_variants:
            if left(deadline) < 0 or not graph_ok[variant]:
                log(f"decode graph {variant}: out of time or capture not possible; skipping B={B} ctx={ctx}")
                continue
            try:
                maxlen = ctx + 64
                cache = StaticCache(config=cfg, max_cache_len=maxlen)
                tp, out = ev_time(lambda: model(input_ids=ids(B, ctx), use_cache=True, logits_to_keep=1,
                                                **{ckw: cache}))
                del out
                tok = ids(B, 1)
                _mm.create_causal_mask = _ccm_nomask if variant == "gqa_nomask" else _orig_ccm
                fwd = lambda: model(input_ids=tok, use_cache=True, **{ckw: cache})
                # eager step over the StaticCache for comparison
                ts_e = []
                for step in range(2 + 5):
                    t, out = ev_time(fwd)
                    del out
                    if step >= 2:
                        ts_e.append(t)
                te = statistics.median(ts_e)
                ops.row(kind=f"model_decode_eager_staticcache_{variant}", shape=f"llama-3.1-8b B={B} ctx={ctx}",
                        tokens_or_batch=B, context=ctx, time_s=fmt(te, 6),
                        notes=f"eager decode step over a StaticCache(max_cache_len={maxlen}); attention over all "
                              f"{maxlen} slots; "
                              + ("stock transformers: explicit mask, repeat_kv to 32 heads, masked SDPA"
                                 if variant == "stock" else "mask patched away for q_len 1: SDPA enable_gqa")
                              + f"; median of 5 after 2 warm-ups; spread {spread(ts_e):.2%}")
                log(f"decode eager-static[{variant}] B={B:3d} ctx={ctx:5d}: {te * 1e3:8.3f} ms/step")
                if not CUDA:
                    _mm.create_causal_mask = _orig_ccm
                    del cache
                    continue
                try:
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(3):
                            out = fwd()
                            del out
                    torch.cuda.current_stream().wait_stream(s)
                    sync()
                    g = torch.cuda.CUDAGraph()
                    try:
                        with torch.cuda.graph(g):
                            gout = fwd()
                    except Exception as ex:
                        graph_ok[variant] = False
                        log(f"graph capture of decode ({variant}) FAILED: {type(ex).__name__}: {str(ex)[:300]}")
                        ops.row(kind=f"model_decode_cudagraph_{variant}", shape=f"llama-3.1-8b B={B} ctx={ctx}",
                                tokens_or_batch=B, context=ctx,
                                notes=f"FAILED capture: {type(ex).__name__}: {str(ex)[:200]}")
                        del g, cache
                        sync()
                        free()
                        continue
                finally:
                    pass
                t, ts = time_fn(g.replay, reps=max(10, args.reps), warmup=3)
                if variant == "stock":
                    vnote = ("transformers as shipped: for a StaticCache at q_len 1 it always builds an explicit mask, "
                             "so its sdpa path expands K/V to 32 heads (repeat_kv copy of the whole cache every layer) "
                             "and runs masked SDPA over all static slots: attention cost is inflated vs a serving "
                             "engine (profiled: ~70% of the B=32 ctx=2048 step is that copy)")
                else:
                    vnote = ("model's create_causal_mask patched to return None for q_len 1, so SDPA (cuDNN backend "
                             "chosen by torch) runs enable_gqa=True on the unexpanded static cache (all slots)")
                note = (f"decode step: 1 new token per sequence, batch {B}, context {ctx} from a real prefill into "
                        f"StaticCache(max_cache_len={maxlen}); the whole forward captured once as a CUDA graph "
                        f"(torch.cuda.CUDAGraph, manual capture, no torch.compile) and replayed; {vnote}; cache write "
                        f"position advances each replay; includes lm_head for 1 token; excludes sampling; CUDA events "
                        f"per replay; median of {max(10, args.reps)} after 3 warm-up replays; spread {spread(ts):.2%}; "
                        f"eager step over the same StaticCache: {te:.5f}s; {B / t:.0f} output tok/s")
                if variant == "stock":
                    rows.row(engine="hf-transformers-cudagraph", batch_size=B, input_tokens=ctx, output_tokens=1,
                             metric="tpot_s", value=fmt(t, 6), unit="s", notes=note, **common)
                ops.row(kind=f"model_decode_cudagraph_{variant}", shape=f"llama-3.1-8b B={B} ctx={ctx}",
                        tokens_or_batch=B, context=ctx, time_s=fmt(t, 6), notes=note)
                log(f"decode GRAPH[{variant}] B={B:3d} ctx={ctx:5d}: {t * 1e3:8.3f} ms/step  (eager static {te * 1e3:.3f} ms)")
                SUMMARY.append(f"decode graph[{variant}] B={B} ctx={ctx}: {t * 1e3:.2f} ms/step (eager static {te * 1e3:.2f})")
                del g, gout, cache
            except Exception as ex:
                log(f"decode graph {variant} B={B} ctx={ctx} FAILED: {ex}")
                traceback.print_exc()
            _mm.create_causal_mask = _orig_ccm
            free()
    del model
    free()


# --------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, CPU ok, seconds")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--budget", type=float, default=330.0, help="total seconds for all sections")
    ap.add_argument("--only", default="gemm,hbm,pcie,attn,model", help="comma list of sections")
    ap.add_argument("--model-parts", default="prefill,decode,graph", help="comma list: prefill,decode,graph")
    ap.add_argument("--graph-variants", default="stock,gqa_nomask", help="comma list: stock,gqa_nomask")
    ap.add_argument("--graph-cfgs", default="", help="override, e.g. 1x512,32x2048 (BxCTX)")
    ap.add_argument("--profile-cfg", default="32x2048", help="BxCTX for --model-parts profile")
    ap.add_argument("--tag", default="", help="suffix for the output file names")
    args = ap.parse_args()
    args.dtype = torch.bfloat16
    if args.smoke:
        args.hidden, args.inter, args.heads, args.kv_heads, args.head_dim = 128, 256, 4, 2, 32
        args.vocab, args.layers, args.max_pos = 512, 2, 4096
        args.gemm_m = [1, 8, 64]
        args.square = 256
        args.l2_rotate_bytes = 1 << 20
        args.inner_target_s = 1e-4
        args.reps = 5
        args.hbm_bytes = 16 << 20
        args.pcie_bytes = [4 << 20]
        args.attn_b, args.attn_ctx = [1, 4], [64, 128]
        args.prefill = [(1, 16), (2, 32)]
        args.decode_b, args.decode_ctx = [1, 2], [16, 32]
        args.graph_cfgs = args.graph_cfgs or [(1, 16), (2, 32)]
        args.cap_prefill = args.cap_decode = args.cap_graph = 60
        caps = dict(gemm=60, hbm=30, pcie=30, attn=60)
    else:
        args.hidden, args.inter, args.heads, args.kv_heads, args.head_dim = 4096, 14336, 32, 8, 128
        args.vocab, args.layers, args.max_pos = 128256, 32, 131072
        args.gemm_m = [1, 8, 32, 64, 128, 256, 512, 1024, 4096, 16384]
        args.square = 8192
        args.l2_rotate_bytes = 256 << 20
        args.inner_target_s = 1.5e-3
        args.reps = 7
        args.hbm_bytes = 4 << 30
        args.pcie_bytes = [256 << 20, 1 << 30]
        args.attn_b, args.attn_ctx = [1, 8, 32, 128], [512, 2048, 8192]
        args.prefill = [(1, 128), (1, 512), (1, 2048), (1, 8192), (8, 512), (8, 2048), (32, 512)]
        args.decode_b, args.decode_ctx = [1, 8, 32, 64], [512, 2048]
        args.graph_cfgs = args.graph_cfgs or [(1, 512), (32, 512), (1, 2048), (32, 2048), (8, 512), (64, 512), (8, 2048), (64, 2048)]
        args.cap_prefill, args.cap_decode, args.cap_graph = 45, 60, 60
        caps = dict(gemm=45, hbm=10, pcie=25, attn=45)

    args.profile_cfg = tuple(int(x) for x in args.profile_cfg.split("x"))
    args.graph_variants = [v for v in args.graph_variants.split(",") if v]
    if isinstance(args.graph_cfgs, str):
        args.graph_cfgs = [tuple(int(x) for x in c.split("x")) for c in args.graph_cfgs.split(",")]
    import transformers
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    os.makedirs(args.out, exist_ok=True)
    rows = CsvOut(os.path.join(args.out, f"device_h200{args.tag}.csv"), MODEL_FIELDS)
    ops = CsvOut(os.path.join(args.out, f"device_h200_ops{args.tag}.csv"), OPS_FIELDS)
    log(f"torch {versions['torch']} transformers {versions['transformers']} cuda={CUDA} smoke={args.smoke}")
    if CUDA:
        p = torch.cuda.get_device_properties(0)
        log(f"device: {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.1f} GiB, "
            f"cc {p.major}.{p.minor}, L2 {getattr(p, 'L2_cache_size', 0) / 2**20:.0f} MiB")
        try:
            import subprocess
            log(subprocess.run(["nvidia-smi", "--query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.limit,"
                                "temperature.gpu", "--format=csv"], capture_output=True, text=True,
                               timeout=20).stdout.strip())
        except Exception as ex:
            log("nvidia-smi:", ex)
    budget = Budget(args.budget)
    only = set(args.only.split(","))
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, fn in [("gemm", lambda d: sec_gemm(args, ops, d)), ("hbm", lambda d: sec_hbm(args, ops, d)),
                     ("pcie", lambda d: sec_pcie(args, ops, d)), ("attn", lambda d: sec_attention(args, ops, d))]:
        if name not in only:
            continue
        if left(budget.end) < 0:
            log(f"{name}: no time left")
            continue
        log(f"==== section {name}")
        try:
            fn(budget.section(caps[name]))
        except Exception:
            log(f"section {name} FAILED")
            traceback.print_exc()
        free()
    if "model" in only:
        log("==== section model")
        try:
            sec_model(args, rows, ops, budget, versions)
        except Exception:
            log("section model FAILED")
            traceback.print_exc()
    log("==== SUMMARY")
    for line in SUMMARY:
        print("  " + line)
    log("done")


if __name__ == "__main__":
    main()
