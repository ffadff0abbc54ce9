"""Checks of a workflow configuration, run when the Snakefile is parsed (so at dry-run time, before any job).

``check_config(config, config_file)`` raises a ``ConfigError`` whose message is one line
``<config file>: <key.path>: <problem>``:

- the JSON schema (workflow/schemas/config.schema.yaml), reported as its single most relevant error (not
  jsonschema's whole dump) with the key path; names (scenes, estimator and backend keys, ``name``) must match
  the schema's safe patterns, so they can never be read as shell syntax or leave a folder;
- one scene source (``data.synth``, ``sfm`` or ``calibrated``); ``data.calibrated``'s keys of its format, its
  folders and scenes on disk, the test / tuning scenes among them;
- ``table1_features`` among ``features``; ``timing.estimators`` among ``estimators``; the selection metric among
  the rate columns the thresholds make;
- every backend of ``features`` known, its option names known and its checkpoint files present
  (``nre.features.catalog``, no torch import);
- every estimator entry's class registered, its option names known and their values of the defaults' types, its
  grid sweeping only its hyperparameters or options with values of the declared types (``check_grid_values``,
  shared with ``nre estimate``): a grid ``threshold: ['four']`` used to run and fail every pair.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

from nre.errors import InputError

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(InputError):
    """A configuration value that cannot run; the message names the file and the key."""


def _key(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _short(value, n: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= n else r[: n - 3] + "..."


def schema_problem(config: dict, schema_path: str | Path = SCHEMA) -> tuple[str, str] | None:
    """(key path, problem) of the schema's most relevant error, or None when the config is valid."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if not errors:
        return None
    e = jsonschema.exceptions.best_match(errors)
    path = list(e.absolute_path)
    desc = e.schema.get("description", "") if isinstance(e.schema, dict) else ""
    if "propertyNames" in e.schema_path:
        return _key(path), f"key {_short(e.instance)} is not a valid name ({desc or e.validator_value})"
    if e.validator == "additionalProperties":
        extra = sorted(map(str, set(e.instance) - set(e.schema.get("properties", {}))))
        allowed = ", ".join(e.schema.get("properties", {})) or "none"
        more = f" (and {', '.join(extra[1:])})" if len(extra) > 1 else ""
        return _key([*path, extra[0]]), f"unknown key{more}; allowed here: {allowed}"
    if e.validator == "required":
        return _key(path), e.message
    if e.validator == "pattern":
        return _key(path), f"{_short(e.instance)} is not valid ({desc or 'pattern ' + e.validator_value})"
    if e.validator == "type":
        want = e.validator_value if isinstance(e.validator_value, str) else " or ".join(e.validator_value)
        return _key(path), f"{_short(e.instance)} is not of type {want}"
    if e.validator == "enum":
        return _key(path), f"{_short(e.instance)} is not one of {e.validator_value}"
    return _key(path), " ".join(e.message.split())[:200]


# ---- values against an estimator's declared types
def _kind(ref) -> str | None:
    if isinstance(ref, bool):
        return "bool"
    if isinstance(ref, numbers.Integral):
        return "int"
    if isinstance(ref, numbers.Real):
        return "number"
    if isinstance(ref, str):
        return "str"
    if isinstance(ref, (list, tuple)):
        return "list"
    if isinstance(ref, dict):
        return "dict"
    return None  # e.g. None: no declared type


_WANT = {"bool": "true or false", "int": "an integer", "number": "a number", "str": "a string"}


def _fits(value, kind: str | None) -> bool:
    if kind is None:
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def option_value_problem(name: str, value, default) -> str | None:
    """Why ``value`` cannot be option ``name`` whose default is ``default`` (None when it fits)."""
    kind = _kind(default)
    if kind == "number" and _fits(value, "int"):
        return None  # 1 for 1.0
    if not _fits(value, kind):
        want = _WANT.get(kind, f"a {kind}")
        return f"{_short(value)} is not {want} (default {_short(default)})"
    if kind == "list" and default and value:
        inner = _kind(default[0])
        inner = "number" if inner == "int" and all(_fits(v, "number") for v in default) else inner
        bad = [v for v in value if not (_fits(v, inner) or (inner == "number" and _fits(v, "int")))]
        if bad:
            return f"{_short(bad[0])} is not {_WANT.get(inner, inner)} (default {_short(default)})"
    return None


