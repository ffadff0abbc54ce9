"""``nre estimators``: the registered estimators with their inputs, stages, default sweep grids and options."""

from __future__ import annotations

import json

HELP = "list the registered estimators (baselines/) with their hyperparameter grids and options"


def add_arguments(p):
    p.add_argument("names", nargs="*", help="only these (registered names or package.module:Class)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from nre.estimators import registry

    try:
        classes = [registry.get(n) for n in args.names] if args.names else list(registry.available().values())
    except (KeyError, TypeError) as e:
        raise SystemExit(f"nre estimators: {e.args[0] if e.args else e}") from e
    info = [registry.describe(c) for c in classes]
    errors = registry.import_errors()
    if args.json:
        print(json.dumps({"estimators": info, "import_errors": errors}, indent=2, default=str))
        return 0
    for d in info:
        print(f"{d['name']}  ({d['class']})")
        if d["doc"]:
            print(f"    {d['doc']}")
        print(
            f"    needs: {', '.join(d['needs']) or '-'}"
            + (f"; stages: {', '.join(d['stages'])}" if d["stages"] else "")
        )
        grid = ", ".join(f"{k}={v}" for k, v in d["grid"].items()) or "-"
        print(f"    grid ({d['n_settings']} settings): {grid}; default setting: {json.dumps(d['default_setting'])}")
        print(f"    options: {json.dumps(d['options'], default=str)}")
    for mod, err in errors.items():
        print(f"[import error] {mod}: {err}")
    return 1 if errors else 0
