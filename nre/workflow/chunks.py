"""Chunking of pair tables: ``--chunk K/N`` selects the K-th (0-based) of N contiguous, near-equal slices."""

from __future__ import annotations

import numpy as np


def parse_chunk(spec: str | None) -> tuple[int, int]:
    if spec in (None, "", "all"):
        return 0, 1
    try:
        k, n = (int(v) for v in str(spec).split("/"))
    except ValueError:
        raise ValueError(f"chunk must look like K/N (0 <= K < N), got {spec!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"chunk must satisfy 0 <= K < N, got {spec!r}")
    return k, n


def chunk_slice(n_rows: int, spec: str | None) -> slice:
    """The rows of chunk ``spec`` in a table of ``n_rows`` rows."""
    k, n = parse_chunk(spec)
    bounds = np.linspace(0, n_rows, n + 1).round().astype(int)
    return slice(int(bounds[k]), int(bounds[k + 1]))


def select_chunk(df, spec: str | None):
    """The rows of a pandas DataFrame in chunk ``spec``."""
    return df.iloc[chunk_slice(len(df), spec)]