def check_grid_values(cls, grid: dict) -> list[tuple[str, str]]:
    """(key, problem) for a grid entry that ``cls`` cannot sweep: an unknown name, a value of the wrong type (numbers
    where the declared sweep has numbers, one of the declared strings where it has strings), an empty list."""
    out = []
    for k, values in grid.items():
        if k in cls.grid:
            declared = list(cls.grid[k])
        elif k in cls.defaults:
            declared = None
        else:
            out.append(
                (
                    k,
                    f"{cls.name} has no hyperparameter {k!r} (grid: {', '.join(sorted(cls.grid)) or '-'}; "
                    f"options: {', '.join(sorted(cls.defaults)) or '-'})",
                )
            )
            continue
        if not isinstance(values, list) or not values:
            out.append((k, f"a sweep is a non-empty list of values, got {_short(values)}"))
            continue
        for i, v in enumerate(values):
            if declared is None:
                p = option_value_problem(k, v, cls.defaults[k])
            elif declared and all(_fits(d, "number") for d in declared):
                p = None if _fits(v, "number") else f"{_short(v)} is not a number (default sweep {declared})"
            elif declared and all(isinstance(d, str) for d in declared):
                p = None if v in declared else f"{_short(v)} is not one of {declared}"
            else:
                p = None
            if p:
                out.append((f"{k}[{i}]", p))
    return out


def check_options(cls, options: dict) -> list[tuple[str, str]]:
    """(key, problem) for options ``cls`` does not know or whose values are not of the defaults' types."""
    known = {**cls.COMMON_OPTIONS, **cls.defaults}
    out = []
    for k, v in options.items():
        if k not in known and k not in cls.grid:
            out.append((k, f"{cls.name} has no option {k!r} (options: {', '.join(sorted(known))})"))
        elif k in known and known[k] is not None:
            p = option_value_problem(k, v, known[k])
            if p:
                out.append((k, p))
        elif k == "timeout_s" and v is not None and not _fits(v, "number"):
            out.append((k, f"{_short(v)} is not a number of seconds or null"))
    return out


def semantic_problems(config: dict, check_files: bool = True) -> list[tuple[str, str]]:
    """(key path, problem) beyond the schema: cross-references, backends, estimators (see the module doc);
    ``check_files=False`` does not look for checkpoint files."""
    from nre.features.catalog import BACKENDS, option_problems

    out = []
    feats = config.get("features") or {}
    if config.get("table1_features") not in feats:
        out.append(
            ("table1_features", f"{config.get('table1_features')!r} is not one of features ({', '.join(feats)})")
        )
    for name, entry in feats.items():
        for k, p in option_problems(name, (entry or {}).get("options") or {}, check_files):
            if k in getattr(BACKENDS.get(name), "weights", ()):
                p = f"{p.removeprefix(f'{k}: ')} ({BACKENDS[name].what})"
            out.append((f"features.{name}" + (f".options.{k}" if k else ""), p))
    ests = config.get("estimators") or {}
    timed = (config.get("timing") or {}).get("estimators") or []
    for i, e in enumerate(timed):
        if e not in ests:
            out.append((f"timing.estimators[{i}]", f"{e!r} is not one of estimators ({', '.join(ests)})"))
    thr = config.get("thresholds") or {}
    metric = (config.get("selection") or {}).get("metric")
    cols = [f"t>{t:g}" for t in thr.get("translation", [])] + [f"R>{r:g}deg" for r in thr.get("rotation_deg", [])]
    if metric and metric != "mean_failure" and metric not in cols:
        out.append(("selection.metric", f"{metric!r} is not a rate column of the thresholds ({', '.join(cols)})"))
    d = config.get("data") or {}
    both = set(d.get("test_scenes") or []) & set(d.get("tuning_scenes") or [])
    if both:
        out.append(("data.tuning_scenes", f"scenes {sorted(both)} are also test scenes"))
    out += data_source_problems(d, check_files)
    out += estimator_problems(ests)
    return out


_CALIBRATED_KEYS = {"strecha": ("root", "scenes"), "colmap": ("images", "model", "scene")}


