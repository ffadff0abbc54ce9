"""Estimator discovery: the paper's estimators (``nre.solver.estimators``) and every module under ``baselines/`` are
scanned for ``Estimator`` subclasses with a ``name``.

A config entry names an estimator by that ``name`` (or by ``package.module:ClassName`` for code outside baselines/).

- Two classes registering the same ``name`` is an error naming both modules.
- An unknown name is a ``KeyError`` listing every available name.
- A module under baselines/ that fails to import does not hide the others: ``get`` of another name still works,
  ``get`` of a name that may live in the broken module reports the module and its import error, and
  ``import_errors()`` lists them (``nre estimators`` prints them).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from nre.estimators.base import Estimator

BUILTIN = ("nre.solver.estimators",)  # the paper's estimators; plug-ins live in the baselines package


def _classes(mod) -> list[type[Estimator]]:
    return [
        obj
        for _, obj in inspect.getmembers(mod, inspect.isclass)
        if issubclass(obj, Estimator) and obj is not Estimator and obj.name and obj.implemented()
    ]


def _modules() -> list[str]:
    """The modules scanned: the built-in ones, then every module of the ``baselines`` package (found by name, so
    the library never imports a plug-in statically)."""
    names = list(BUILTIN)
    try:
        baselines = importlib.import_module("baselines")
    except ImportError:  # an installation without the plug-in folder: the paper's estimators only
        return names
    names += [
        f"baselines.{info.name}"
        for info in sorted(pkgutil.iter_modules(baselines.__path__), key=lambda i: i.name)
        if not info.name.startswith("_")
    ]
    return names


def _scan() -> tuple[dict[str, type[Estimator]], dict[str, str]]:
    """(name -> class, module -> import error) over the scanned modules."""
    found: dict[str, type[Estimator]] = {}
    errors: dict[str, str] = {}
    for modname in _modules():
        try:
            mod = importlib.import_module(modname)
        except Exception as e:  # one broken module must not hide every other estimator
            errors[modname] = f"{type(e).__name__}: {e}"
            continue
        for obj in _classes(mod):
            if obj.name in found and found[obj.name] is not obj:
                raise RuntimeError(
                    f"estimator name {obj.name!r} is defined twice: "
                    f"{found[obj.name].__module__}.{found[obj.name].__qualname__} and "
                    f"{obj.__module__}.{obj.__qualname__}; rename one"
                )
            found[obj.name] = obj
    return found, errors


def available() -> dict[str, type[Estimator]]:
    """name -> estimator class, for every estimator under baselines/ (sorted by name)."""
    return dict(sorted(_scan()[0].items()))


def import_errors() -> dict[str, str]:
    """module -> import error, for the modules under baselines/ that could not be imported."""
    return _scan()[1]


def get(name: str) -> type[Estimator]:
    """The estimator class called ``name``, or ``package.module:ClassName``."""
    if ":" in name:
        modname, clsname = name.split(":", 1)
        try:
            mod = importlib.import_module(modname)
        except ImportError as e:
            raise KeyError(f"estimator {name!r}: cannot import module {modname!r} ({e})") from e
        obj = getattr(mod, clsname, None)
        if obj is None:
            raise KeyError(f"estimator {name!r}: module {modname!r} has no attribute {clsname!r}")
        if not (inspect.isclass(obj) and issubclass(obj, Estimator)):
            raise TypeError(f"{name} is not an Estimator subclass")
        if not obj.implemented():
            raise TypeError(f"{name} implements neither estimate nor estimate_many")
        return obj
    found, errors = _scan()
    if name not in found:
        msg = f"unknown estimator {name!r}; available: {', '.join(sorted(found)) or 'none'}"
        if errors:
            msg += "; modules that failed to import: " + "; ".join(f"{m} ({e})" for m, e in errors.items())
        raise KeyError(msg)
    return found[name]


def describe(cls: type[Estimator]) -> dict:
    """What ``nre estimators`` prints for one estimator: where it lives, what it needs, its grid and defaults."""
    own = cls.__dict__.get("__doc__")  # not the inherited Estimator docstring
    doc = inspect.cleandoc(own) if own else (inspect.getdoc(inspect.getmodule(cls)) or "")
    return {
        "name": cls.name,
        "label": cls.display_name(),
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "needs": sorted(cls.needs),
        "stages": list(cls.stages) if cls.stages else None,
        "grid": {k: list(v) for k, v in sorted(cls.grid.items())},
        "units": dict(cls.units),
        "n_settings": len(cls.settings(cls, None)),
        "default_setting": cls.default_setting(cls),
        "options": {**cls.COMMON_OPTIONS, **cls.defaults},
        "presets": {k: dict(v) for k, v in sorted(cls.presets.items())},
        "doc": doc.split("\n\n")[0].replace("\n", " "),
    }
