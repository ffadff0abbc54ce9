"""Seeds derived from (config seed, keys...), so results do not depend on chunking, job order or --cores."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed from the config seed and any keys (pair id, estimator name, ...)."""
    h = hashlib.sha256(repr((int(seed), *map(str, keys))).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def rng_for(seed: int, *keys) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *keys))
