"""What one replica serves: model, precision, tensor parallelism and request lengths (one row per candidate),
and the one-row shape of a pool serving a mix of request sizes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .roofline import Hardware, IterationWork, iteration_work
from .schema import ModelCard


@dataclass(frozen=True)
class Shape:
    """What one replica serves: model, precision, tensor parallelism and request lengths (arrays per row)."""

    model: ModelCard
    hw: Hardware
    dtype: str
    kv_dtype: str
    tp: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    offload_ratio: np.ndarray
    # a mix of request sizes (``mix_shape``): running decodes' mean context and prompt attention pairs per prompt
    # token, when they are not those of one size (L_in + L_out / 2 and L_in / 2)
    context_tokens: np.ndarray | None = None
    pairs_per_prompt_token: np.ndarray | None = None
    prompt_mix: tuple[np.ndarray, np.ndarray] | None = None  # one-row mix: (prompt lengths, request shares)

    def work(self, decode_seqs: np.ndarray | float, prefill_tokens: np.ndarray | float,
             prefill_pairs: np.ndarray | float, runs: np.ndarray | None = None) -> IterationWork:
        ctx = self.mean_context
        return iteration_work(self.model, self.hw, dtype=self.dtype, kv_dtype=self.kv_dtype, tp=self.tp,
                              decode_seqs=decode_seqs, decode_context_tokens=np.asarray(decode_seqs, float) * ctx,
                              prefill_tokens=prefill_tokens, prefill_attention_pairs=prefill_pairs,
                              offload_ratio=self.offload_ratio, runs=runs)

    def take(self, rows: np.ndarray) -> Shape:
        """The shape of the given rows (an index array), in that order."""
        return Shape(self.model, self.hw.take(rows), self.dtype, self.kv_dtype, self.tp[rows], self.input_tokens[rows],
                     self.output_tokens[rows], self.offload_ratio[rows],
                     None if self.context_tokens is None else self.context_tokens[rows],
                     None if self.pairs_per_prompt_token is None else self.pairs_per_prompt_token[rows],
                     self.prompt_mix)

    @property
    def mean_context(self) -> np.ndarray:
        """Average context of a running decode (FlexGen's s + n/2 for one size)."""
        if self.context_tokens is not None:
            return np.asarray(self.context_tokens, float)
        return np.asarray(self.input_tokens, float) + np.asarray(self.output_tokens, float) / 2.0

    @property
    def pairs_per_token(self) -> np.ndarray:
        """Causal attention pairs per prompt token (L_in / 2 for one size, E[L_in^2] / (2 E[L_in]) for a mix)."""
        if self.pairs_per_prompt_token is not None:
            return np.asarray(self.pairs_per_prompt_token, float)
        return np.asarray(self.input_tokens, float) / 2.0


def mix_shape(model: ModelCard, hw: Hardware, dtype: str, kv_dtype: str, tp: float, offload_ratio: float,
              rates: np.ndarray, input_tokens: np.ndarray, output_tokens: np.ndarray) -> tuple[Shape, float]:
    """One replica serving several request sizes at ``rates``: (its one-row shape, the squared coefficient of
    variation of prompt lengths). Means are per request; the running decodes' context is weighted by output
    length (a long answer stays in the batch longer), the prompt attention by squared prompt length."""
    r, li, lo = (np.asarray(x, float) for x in (rates, input_tokens, output_tokens))
    total = max(float(r.sum()), 1e-300)
    l_in, l_out = float(r @ li) / total, float(r @ lo) / total
    second = float(r @ (li * li)) / total
    context = float(r @ (lo * (li + lo / 2.0))) / max(float(r @ lo), 1e-300)
    one = np.ones(1)
    shape = Shape(model, hw, dtype, kv_dtype, one * tp, one * l_in, one * l_out, one * offload_ratio,
                  one * context, one * second / max(2.0 * l_in, 1e-300),
                  None if np.unique(li).size == 1 else (li, r / total))
    return shape, max(second / max(l_in * l_in, 1e-300) - 1.0, 0.0)
