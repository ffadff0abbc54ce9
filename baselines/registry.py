"""Estimator discovery: every module under ``baselines/`` is scanned for ``Estimator`` subclasses with a ``name``.

A config entry names an estimator by that ``name`` (or by ``package.module:ClassName`` for code outside baselines/)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from baselines.base import Estimator

_SKIP = {"base", "registry"}


def _scan() -> dict[str, type[Estimator]]:
    import baselines

    found: dict[str, type[Estimator]] = {}
    for info in pkgutil.iter_modules(baselines.__path__):
        if info.name in _SKIP or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"baselines.{info.name}")
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, Estimator) and obj is not Estimator and obj.name and not inspect.isabstract(obj):
                if obj.name in found and found[obj.name] is not obj:
                    raise RuntimeError(
                        f"estimator name {obj.name!r} is defined twice: "
                        f"{found[obj.name].__module__} and {obj.__module__}"
                    )
                found[obj.name] = obj
    return found


def available() -> dict[str, type[Estimator]]:
    """name -> estimator class, for every estimator under baselines/."""
    return dict(sorted(_scan().items()))


def get(name: str) -> type[Estimator]:
    """The estimator class called ``name``, or ``package.module:ClassName``."""
    if ":" in name:
        mod, cls = name.split(":", 1)
        obj = getattr(importlib.import_module(mod), cls)
        if not (inspect.isclass(obj) and issubclass(obj, Estimator)):
            raise TypeError(f"{name} is not an Estimator subclass")
        return obj
    found = _scan()
    if name not in found:
        raise KeyError(f"unknown estimator {name!r}; available: {', '.join(sorted(found)) or 'none'}")
    return found[name]
