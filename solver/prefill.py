"""A prompt's prefill as engine steps: a static batch's chunks (``prefill_phases``, ``static_latency``) and, on a
continuous-batching engine, one prompt's chunks beside the running decodes (``chunked_prefill``) with the next
prompt packed into its step (``packed_prefill``)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import gammainc

from .queueing import erlang_phases
from .roofline import Phases, phases_time_s, time_s
from .shape import Shape


def prefill_phases(shape: Shape, batch: np.ndarray, chunk_tokens: int, decode_seqs: np.ndarray | float = 0.0
                   ) -> Phases:
    """Prefill of ``batch`` prompts in chunks of at most ``chunk_tokens``, beside ``decode_seqs`` decodes."""
    tokens = np.asarray(batch, float) * shape.input_tokens
    chunks = np.maximum(np.ceil(tokens / chunk_tokens), 1.0)
    pairs = np.asarray(batch, float) * np.square(shape.input_tokens.astype(float)) / 2.0
    return [(shape.work(decode_seqs, tokens / chunks, pairs / chunks), chunks)]


class ChunkedPrefill(NamedTuple):
    """A prompt's own steps beside ``n`` running decodes: ``chunks`` - 1 full ones of ``full_tokens`` (``full_s``
    each) and a last one of ``last_tokens`` (``last_s``); ``total_s`` in all."""
    chunks: np.ndarray
    full_tokens: np.ndarray
    last_tokens: np.ndarray
    full_s: np.ndarray
    last_s: np.ndarray
    total_s: np.ndarray


def chunked_prefill(shape: Shape, theta: np.ndarray, decode_seqs: np.ndarray | float, budget: float, chunk: float
                    ) -> ChunkedPrefill:
    """The scheduler gives a prompt whole chunks of what the token budget leaves beside the running decodes, then
    the rest: a 2048-token prompt under a 2048-token budget is one full compute-bound step and a short weight-bound
    one, not two halves."""
    n = np.asarray(decode_seqs, float)
    l_in = shape.input_tokens.astype(float)
    full = np.maximum(np.minimum(chunk, budget - n), 1.0) * np.ones_like(l_in)
    chunks = np.maximum(np.ceil(l_in / full), 1.0)
    last = l_in - (chunks - 1.0) * full
    full_s = phases_time_s([(shape.work(n, full, full * l_in / 2.0), 1.0)], theta)
    last_s = phases_time_s([(shape.work(n, last, last * l_in / 2.0), 1.0)], theta)
    return ChunkedPrefill(chunks, full, last, full_s, last_s, (chunks - 1.0) * full_s + last_s)


class PackedPrefill(NamedTuple):
    """A prompt's own steps (``steps``) and the prompt that may be packed into its first step (its last, for a long
    prompt): with probability ``p_pack`` one more prompt's tokens make that step ``delay_s`` longer."""
    steps: ChunkedPrefill
    p_pack: np.ndarray
    delay_s: np.ndarray

    @property
    def mean_s(self) -> np.ndarray:
        return np.asarray(self.steps.total_s + self.p_pack * self.delay_s, float)


def packed_prefill(shape: Shape, theta: np.ndarray, decode_seqs: np.ndarray | float, budget: float, chunk: float,
                   rate: np.ndarray, iteration_s: np.ndarray, arrival_scv: np.ndarray | float,
                   next_tokens: np.ndarray | None = None) -> PackedPrefill:
    """Prompts that arrive while the request waits for its first step (during its full steps, for a long prompt)
    are packed into its first (last) step, up to the budget: with probability p_pack (the next arrival comes before
    that step; fewer when arrivals are smoother than Poisson, as behind a round-robin router), one more prompt of
    ``next_tokens`` (default: this shape's own prompts)."""
    n = np.asarray(decode_seqs, float)
    rate = np.asarray(rate, float)
    l_in = shape.input_tokens.astype(float)
    own = chunked_prefill(shape, theta, n, budget, chunk)
    gaps = erlang_phases(arrival_scv)
    pack_into = np.where(own.chunks > 1, own.last_tokens, np.minimum(l_in, own.full_tokens))
    before_step = np.where(own.chunks > 1, (own.chunks - 1.0) * own.full_s, np.asarray(iteration_s, float))
    # Poisson: 1 - exp(-x), the common case, without the incomplete gamma
    p_pack = -np.expm1(-rate * before_step) if np.all(gaps == 1.0) else gammainc(gaps, gaps * rate * before_step)
    incoming = l_in if next_tokens is None else np.asarray(next_tokens, float)
    packed = np.minimum(incoming, np.maximum(budget - n - pack_into, 0.0))
    packed_step = phases_time_s([(shape.work(n, pack_into + packed, pack_into * l_in / 2.0
                                             + packed * shape.pairs_per_token), 1.0)], theta)
    return PackedPrefill(own, np.asarray(p_pack, float), np.asarray(packed_step - own.last_s, float))


def static_latency(shape: Shape, theta: np.ndarray, batch: np.ndarray, chunk_tokens: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(TTFT, TPOT) of a static batch: whole-batch prefill, then one decode iteration per token."""
    ttft = phases_time_s(prefill_phases(shape, batch, chunk_tokens), theta)
    tpot = time_s(shape.work(batch, 0.0, 0.0), theta)
    return ttft, tpot
