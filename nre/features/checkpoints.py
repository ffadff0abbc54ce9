"""Checkpoint files: PyTorch Lightning checkpoints read without Lightning, strict loading, parameter manifests.

A Lightning checkpoint is a torch-pickled dict with ``state_dict`` and ``hyper_parameters`` (plus ``epoch``,
``global_step``, ``pytorch-lightning_version``, ``optimizer_states``, ``lr_schedulers``, ``callbacks``...).
``hyper_parameters`` is often Lightning's ``AttributeDict`` (a dict subclass), which cannot be unpickled without
Lightning. ``read_checkpoint`` therefore:

1. loads with ``torch.load(weights_only=True)`` where Lightning's dict classes are mapped to a plain-dict stand-in
   (no code from the file runs);
2. if the file references other classes (old Lightning callbacks keyed by class, argparse Namespaces...), loads it
   again with a restricted unpickler that only resolves torch / collections / numpy globals and replaces every other
   class by an inert stand-in (``Stub``) that records its arguments, so no foreign code runs either.

``load_into(model, state_dict, path)`` matches keys and shapes strictly (after removing a wrapper prefix such as
``model.`` or ``module.`` when that is what makes the keys match) and raises ``CheckpointError`` naming the file and
listing the missing, unexpected and mismatched keys. Checkpoints written by ``nre train`` use the same layout
(``save_lightning_checkpoint``), so one loader reads ours and the official ones.

Manifests (``nre/features/manifests/*.json``): parameter and buffer names with shapes of each reference architecture;
``random_checkpoint`` builds a checkpoint from a manifest (the tests load it strictly into our networks).
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import torch

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
LIGHTNING_DICT_CLASSES = (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
)
WRAPPER_PREFIXES = ("model.", "module.", "net.", "network.")


class CheckpointError(ValueError):
    pass


class AttributeDict(dict):
    """Plain stand-in for Lightning's AttributeDict (a dict with attribute access)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


class Stub:
    """Inert stand-in for a class the restricted unpickler refuses to import."""

    _qualname = "Stub"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<Stub {self._qualname}>"

    def __hash__(self):
        return hash(self._qualname)

    def __eq__(self, other):
        return isinstance(other, Stub) and other._qualname == self._qualname


def _stub_class(module: str, name: str) -> type:
    return type(name, (Stub,), {"_qualname": f"{module}.{name}", "__module__": "nre.features.checkpoints"})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves torch / collections / numpy globals (what tensors and optimizer states need) and a few builtins;
    every other global becomes an inert Stub subclass (so nothing from the file executes)."""

    SAFE_BUILTINS = {"set", "frozenset", "slice", "range", "complex", "bytearray", "dict", "list", "tuple", "object"}

    def find_class(self, module, name):
        if module in LIGHTNING_DICT_MODULES and name == "AttributeDict":
            return AttributeDict
        root = module.split(".")[0]
        if root in ("torch", "collections", "numpy", "_codecs") or (
            module == "builtins" and name in self.SAFE_BUILTINS
        ):
            return super().find_class(module, name)
        return _stub_class(module, name)


LIGHTNING_DICT_MODULES = {c.rsplit(".", 1)[0] for c in LIGHTNING_DICT_CLASSES}


class _RestrictedPickleModule:
    Unpickler = _RestrictedUnpickler
    __name__ = "nre_restricted_pickle"

    @staticmethod
    def load(f, **kw):
        return _RestrictedUnpickler(f, **kw).load()


def torch_load(path: str | Path) -> object:
    """Load a torch file without Lightning: weights-only first, else the restricted unpickler (see module doc)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    safe = [(AttributeDict, c) for c in LIGHTNING_DICT_CLASSES]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # a global outside the weights-only allow-list: retry with the restricted unpickler
    except Exception as e:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file ({type(e).__name__}: {e})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})") from e


