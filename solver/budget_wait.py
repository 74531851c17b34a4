"""The wait for the token budget, and the iteration an arrival lands in, per prompt size of what a replica serves.

Prompts queue for the token budget: an M/D/m queue whose m servers are the prompt chunks that fit beside the
running decodes, each held for the mixed iterations of its prefill (a conservative M/D/1 per server). A prompt of
several chunks blocks the budget for its full steps and the full-step share of its last, short one: the rest of
that step is the next prompt's. A round-robin router's Erlang-k stream finds a prompt in service less often and
waits less for it (``queueing.renewal_wait_ratios``).

A pool serving several request sizes (``Shape.prompt_mix``) does this per size of the prompt found ahead: a
4,096-token prompt holds the whole budget for two steps of ~100 ms each where a 256-token one shares a step, and an
arrival behind it waits for both, so the wait is a mixture over the sizes (by each size's share of the budget's busy
time), not the wait for a prompt of the mix's mean length; likewise the iteration an arrival lands in is one of each
size's chunk steps, length-biased. One size is the one-term mixture.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .prefill import ChunkedPrefill, chunked_prefill
from .queueing import erlang_phases, renewal_wait_ratios
from .roofline import time_s
from .shape import Shape


class BudgetWait(NamedTuple):
    """Per size of the prompt found ahead: P(an arrival waits for it) and E[that wait | it waits], a mixture (at
    most one of them); and the kinds of iteration an arrival lands in, (share of iterations, length)."""

    alternatives: list[tuple[np.ndarray, np.ndarray]]
    iterations: list[tuple[np.ndarray, np.ndarray]]

    @property
    def mean_s(self) -> np.ndarray:
        return np.asarray(sum(p * w for p, w in self.alternatives), float)


def _sizes(shape: Shape, rate: np.ndarray) -> list[tuple[Shape, np.ndarray | float]]:
    """(one size's shape, its share of the requests): the shape itself, or each prompt length of a one-row mix."""
    if shape.prompt_mix is None or np.size(rate) != 1:
        return [(shape, 1.0)]
    lengths, shares = shape.prompt_mix
    merged: dict[float, float] = {}
    for length, share in zip(np.asarray(lengths, float), np.asarray(shares, float)):
        merged[float(length)] = merged.get(float(length), 0.0) + float(share)
    return [(dataclasses.replace(shape, input_tokens=np.full(shape.input_tokens.shape, length),
                                 pairs_per_prompt_token=None, prompt_mix=None), share)
            for length, share in merged.items()]


def budget_wait(shape: Shape, theta: np.ndarray, rate: np.ndarray, iteration_s: np.ndarray,
                decodes: np.ndarray, decode_step_s: np.ndarray, budget: float, chunk: float,
                arrival_scv: np.ndarray | float, prompt_scv: np.ndarray | float = 0.0,
                own: ChunkedPrefill | None = None) -> BudgetWait:
    """The wait for the token budget at ``rate`` requests/s, mean iteration ``iteration_s`` and ``decodes`` running
    decodes (decode-only step ``decode_step_s``). ``prompt_scv`` (a mix's prompt-length spread) applies where the
    shape is not split into its sizes (a multi-row table); ``own``: the shape's own prefill steps beside those
    decodes, when the caller has them (``prefill.chunked_prefill``; used where the shape is one size)."""
    n = np.asarray(decodes, float)
    ones = np.ones_like(rate)
    gaps = erlang_phases(arrival_scv)
    sizes = _sizes(shape, rate)
    spread = prompt_scv if len(sizes) == 1 else 0.0
    parts = []
    for size, share in sizes:
        l_in = size.input_tokens.astype(float)
        prompt_chunk = np.minimum(l_in, budget) * ones
        steps = own if own is not None and len(sizes) == 1 else chunked_prefill(size, theta, n, budget, chunk)
        service = np.where(steps.chunks > 1, l_in / steps.full_tokens * steps.full_s, steps.total_s)
        servers = np.maximum(np.floor(np.maximum(budget - n, 1.0) / prompt_chunk), 1.0)
        chunk_step = time_s(size.work(n, prompt_chunk, prompt_chunk * size.pairs_per_token, runs=ones), theta)
        carrying = np.clip(rate * share * iteration_s * l_in / prompt_chunk, 0.0, 1.0)  # iterations with its chunk
        parts.append((share, service, servers, chunk_step, carrying))
    loads = [rate * share * service / servers for share, service, servers, _, _ in parts]  # the budget's busy time
    total = sum(loads, np.zeros_like(rate))
    rho = np.minimum(total, 0.999)
    # Pollaczek-Khinchine given a wait (a prompt of this size in service: its own service time)
    scale = (np.maximum(np.asarray(arrival_scv, float), 1.0) + spread) / np.maximum(2.0 * (1.0 - rho), 1e-9)
    alternatives, iterations = [], []
    for (share, service, servers, chunk_step, carrying), load in zip(parts, loads):
        extra = scale * service
        found, shorter = renewal_wait_ratios(gaps, rate / servers, service, rho, extra)
        alternatives.append((rho * load / np.maximum(total, 1e-300) * found, extra * shorter))
        # an arrival that lands in an iteration carrying a prompt's chunk waits out its rest in the budget wait when
        # that prompt holds the only prompt server; it waits only for the iteration where the budget leaves room
        iterations.append((carrying * found * (1.0 - 1.0 / servers), chunk_step))
    prompt_steps = sum(found_share for found_share, _ in iterations)
    iterations.append((np.clip(1.0 - prompt_steps, 0.0, 1.0), np.asarray(decode_step_s, float) * ones))
    return BudgetWait(alternatives, iterations)
