"""The thread count of a job's numerical libraries (torch, OpenMP, MKL)."""

from __future__ import annotations

import os
import sys


def set_threads(n: int | None) -> None:
    """Use ``n`` torch threads in this process, whether torch is loaded already or only later (jobs that need no
    features never load it): torch takes its thread count from OMP_NUM_THREADS / MKL_NUM_THREADS when imported.
    ``None`` or 0 leaves the default."""
    if not n:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