def _plain(obj):
    """AttributeDict / nested containers -> plain dicts and lists (tensors and scalars unchanged)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj) if isinstance(obj, list) else tuple(_plain(v) for v in obj)
    if isinstance(obj, Stub):  # e.g. an argparse Namespace: keep its attributes
        st = obj.state
        return _plain(st) if isinstance(st, dict) else repr(obj)
    return obj


def read_checkpoint(path: str | Path, require_hparams: bool = False) -> tuple[dict, dict, dict]:
    """(state_dict, hyper_parameters, the whole file dict) of a checkpoint with a ``state_dict`` entry."""
    obj = torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict with 'state_dict', got {type(obj).__name__}")
    if "state_dict" not in obj:
        keys = sorted(map(str, obj))[:12]
        raise CheckpointError(f"{path}: not a Lightning-style checkpoint: no 'state_dict' entry (keys: {keys})")
    sd = obj["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of names to tensors")
    hp = obj.get("hyper_parameters")
    if hp is None and require_hparams:
        raise CheckpointError(f"{path}: no 'hyper_parameters' entry (a Lightning checkpoint has one)")
    return dict(sd), _plain(hp) if hp is not None else {}, obj


def _strip_prefix(state_dict: dict, expected: set) -> dict:
    """Remove a wrapper prefix when that makes the keys match the model (tries the known wrappers, then any)."""
    keys = set(state_dict)
    if keys & expected:
        return state_dict
    cands = list(WRAPPER_PREFIXES)
    first = next(iter(keys), "")
    if "." in first:
        cands.append(first.split(".", 1)[0] + ".")
    best, best_hits = state_dict, 0
    for p in cands:
        stripped = {k[len(p) :] if k.startswith(p) else k: v for k, v in state_dict.items()}
        hits = len(set(stripped) & expected)
        if hits > best_hits:
            best, best_hits = stripped, hits
    # a model wrapped in an attribute the checkpoint lacks (e.g. ours has ``cnn.``, the file has bare indices)
    for p in {k.split(".", 1)[0] + "." for k in expected if "." in k}:
        added = {p + k: v for k, v in state_dict.items()}
        hits = len(set(added) & expected)
        if hits > best_hits:
            best, best_hits = added, hits
    return best


def check_state_dict(model: torch.nn.Module, state_dict: dict, path: str | Path = "<memory>") -> dict:
    """Strict key and shape check; returns the (prefix-adjusted) state dict or raises CheckpointError."""
    expected = model.state_dict()
    sd = _strip_prefix(state_dict, set(expected))
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = sorted(
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(sd) & set(expected)
        if tuple(sd[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:

        def _lst(xs):
            return ", ".join(xs[:10]) + (f" ... (+{len(xs) - 10} more)" if len(xs) > 10 else "")

        parts = [
            f"{len(missing)} missing: {_lst(missing)}" if missing else "",
            f"{len(unexpected)} unexpected: {_lst(unexpected)}" if unexpected else "",
            f"{len(mismatched)} shape mismatches: {_lst(mismatched)}" if mismatched else "",
        ]
        raise CheckpointError(
            f"{path}: state_dict does not match {type(model).__name__}: " + "; ".join(p for p in parts if p)
        )
    return sd


def load_into(model: torch.nn.Module, state_dict: dict, path: str | Path = "<memory>") -> torch.nn.Module:
    sd = check_state_dict(model, state_dict, path)
    model.load_state_dict(sd, strict=True)
    return model


def load_network(path: str | Path, level: str, arch: str) -> torch.nn.Module:
    """Build the ``arch`` (official / compact) network of ``level`` from a checkpoint and load it strictly.

    The checkpoint's hyper-parameters decide the variant (official: ``no_maxpool``; compact: ``dim``, ``width``);
    a ``level`` recorded in them must agree with the requested one (a fine file given as coarse is an error)."""
    from nre.features.nre_nets import build_net

    sd, hp, _ = read_checkpoint(path)
    hp_level = hp.get("level") if isinstance(hp, dict) else None
    if hp_level is not None and hp_level != level:
        raise CheckpointError(f"{path}: checkpoint is a {hp_level!r} network, expected {level!r}")
    hp_arch = hp.get("arch") if isinstance(hp, dict) else None
    if hp_arch is not None and hp_arch != arch:
        raise CheckpointError(f"{path}: checkpoint is a {hp_arch!r} network, expected {arch!r}")
    model = build_net(level, arch, hp if isinstance(hp, dict) else {})
    return load_into(model, sd, path)


def save_lightning_checkpoint(
    path: str | Path,
    state_dict: dict,
    hyper_parameters: dict,
    epoch: int = 0,
    global_step: int = 0,
    optimizer_states: list | None = None,
    extra: dict | None = None,
) -> None:
    """Write a checkpoint in the Lightning layout (plain dicts only, so it loads with weights_only=True)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {
        "epoch": int(epoch),
        "global_step": int(global_step),
        "pytorch-lightning_version": "1.2.0",
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "hyper_parameters": dict(hyper_parameters),
        "optimizer_states": list(optimizer_states or []),
        "lr_schedulers": [],
        "callbacks": {},
    }
    if extra:
        obj.update(extra)
    buf = io.BytesIO()
    torch.save(obj, buf)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


# ----------------------------------------------------------------------------------------------- manifests
def manifest_of(model: torch.nn.Module, name: str, notes: str = "") -> dict:
    return {
        "name": name,
        "notes": notes,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "tensors": {k: list(v.shape) for k, v in model.state_dict().items()},
    }


def read_manifest(name: str) -> dict:
    path = MANIFEST_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such manifest (have {sorted(p.stem for p in MANIFEST_DIR.glob('*.json'))})"
        )
    return json.loads(path.read_text())


def random_state_dict(manifest: dict, seed: int = 0, prefix: str = "") -> dict:
    """Random tensors with the manifest's names and shapes (BatchNorm buffers kept plausible)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in manifest["tensors"].items():
        if k.endswith("num_batches_tracked"):
            t = torch.tensor(1000, dtype=torch.long)
        elif k.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith("running_mean"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 4:
            fan_in = max(1, shape[1] * shape[2] * shape[3])
            t = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif k.endswith("weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.05 * torch.randn(shape, generator=g)
        sd[prefix + k] = t
    return sd


def random_checkpoint(manifest: dict, path: str | Path, hyper_parameters: dict | None = None, seed: int = 0) -> Path:
    """A Lightning-style checkpoint of random tensors in the manifest's layout."""
    save_lightning_checkpoint(path, random_state_dict(manifest, seed), hyper_parameters or {})
    return Path(path)


def write_manifests(out_dir: str | Path = MANIFEST_DIR) -> list[Path]:
    """(Re)generate the committed manifests from the architectures in nre_nets / s2dnet."""
    from nre.features import nre_nets, s2dnet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = {
        "nre_coarse": (nre_nets.official_coarse_net(), "NRE coarse.pth state_dict (Lightning Net.cnn, stride 16)"),
        "nre_fine": (nre_nets.official_fine_net(), "NRE fine.pth state_dict (Lightning Net.cnn, stride 2)"),
        "s2dnet": (s2dnet.S2DNet(), "s2dnet_weights.pth 'state_dict' (VGG16 encoder + 3 adaptation layers)"),
    }
    paths = []
    for name, (model, notes) in specs.items():
        p = out_dir / f"{name}.json"
        p.write_text(json.dumps(manifest_of(model, name, notes), indent=1) + "\n")
        paths.append(p)
    return paths
