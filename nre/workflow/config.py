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

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


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


def _strict_loader():
    """A YAML SafeLoader that refuses a key repeated in one mapping: plain YAML keeps the last value silently, so a
    second ``estimators:`` pasted at the end of a file would drop every estimator of the first."""
    import yaml

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first at line {seen[key] + 1}); "
                    "YAML would keep only the last one"
                )
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep=deep)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Strict


def read_config_file(path: str | Path) -> dict:
    """One config file (YAML), refusing duplicate keys; errors are one line naming the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    try:
        data = yaml.load(text, Loader=_strict_loader())
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a mapping of keys, got {type(data).__name__}")
    return data


def merge(base: dict, over: dict) -> dict:
    """``over`` layered on ``base`` as Snakemake layers ``--configfile a.yaml b.yaml``: mappings merge key by key,
    any other value (a list included) replaces the earlier one."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(paths, overrides: dict | None = None) -> dict:
    """The config of one or several files layered in order (then ``overrides``), duplicate keys refused."""
    cfg: dict = {}
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        cfg = merge(cfg, read_config_file(p))
    return merge(cfg, overrides or {})


def _schema(schema_path: str | Path = SCHEMA) -> dict:
    import yaml

    return yaml.safe_load(Path(schema_path).read_text())


def with_defaults(config: dict, schema_path: str | Path = SCHEMA) -> dict:
    """The config with every default of the schema filled in where a key is absent (the schema is the one source
    of defaults; rules and the library then read keys directly)."""
    import copy

    def fill(value, schema):
        if not isinstance(schema, dict) or not isinstance(value, dict):
            return value
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = fill(value[key], sub)
        return value

    return fill(copy.deepcopy(config), _schema(schema_path))


def schema_problem(config: dict, schema_path: str | Path = SCHEMA) -> tuple[str, str] | None:
    """(key path, problem) of the schema's most relevant error, or None when the config is valid."""
    import jsonschema

    schema = _schema(schema_path)
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
    """(key path, problem) beyond the schema, on a config with its defaults filled in: cross-references, data
    sources, backends, estimators (see the module doc). ``check_files=False`` looks for no file (``--lint``)."""
    from nre.features.catalog import BACKENDS, option_problems, resolve_options

    out = []
    feats = config.get("features") or {}
    t1 = config.get("table1_features")
    for i, name in enumerate(t1 if isinstance(t1, list) else [t1]):
        if name not in feats:
            key = f"table1_features[{i}]" if isinstance(t1, list) else "table1_features"
            out.append((key, f"{name!r} is not one of features ({', '.join(feats)})"))
    for name, entry in feats.items():
        entry = entry or {}
        try:
            opts = resolve_options(name, entry.get("options"), entry.get("preset"))
        except InputError as e:
            out.append((f"features.{name}.preset", str(e)))
            continue
        for k, p in option_problems(name, opts, check_files):
            if entry.get("optional") and k in getattr(BACKENDS.get(name), "weights", ()):
                continue  # an optional backend without its checkpoints is left out of the plan, not an error
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
    out += data_problems(config, check_files)
    out += estimator_problems(ests)
    return out


SCENE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"


def sfm_scene(config: dict) -> str | None:
    """The scene name of a ``data.sfm`` config: its ``scene``, else the photographs folder's name (its parent's when
    the folder is called ``images``, as ``nre sfm`` names it)."""
    import os

    sfm = config["data"].get("sfm")
    if not sfm:
        return None
    if sfm.get("scene"):
        return sfm["scene"]
    images = Path(os.path.normpath(sfm["images"]))  # as `nre sfm` names it (nre.data.reconstruct)
    return images.parent.name if images.name == "images" else images.name


def calibrated_scenes(config: dict) -> list[str]:
    """The scenes of ``data.calibrated`` (every scene folder of a Strecha root, or the one COLMAP scene)."""
    cal = config["data"].get("calibrated")
    if not cal:
        return []
    if cal["format"] == "strecha":
        from nre.data.calibrated import list_strecha_scenes

        return list_strecha_scenes(cal["root"], cal.get("scenes"))
    return [cal["scene"]]


def test_scenes(config: dict) -> list[str] | None:
    """The test scenes a config names: ``data.test_scenes``, else the ``data.sfm`` scene, else the calibrated scenes
    that are not tuning scenes; None: the test split of ROOT/scenes.yaml."""
    d = config["data"]
    if d.get("test_scenes"):
        return d["test_scenes"]
    if d.get("sfm"):
        return [sfm_scene(config)]
    if d.get("calibrated"):
        return [s for s in calibrated_scenes(config) if s not in (d.get("tuning_scenes") or [])]
    return None


