"""The feature backends of ``nre`` and the options each accepts, known without importing them (they import torch).

The workflow checks a config's ``features`` with it when the Snakefile is parsed (``nre.config_check``: unknown
backends and options, missing checkpoint files are refused at dry-run time), and ``get_backend`` checks a backend's
options with it before building one, so a misspelt option or a missing weights file is one clear line. The entries
are checked against the classes' signatures by tests/test_config_check.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
_NET_OPTIONS = ("coarse_weights", "fine_weights", "max_size", "fine_max_size", "device", "random_init", "seed")


@dataclass(frozen=True)
class BackendInfo:
    module: str
    options: tuple[str, ...]
    weights: tuple[str, ...] = ()  # options naming checkpoint files (None: needs random_init)
    shipped: dict = field(default_factory=dict)  # weights option -> the file its default value "default" means
    what: str = ""  # how to get the checkpoints (for the error message)


BACKENDS: dict[str, BackendInfo] = {
    "dsift": BackendInfo(
        "nre.features.dsift",
        ("coarse_stride", "fine_stride", "coarse_bin", "fine_bin", "root", "temperature", "max_size", "impl"),
    ),
    "nre_official": BackendInfo(
        "nre.features.nre_nets",
        _NET_OPTIONS,
        ("coarse_weights", "fine_weights"),
        what="the official NRE coarse.pth / fine.pth: README, 'Running on MegaDepth with the official weights'",
    ),
    "nre_compact": BackendInfo(
        "nre.features.nre_nets",
        _NET_OPTIONS,
        ("coarse_weights", "fine_weights"),
        {f"{lv}_weights": WEIGHTS_DIR / f"compact_{lv}.pth" for lv in ("coarse", "fine")},
        what="regenerate with `nre train --config config/train.yaml --out work/train`, see nre/weights/README.md",
    ),
    "s2dnet": BackendInfo(
        "nre.features.s2dnet",
        ("weights", "coarse_layer", "fine_layer", "max_size", "device", "random_init", "seed"),
        ("weights",),
        what="the official s2dnet_weights.pth: README, 'Running on MegaDepth with the official weights'",
    ),
}
DEFAULT_WEIGHTS = {"nre_compact": "default"}  # the weights options' default value per backend (else None)


def option_problems(name: str, options: dict, check_files: bool = True) -> list[tuple[str, str]]:
    """(option, problem) for an unknown backend (option ""), unknown option names and checkpoint files that are not
    there (relative paths: from the working directory; not looked for with ``check_files=False``). Empty when the
    options are usable."""
    info = BACKENDS.get(name)
    if info is None:
        return [("", f"unknown feature backend {name!r}; available: {', '.join(sorted(BACKENDS))}")]
    if not isinstance(options, dict):
        return [("", f"options must be a mapping, got {type(options).__name__}")]
    out = [
        (k, f"unknown option {k!r} (options of {name}: {', '.join(info.options)})")
        for k in options
        if k not in info.options
    ]
    for k in info.weights:
        value = options.get(k, DEFAULT_WEIGHTS.get(name))
        if value is None:
            if not options.get("random_init"):
                out.append((k, f"{k}: no checkpoint given (a file path, or random_init: true)"))
        elif not check_files:
            continue
        elif value == "default" and k in info.shipped:
            if not Path(info.shipped[k]).is_file():
                out.append((k, f"{k}: {info.shipped[k]}: shipped checkpoint missing"))
        elif not isinstance(value, (str, Path)):
            out.append((k, f"{k} must be a file path, got {value!r}"))
        elif not Path(value).is_file():
            out.append((k, f"{k}: {value}: no such checkpoint file"))
    return out


def describe(name: str, problems: list[tuple[str, str]]) -> str:
    """The problems of ``option_problems`` as one line, with where the checkpoints come from when one is missing."""
    text = "; ".join(p for _, p in problems)
    info = BACKENDS.get(name)
    if info and info.what and any(k in info.weights for k, _ in problems):
        text += f" ({info.what})"
    return text
