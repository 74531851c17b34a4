"""A model's independent blocks (no row links two of them) and each block's rows in its own numbering.

Solving block by block is exact (the optimum of a sum of independent problems is the sum of their optima) and
much faster where a fleet splits, e.g. one block per workload or per model's pooled replicas."""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .linear_model import LinearModel


def components(model: LinearModel) -> list[np.ndarray]:
    """Variable index sets of the independent blocks of the model (no row links two blocks), in the order of
    their lowest variable index. Union-find in numpy (hook each row's variables onto their smallest root, then
    jump pointers; a few rounds), so planning does not pay for importing scipy.sparse."""
    n_vars = len(model.names)
    sizes = np.array([len(idx) for _, idx, _, _, _ in model.rows], dtype=np.int64)
    if not model.rows or not sizes.any():
        return [np.arange(n_vars)] if not model.rows else [np.array([v]) for v in range(n_vars)]
    var_idx = np.concatenate([idx for _, idx, _, _, _ in model.rows]).astype(np.int64)
    row_of = np.repeat(np.arange(len(model.rows)), sizes)
    parent = np.arange(n_vars)
    while True:
        roots = parent[var_idx]
        row_min = np.full(len(model.rows), n_vars)
        np.minimum.at(row_min, row_of, roots)
        hooked = parent.copy()
        np.minimum.at(hooked, roots, row_min[row_of])  # every root in a row points at the row's smallest root
        while True:  # pointer jumping: labels only decrease, so this ends
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, parent):
            break
        parent = hooked
    order = np.argsort(parent, kind="stable")
    splits = np.flatnonzero(np.diff(parent[order])) + 1
    return np.split(order, splits)


def rows_by_block(model: LinearModel, blocks: list[np.ndarray]) -> list[list[Any]]:
    """Each row re-indexed into its block's local variable numbering."""
    block_of = np.empty(len(model.names), dtype=int)
    local = np.empty(len(model.names), dtype=int)
    for b, block in enumerate(blocks):
        block_of[block] = b
        local[block] = np.arange(len(block))
    out: list[list[Any]] = [[] for _ in blocks]
    for name, idx, coef, lo, hi in model.rows:
        if len(idx):
            out[int(block_of[idx[0]])].append((name, local[idx], coef, lo, hi))
    return out


def block_model(model: LinearModel, block: np.ndarray, rows: list[Any]) -> LinearModel:
    """The block's own model: its variables (in ``block`` order) and its rows in their local numbering."""
    return LinearModel(names=[model.names[v] for v in block], lower=[model.lower[v] for v in block],
                       upper=[model.upper[v] for v in block], integer=[model.integer[v] for v in block],
                       cost=[model.cost[v] for v in block], rows=rows)


def block_key(sub: LinearModel, backend: str, mip_gap: float) -> str:
    """Digest of everything that defines a block's optimum: variables, bounds, costs, integrality and rows."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{backend}|{mip_gap!r}|".encode())
    h.update("\x00".join(sub.names).encode())
    for array in (sub.lower, sub.upper, sub.cost):
        h.update(np.asarray(array, float).tobytes())
    h.update(np.asarray(sub.integer, bool).tobytes())
    for name, idx, coef, lo, hi in sub.rows:
        h.update(f"{name}|{lo!r}|{hi!r}|".encode())
        h.update(np.asarray(idx, np.int64).tobytes())
        h.update(np.asarray(coef, float).tobytes())
    return h.hexdigest()
