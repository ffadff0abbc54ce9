"""Argument helpers shared by the ``nre`` subcommands (not a subcommand: nre.cli skips modules starting with ``_``)."""

from __future__ import annotations

import json


def json_arg(text: str | None, flag: str, command: str):
    """Parse a JSON command-line value; ``None`` stays ``None``; invalid JSON exits naming the command and flag."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{command}: {flag} is not valid JSON ({e}): {text!r}") from e


def set_threads(n: int | None) -> None:
    """Use ``n`` torch threads in this process, whether torch is loaded already or only later (jobs that need no
    features never load it): torch takes its thread count from OMP_NUM_THREADS / MKL_NUM_THREADS when imported."""
    import os
    import sys

    if not n:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