def data_problems(config: dict, check_files: bool = True) -> list[tuple[str, str]]:
    """Where the scenes come from: one source; a real data root or photographs folder that exists (named when it
    does not, at dry-run time); disjoint test and tuning scenes; a source for the tuning pairs."""
    import re

    d, p = config.get("data") or {}, config.get("pairs") or {}
    out = []
    out += data_source_problems(d, check_files)
    if d.get("sfm"):
        scene = sfm_scene(config)
        if not re.fullmatch(SCENE_NAME, scene):
            out.append(("data.sfm.scene", f"scene name {scene!r} (from the images folder) may only use letters, "
                        "digits, _ . + -; set data.sfm.scene"))  # fmt: skip
        if check_files and not Path(d["sfm"]["images"]).is_dir():
            out.append(("data.sfm.images", f"{d['sfm']['images']}: no such folder of photographs"))
    elif not (d.get("synth") or d.get("calibrated")) and check_files:
        root_problems = real_root_problems(d, p)
        if root_problems:
            return out + root_problems  # the scenes are not there: nothing else about them is worth saying
    both = set(d.get("test_scenes") or []) & set(d.get("tuning_scenes") or [])
    if both:
        out.append(("data.tuning_scenes", f"scenes {sorted(both)} are also test scenes"))
    same = p.get("tuning_from", "scenes") == "same_scene"
    tun = d.get("tuning_scenes")
    if same:
        if tun:
            out.append(("data.tuning_scenes", "pairs.tuning_from: same_scene takes the tuning pairs from the test "
                        "scenes' images; remove data.tuning_scenes"))  # fmt: skip
        if not p.get("n_tuning"):
            out.append(("pairs.n_tuning", "0 with pairs.tuning_from: same_scene (no tuning pairs)"))
    elif p.get("n_tuning"):
        if tun is not None and len(tun) == 0:
            out.append(("data.tuning_scenes", "empty but pairs.n_tuning > 0"))
        elif tun is None and not d.get("synth") and not (Path(d.get("root", "")) / "scenes.yaml").exists():
            out.append(("pairs.n_tuning", f"> 0 but no tuning scenes (data.tuning_scenes is null and "
                        f"{d.get('root')}/scenes.yaml does not exist). A single-scene run needs pairs.tuning_from: "
                        "same_scene (tuning pairs from a share of its images) or pairs.n_tuning: 0 (the fair "
                        "protocol then reports n/a)"))  # fmt: skip
    return out


def real_root_problems(data: dict, pairs: dict) -> list[tuple[str, str]]:
    """Real data (no synth, sfm or calibrated source): ``data.root`` is a folder; the test scenes are named
    (``data.test_scenes``) or listed by ROOT/scenes.yaml; at least one named test scene, and one named tuning scene
    when tuning pairs come from them, is a scene folder of ROOT with a COLMAP model (a missing one among others is
    skipped with a warning by ``nre pairs``)."""
    from nre.data.scenes import find_models

    root = Path(data.get("root", ""))
    if not root.is_dir():
        return [("data.root", f"{root}: no such data folder (one folder per scene, MegaDepth layout)")]

    def listed() -> str:
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and find_models(p))
        if not found:
            return f"no scene found in {root} (<scene>/sparse/... with <scene>/images/)"
        return f"scenes found in {root}: {', '.join(found[:8])}{', ...' if len(found) > 8 else ''}"

    if not data.get("test_scenes"):
        if not (root / "scenes.yaml").exists():
            return [("data.test_scenes", f"not set and {root}/scenes.yaml (a split list) does not exist: name the "
                     f"test scenes; {listed()}")]  # fmt: skip
        return []
    out = []
    same = pairs.get("tuning_from", "scenes") == "same_scene"
    named = [("test_scenes", data["test_scenes"])]
    if data.get("tuning_scenes") and pairs.get("n_tuning") and not same:
        named.append(("tuning_scenes", data["tuning_scenes"]))
    for key, scenes in named:
        if not any((root / str(s)).is_dir() and find_models(root / str(s)) for s in scenes):
            out.append((f"data.{key}", f"none of {_short(scenes)} is a scene of {root}; {listed()}"))
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
    from nre.estimators import registry

    out = []
    for key, spec in estimators.items():
        spec = spec or {}
        where = f"estimators.{key}"
        try:
            cls = registry.get(spec.get("class", key))
        except (KeyError, TypeError) as e:
            out.append((where + (".class" if "class" in spec else ""), str(e.args[0] if e.args else e)))
            continue
        preset = spec.get("preset")
        if preset is not None and preset not in cls.presets:
            known = ", ".join(sorted(cls.presets)) or "none"
            out.append((f"{where}.preset", f"{cls.name} has no preset {preset!r} (presets: {known})"))
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

    def on_command_line(key: str) -> str | None:
        """The top-level key of ``key`` when Snakemake's --config set it, else None."""
        top = key.split(".")[0].split("[")[0]
        return top if overrides and top in overrides else None

    def fail(key: str, problem: str):
        top = on_command_line(key)
        src = f"{config_file} (--config {top}=...)" if top else str(config_file)
        raise ConfigError(" ".join(f"{src}: {key}: {problem}".split()))

    p = schema_problem(config, schema_path)
    if p:
        key, problem = p
        if on_command_line(key) and problem.endswith("is not of type boolean"):
            problem += " (on Snakemake's command line a boolean is True or False)"
        fail(key, problem)
    problems = semantic_problems(with_defaults(config, schema_path), check_files)
    if problems:
        more = f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else ""
        fail(problems[0][0], problems[0][1] + more)
