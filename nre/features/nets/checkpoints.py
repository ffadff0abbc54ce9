"""Checkpoint files: PyTorch Lightning checkpoints read without Lightning, strict loading, parameter manifests.

A Lightning checkpoint is a torch-pickled dict with ``state_dict`` and ``hyper_parameters`` (plus ``epoch``,
``global_step``, ``pytorch-lightning_version``, ``optimizer_states``, ``lr_schedulers``, ``callbacks``...).
``hyper_parameters`` is often Lightning's ``AttributeDict`` (a dict subclass) and Lightning 1.x keys ``callbacks`` by
callback *class*; neither can be unpickled without Lightning. ``torch_load`` reads every file with
``torch.load(weights_only=True)`` and nothing else, so no code named by the file ever runs:

1. the pickle's globals are listed statically first (zip and legacy formats; ``scan_globals``);
2. each global outside torch's weights-only allow-list is resolved to a stand-in of ours, never to the named object:
   Lightning's AttributeDict -> a plain dict; numpy scalars, dtypes and arrays (metadata of old files) -> validated
   data-only constructors (no object dtype); argparse's Namespace and class names (CapWords) outside the standard
   library, numpy and torch (e.g. ``pytorch_lightning.callbacks.ModelCheckpoint`` as a dict key) -> an inert ``Stub``
   that records its arguments;
3. any other global (a function such as ``posix.system``, ``builtins.exec``, ``numpy.save``, ``torch.save``; a class
   of the standard library, numpy or torch that is not data) refuses the file with a ``CheckpointError`` naming the
   globals, before anything is unpickled.

``load_into(model, state_dict, path)`` matches keys and shapes strictly (after removing a wrapper prefix such as
``model.`` or ``module.`` when that is what makes the keys match) and raises ``CheckpointError`` naming the file and
listing the missing, unexpected and mismatched keys. Checkpoints written by ``nre train`` use the same layout
(``save_lightning_checkpoint``), so one loader reads ours and the official ones.

Manifests (``nre/features/manifests/*.json``): parameter and buffer names with shapes of each reference architecture;
``random_checkpoint`` builds a checkpoint from a manifest (the tests load it strictly into our networks).
"""

from __future__ import annotations

import builtins
import io
import json
import pickle
import pickletools
import sys
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path

import numpy as np
import torch

from nre.errors import InputError

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
LIGHTNING_DICT_CLASSES = (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
)
WRAPPER_PREFIXES = ("model.", "module.", "net.", "network.")
# roots whose names are never stubbed: what they name is either data (allow-listed) or refused
_NEVER_STUB = {"numpy", "torch", "builtins", "_codecs", "copyreg", "__main__"}
_DATA_BUILTINS = ("frozenset", "slice", "range", "dict", "list", "tuple")
_NUMPY_KINDS = "biufcSU"  # bool, int, uint, float, complex, bytes, str: never object, void (structured) or datetime


class CheckpointError(InputError):
    """A checkpoint file that cannot be used (refused, not a checkpoint, keys or shapes that do not match)."""


class AttributeDict(dict):
    """Plain stand-in for Lightning's AttributeDict (a dict with attribute access)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


class _PlainDict:
    """Stand-in for Lightning's AttributeDict while unpickling: NEWOBJ makes a plain dict (the weights-only
    unpickler only fills exact dicts), which ``_plain`` later wraps into ``AttributeDict``."""

    def __new__(cls, *args, **kwargs):
        return {}


class Stub:
    """Inert stand-in for a class the loader does not import: records its arguments and state, runs nothing."""

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
    return type(name, (Stub,), {"_qualname": f"{module}.{name}", "__module__": "nre.features.nets.checkpoints"})


# ---- numpy metadata, rebuilt by constructors of ours that only make plain numeric / string data
class _NpDtype:
    """``numpy.dtype(spec, align, copy)`` + BUILD(state): a dtype of kind bool / int / float / complex / bytes / str."""

    def __init__(self, spec=None, align=False, copy=True):
        self.spec, self.byteorder = spec, "="

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]

    def resolve(self) -> np.dtype:
        spec = self.spec
        if not (isinstance(spec, str) and spec[:1] in _NUMPY_KINDS and spec[1:].isdigit()):
            raise pickle.UnpicklingError(f"numpy dtype {spec!r} refused (only bool, int, float, complex, str data)")
        dt = np.dtype(spec)
        return dt.newbyteorder(self.byteorder) if self.byteorder in "<>" else dt


class _NpArrayClass:
    """Stand-in for ``numpy.ndarray`` as the first argument of ``_reconstruct`` (never instantiated)."""


class _NpArray:
    """``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)`` + BUILD(state): a plain numeric array."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("numpy array: unexpected pickle state")
        _, shape, dt, fortran, raw = state
        if not isinstance(dt, _NpDtype):
            raise pickle.UnpicklingError("numpy array: unexpected dtype")
        dt = dt.resolve()
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"numpy array: bad shape {shape!r}")
        if isinstance(raw, str):  # protocol 2 writes bytes as latin-1 text through _codecs.encode
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise pickle.UnpicklingError(f"numpy array: data does not match shape {shape} and dtype {dt}")
        self.array = np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def _np_reconstruct(cls, shape, typecode):
    if cls is not _NpArrayClass:
        raise pickle.UnpicklingError("numpy _reconstruct of something else than an ndarray")
    return _NpArray()


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, _NpDtype):
        raise pickle.UnpicklingError("numpy scalar: unexpected dtype")
    dt = dtype.resolve()
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
        raise pickle.UnpicklingError(f"numpy scalar: {dt} from unexpected data")
    return np.frombuffer(bytes(data), dtype=dt)[0]


