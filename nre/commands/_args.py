"""Argument groups shared by the ``nre`` subcommands, and JSON option parsing (not a subcommand: nre.cli skips
modules starting with ``_``). A bad value is an ``OptionError`` naming the flag: one line, exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

from nre.errors import OptionError


def pairs_args(p, required: bool = True, chunk: bool = True) -> None:
    """--pairs, --root (and --chunk): which pairs of which scenes."""
    p.add_argument("--pairs", required=required, help="pair table (CSV, from nre pairs)")
    p.add_argument("--root", required=required, help="data root of the scenes (one folder per scene)")
    if chunk:
        p.add_argument("--chunk", default=None, help="K/N: the K-th (0-based) of N contiguous chunks of the table")


def features_args(p, default: str | None = "dsift") -> None:
    """--features, --features-options: the dense feature backend."""
    p.add_argument("--features", default=default, help=f"feature backend (default {default})")
    p.add_argument("--features-options", default="{}", help="JSON options of the feature backend")


def run_args(p, threads: int | None = None) -> None:
    """--max-points, --seed, --threads: the point cap, the config seed and the torch threads of a job."""
    p.add_argument("--max-points", type=int, default=1000, help="seeded cap on the query points per pair")
    p.add_argument("--seed", type=int, default=0, help="config seed; per pair: derive_seed(seed, pair_id, ...)")
    p.add_argument("--threads", type=int, default=threads, help=f"torch threads (default {threads or 'torch'})")


def json_option(text: str | None, flag: str, kind: type | None = dict):
    """A JSON command-line value (``None`` stays ``None``) of type ``kind``; else an OptionError naming ``flag``."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise OptionError(f"{flag}: not valid JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if kind is not None and not isinstance(value, kind):
        raise OptionError(f"{flag}: expected a JSON {kind.__name__}, got {text!r}")
    return value


def info_option(text: str | None) -> dict | None:
    """``--info``: the study information as JSON text or a JSON file (``None`` stays ``None``)."""
    if text is None:
        return None
    if not text.lstrip().startswith("{"):
        try:
            text = Path(text).read_text()
        except OSError as e:
            raise OptionError(f"--info: not JSON and not a readable file: {text!r} ({e.strerror})") from None
    return json_option(text, "--info")


def recall_option(text: str | None) -> list | None:
    """``--recall-thresholds``: JSON [[translation, rotation deg], ...]."""
    value = json_option(text, "--recall-thresholds", list)
    if value is not None and not all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and x > 0 for x in v) for v in value
    ):
        raise OptionError(f"--recall-thresholds: expected [[translation, rotation deg], ...] > 0, got {text!r}")
    return value


def named_json(items: list[str] | None, flag: str, kind: type | None = dict) -> dict:
    """``NAME=JSON`` words as {NAME: value} (``NAME`` alone: an empty object)."""
    out = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not name:
            raise OptionError(f"{flag}: expected NAME=JSON, got {item!r}")
        out[name] = json_option(text, f"{flag} {name}", kind) if sep else {}
    return out