def data_source_problems(data: dict, check_files: bool = True) -> list[tuple[str, str]]:
    """(key path, problem) of the scene source: at most one of data.synth / sfm / calibrated; data.calibrated's keys
    of its format only and, with ``check_files``, its folders present, its scenes found and data.test_scenes /
    tuning_scenes among them."""
    out = []
    sources = [k for k in ("synth", "sfm", "calibrated") if data.get(k)]
    if len(sources) > 1:
        out.append((f"data.{sources[1]}", f"data.{sources[0]} and data.{sources[1]} are exclusive (one scene source)"))
    cal = data.get("calibrated")
    if not cal or cal.get("format") not in _CALIBRATED_KEYS:
        return out
    fmt = cal["format"]
    other = "colmap" if fmt == "strecha" else "strecha"
    wrong = [k for k in _CALIBRATED_KEYS[other] if k in cal]
    if wrong:
        out.append((f"data.calibrated.{wrong[0]}", f"a key of format {other}, not {fmt}"))
    if not check_files:
        return out
    if fmt == "colmap":
        for k in ("images", "model"):
            if not Path(cal[k]).is_dir():
                out.append((f"data.calibrated.{k}", f"{cal[k]}: folder does not exist"))
        found = [cal["scene"]]
    else:
        from nre.data.calibrated import list_strecha_scenes

        try:
            found = list_strecha_scenes(cal["root"], cal.get("scenes"))
        except InputError as e:
            key = "scenes" if cal.get("scenes") and Path(cal["root"]).is_dir() else "root"
            return out + [(f"data.calibrated.{key}", str(e))]
    for k in ("test_scenes", "tuning_scenes"):
        unknown = sorted(set(data.get(k) or []) - set(found))
        if unknown:
            out.append((f"data.{k}", f"scenes {unknown} are not among data.calibrated's scenes ({', '.join(found)})"))
    return out


def estimator_problems(estimators: dict) -> list[tuple[str, str]]:
    from baselines import registry

    out = []
    for key, spec in estimators.items():
        spec = spec or {}
        where = f"estimators.{key}"
        try:
            cls = registry.get(spec.get("class", key))
        except (KeyError, TypeError) as e:
            out.append((where + (".class" if "class" in spec else ""), str(e.args[0] if e.args else e)))
            continue
        out += [(f"{where}.options.{k}", p) for k, p in check_options(cls, spec.get("options") or {})]
        out += [(f"{where}.grid.{k}", p) for k, p in check_grid_values(cls, spec.get("grid") or {})]
    return out


def check_config(
    config: dict,
    config_file: str | Path,
    overrides: dict | None = None,
    schema_path: str | Path = SCHEMA,
    check_files: bool = True,
) -> None:
    """Raise ``ConfigError('<file>: <key>: <problem>')`` for the first problem of ``config`` (schema first, then
    the semantic checks; a key set on the command line is marked ``(--config)``)."""

    def fail(key: str, problem: str):
        top = key.split(".")[0].split("[")[0]
        src = f"{config_file} (--config {top}=...)" if overrides and top in overrides else str(config_file)
        raise ConfigError(" ".join(f"{src}: {key}: {problem}".split()))

    p = schema_problem(config, schema_path)
    if p:
        fail(*p)
    problems = semantic_problems(config, check_files)
    if problems:
        more = f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else ""
        fail(problems[0][0], problems[0][1] + more)


def check_workflow_config(workflow, config: dict, schema_path: str | Path = SCHEMA) -> None:
    """``check_config`` for the Snakefile: names the config file Snakemake read (relative to the working directory)
    and marks keys given with ``--config``; a problem exits with one line (``SystemExit``, no traceback).
    ``snakemake --lint`` checks the workflow's code, not the data: checkpoint files are not looked for then."""
    import os
    import sys

    cfg_file = str(workflow.configfiles[-1]) if workflow.configfiles else "config/config.yaml"
    if not os.path.relpath(cfg_file).startswith(".."):
        cfg_file = os.path.relpath(cfg_file)
    overrides = getattr(getattr(workflow, "config_settings", None), "config", None) or {}
    try:
        check_config(config, cfg_file, overrides, schema_path, check_files="--lint" not in sys.argv)
    except ConfigError as e:
        raise SystemExit(f"config error: {e}") from None