_NUMPY_STANDINS = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_STANDINS[f"{_mod}.scalar"] = _np_scalar
    _NUMPY_STANDINS[f"{_mod}._reconstruct"] = _np_reconstruct
_NUMPY_STANDINS["numpy.dtype"] = _NpDtype
_NUMPY_STANDINS["numpy.ndarray"] = _NpArrayClass


def scan_globals(path: Path) -> tuple[set[str], set[str]]:
    """(globals, unsupported opcodes) of the pickle(s) of a torch file, read statically (nothing is unpickled).

    Zip format (torch >= 1.6): ``<archive>/data.pkl``. Legacy format: the magic number, protocol, system info, the
    object and the storage keys are five consecutive pickles followed by raw storage bytes."""
    found: set[str] = set()
    odd: set[str] = set()

    def scan(stream) -> None:
        for op, arg, _ in pickletools.genops(stream):
            if op.name == "GLOBAL":  # Python 2 names mapped as the weights-only unpickler maps them
                module, name = arg.split(" ", 1)
                if (module, name) in NAME_MAPPING:
                    module, name = NAME_MAPPING[(module, name)]
                elif module in IMPORT_MAPPING:
                    module = IMPORT_MAPPING[module]
                found.add(f"{module}.{name}")
            elif op.name in ("STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"):
                odd.add(op.name)  # the weights-only unpickler rejects them too; named in the error

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            pkls = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not pkls:
                raise CheckpointError(f"{path}: zip file without data.pkl: not a torch.save file")
            for n in pkls:
                with z.open(n) as fh:
                    scan(io.BytesIO(fh.read()))
    else:
        with open(path, "rb") as fh:
            for _ in range(5):
                if not fh.peek(1):
                    break
                scan(fh)
    return found, odd


def _resolve_globals(path: Path, names: set[str]) -> list:
    """Safe-globals entries (stand-in, name) for every non-allow-listed global, or CheckpointError."""
    from torch import _weights_only_unpickler as wu

    allowed = set(wu._get_allowed_globals())
    safe, refused = [], []
    for full in sorted(names - allowed):
        module, _, name = full.rpartition(".")
        root = module.split(".")[0]
        if full in LIGHTNING_DICT_CLASSES:
            safe.append((_PlainDict, full))
        elif full in _NUMPY_STANDINS:
            safe.append((_NUMPY_STANDINS[full], full))
        elif module == "builtins" and name in _DATA_BUILTINS:
            safe.append((getattr(builtins, name), full))
        elif full == "argparse.Namespace" or (
            name[:1].isupper()
            and root not in _NEVER_STUB
            and root not in sys.stdlib_module_names
            and all(part.isidentifier() for part in full.split("."))
        ):
            safe.append((_stub_class(module, name), full))
        else:
            refused.append(full)
    if any(fn is _np_reconstruct for fn, _ in safe):  # BUILD fills the stand-in array
        safe.append((_NpArray, "nre.features.nets.checkpoints._NpArray"))
    if refused:
        raise CheckpointError(
            f"{path}: refused: the file calls or builds {', '.join(refused[:6])}"
            + (f" (+{len(refused) - 6} more)" if len(refused) > 6 else "")
            + "; only tensors, containers, numbers, strings and numpy data are read (weights-only loading)"
        )
    return safe


def torch_load(path: str | Path) -> object:
    """Load a torch file without Lightning and without running any of its code (see the module doc)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        names, odd = scan_globals(path)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file ({type(e).__name__}: {e})") from e
    if odd:
        raise CheckpointError(f"{path}: refused: pickle opcodes {sorted(odd)} are not read (weights-only loading)")
    safe = _resolve_globals(path, names)
    try:
        with torch.serialization.safe_globals(safe):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused by the weights-only loader ({_one_line(e)})") from e
    except Exception as e:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file ({type(e).__name__}: {e})") from e
    return _finish_numpy(obj) if any(n in _NUMPY_STANDINS for n in names) else obj


def _one_line(e: Exception) -> str:
    """The informative line of torch's multi-line weights-only error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("WeightsUnpickler error") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[0] if lines else type(e).__name__


def _finish_numpy(obj):
    """Replace the numpy stand-ins by arrays and dtypes (containers keep their type)."""
    if isinstance(obj, _NpArray):
        return obj.array
    if isinstance(obj, _NpDtype):
        return obj.resolve()
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _finish_numpy(v)
        return obj
    if isinstance(obj, list):
        obj[:] = [_finish_numpy(v) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(_finish_numpy(v) for v in obj)
    return obj


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
