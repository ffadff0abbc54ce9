"""What ``nre estimators`` prints: the registered estimators with their inputs, stages, grids and options, and the
plug-in modules that failed to import."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class Listing:
    text: str
    import_errors: dict[str, str]  # module -> error, for plug-ins under baselines/ that failed to import


def list_estimators(*, names: list[str] | None = None, as_json: bool = False) -> Listing:
    """``names`` (registered names or ``package.module:Class``; default: every registered estimator) described as
    text or JSON ``{"estimators": [...], "import_errors": {...}}``; an unknown name is an ``UnknownNameError``."""
    from nre.estimators import registry
    from nre.estimators.runner import estimator_class

    classes = [estimator_class(n) for n in names] if names else list(registry.available().values())
    info = [registry.describe(c) for c in classes]
    errors = registry.import_errors()
    if as_json:
        return Listing(json.dumps({"estimators": info, "import_errors": errors}, indent=2, default=str), errors)
    lines = []
    for d in info:
        lines.append(f"{d['name']}  ({d['class']})")
        if d["doc"]:
            lines.append(f"    {d['doc']}")
        stages = f"; stages: {', '.join(d['stages'])}" if d["stages"] else ""
        lines.append(f"    needs: {', '.join(d['needs']) or '-'}{stages}")
        grid = ", ".join(f"{k}={v}" for k, v in d["grid"].items()) or "-"
        lines.append(
            f"    grid ({d['n_settings']} settings): {grid}; default setting: {json.dumps(d['default_setting'])}"
        )
        lines.append(f"    options: {json.dumps(d['options'], default=str)}")
    lines += [f"[import error] {mod}: {err}" for mod, err in errors.items()]
    return Listing("\n".join(lines), errors)
