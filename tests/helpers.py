"""Shared test helpers: repository paths."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
TINY_MD = DATA / "megadepth_tiny"  # two scenes: 0016 (model 0016_0) and 0033
SAMPLE = DATA / "sample_pair" / "pair.npz"  # official NRE sample format (tests/data/sample_pair)
