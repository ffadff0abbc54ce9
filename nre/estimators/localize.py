"""One pair, several estimators: ``nre localize`` on a pair file in the official NRE sample format.

The pair's maps are computed in memory (``nre.maps.cache.build_problem``: the same coarse sparse maps and dense-level
argmax matches ``nre maps`` caches), then every chosen estimator runs through ``nre.estimators.runner.run_on_problem``
with its own seed derived from (seed, pair id, estimator): without a grid at its default setting
(``Estimator.default_setting``), with a grid (from ``--grid`` or a config entry) every setting of it, as the workflow
does. Estimators, options and grids come from the names asked for, a workflow config's ``estimators:`` entries
({class, grid, options}; its ``features:`` give the backend) and ``NAME=JSON`` overrides.

The JSON written: ``{"pair", "pair_id", "n_points", "features", "features_options", "maps_seconds", "estimators":
{LABEL: {success, R, t, rotation_error_deg, translation_error, runtime_s, params, failure_reason, inliers?,
stages?, sweep?}}}``. An estimator with several stages (nre_c2f: p3p, coarse_gnc, fine_gnc) reports its last stage
at the top level and each stage under ``stages`` with the same fields; a swept one reports its default setting (the
first of the grid if the default is not in it) at the top level and every setting under ``sweep``. Errors are null
for a failure.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from nre.errors import FileFormatError, OptionError
from nre.estimators.runner import Configured, configure, run_on_problem

PROVIDED = frozenset({"matches", "coarse_maps", "features"})  # what build_problem gives an estimator
NOT_IN_ALL = {"imported"}  # needs poses from a file
DEFAULT_ESTIMATORS = ["nre_c2f"]


def select_estimators(names: list[str]) -> list[str]:
    """The requested registered names, or for ``all`` every registered estimator whose needs a pair file's inputs
    meet; an unknown name is an ``UnknownNameError`` listing the available ones."""
    from nre.estimators import registry
    from nre.estimators.runner import estimator_class

    if names != ["all"]:
        for n in names:
            estimator_class(n)
        return list(names)
    return [n for n, cls in registry.available().items() if n not in NOT_IN_ALL and set(cls.needs) <= PROVIDED]


def read_config(path) -> dict:
    """The ``estimators:`` and ``features:`` (and the primary Table 1 backend) of a workflow config file, or of
    several layered in order, as the workflow resolves them: duplicate keys refused, presets folded into the
    options, an unknown estimator class, option, preset or grid value a ``ConfigError`` naming the file and key."""
    from nre.workflow.config import ConfigError, estimator_problems, load_config
    from nre.workflow.plan import estimator_entry, features_options

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    for p in paths:
        if Path(p).is_dir():
            raise FileFormatError(f"{p}: is a directory, not a config file (YAML)")
    try:
        cfg = load_config(paths)
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{paths[-1]}: not a YAML config ({e})") from None
    where = " + ".join(map(str, paths))
    if not isinstance(cfg.get("estimators") or {}, dict):
        raise FileFormatError(f"{where}: not a workflow config (no estimators: mapping)")
    ests = {k: dict(v or {}) for k, v in (cfg.get("estimators") or {}).items()}
    problems = estimator_problems(ests)
    if problems:
        raise ConfigError(f"{where}: {problems[0][0]}: {problems[0][1]}")
    resolved = {}
    for k, v in ests.items():
        e = estimator_entry(k, v)
        resolved[k] = {"class": e.cls, "grid": e.grid, "options": e.options}
    feats = {k: {"options": features_options(k, v)} for k, v in (cfg.get("features") or {}).items()}
    t1 = cfg.get("table1_features")
    return {"estimators": resolved, "features": feats, "table1_features": t1[0] if isinstance(t1, list) else t1}


def choose(
    names: list[str] | None,
    config: dict | None = None,
    options: dict[str, dict] | None = None,
    grid: dict[str, dict] | None = None,
) -> list[Configured]:
    """The estimators to run: ``names`` (``["all"]``: every registered one the inputs allow; default: the config's
    entries, else nre_c2f), each from its config entry when the config has one, its options updated and its grid
    replaced by ``options`` / ``grid`` (label -> JSON object)."""
    entries = (config or {}).get("estimators") or {}
    if names is None:
        names = list(entries) or DEFAULT_ESTIMATORS
    elif names == ["all"]:
        names = select_estimators(["all"])
    for flag, given in (("--options", options or {}), ("--grid", grid or {})):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise OptionError(f"{flag} {unknown[0]}: not one of the estimators run ({', '.join(names)})")
    out = []
    for label in names:
        entry = entries.get(label, {})
        opts = {**(entry.get("options") or {}), **(options or {}).get(label, {})}
        g = (grid or {}).get(label) or entry.get("grid")
        out.append(configure(entry.get("class", label), options=opts, grid=g, label=label))
    return out


def _num(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def pose_fields(res, gt) -> dict:
    """What the JSON reports of one result: success, pose, errors against ``gt``, run time, failure reason."""
    from nre.geometry import pose_error

    ok = bool(res.success and res.pose is not None)
    d = {"success": ok, "runtime_s": _num(res.runtime_s), "failure_reason": res.failure_reason}
    d["R"] = res.pose.R.tolist() if ok else None
    d["t"] = res.pose.t.tolist() if ok else None
    e = pose_error(res.pose if ok else None, gt)
    d["rotation_error_deg"] = _num(e.rotation_deg)
    d["translation_error"] = _num(e.translation)
    if res.inliers is not None:
        d["inliers"] = int(res.inliers)
    return d


def _entry(results, setting: dict, gt, staged: bool) -> dict:
    entry = {**pose_fields(results[-1], gt), "params": setting}
    if len(results) > 1 or staged:
        entry["stages"] = {r.stage: pose_fields(r, gt) for r in results}
    return entry


@dataclass
class Localization:
    """The results of every estimator on one pair (``to_json()``) and their table (``table()``)."""

    summary: dict
    lines: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return self.summary

    def table(self) -> str:
        return "\n".join(self.lines)


def localize(
    *,
    pair: str | Path,
    estimators: list[str] | None = None,
    config: str | Path | None = None,
    options: dict[str, dict] | None = None,
    grid: dict[str, dict] | None = None,
    features: str | None = None,
    features_options: dict | None = None,
    max_points: int = 1000,
    seed: int = 0,
    threads: int | None = None,
    json_out: str | Path | None = None,
) -> Localization:
    """Estimate the target pose of the pair file ``pair`` with each estimator (see the module docstring for the
    choice of estimators and settings); the backend is ``features`` (default: the config's table1_features, else
    dsift) with ``features_options`` (default: the config's). Writes ``json_out`` when given."""
    from nre.data.pairdata import PairData
    from nre.features import get_backend
    from nre.maps.cache import build_problem
    from nre.threads import set_threads

    set_threads(threads)
    cfg = read_config(config) if config is not None else None
    chosen = choose(estimators, cfg, options, grid)
    feats = cfg.get("features", {}) if cfg else {}
    features = features or (cfg or {}).get("table1_features") or next(iter(feats), None) or "dsift"
    if features_options is None:
        features_options = dict((feats.get(features) or {}).get("options") or {})
    data = PairData.load_npz(pair)
    backend = get_backend(features, **features_options)
    problem = build_problem(data, backend, max_points, seed)
    secs = problem.extras.get("seconds")
    out = {
        "pair": str(pair),
        "pair_id": data.pair_id,
        "n_points": problem.n,
        "features": features,
        "features_options": features_options,
        "maps_seconds": None if secs is None else float(secs[-1]),
        "estimators": {},
    }
    shown = []  # (name, result) per table line
    gt = data.target_pose
    for c in chosen:
        settings = c.settings if c.grid is not None else [c.estimator.default_setting()]
        results = run_on_problem(c.estimator, problem, settings, seed=seed).results
        entries = [_entry(r, s, gt, bool(c.cls.stages)) for r, s in zip(results, settings)]
        top = settings.index(c.default_setting()) if len(settings) > 1 else 0
        out["estimators"][c.label] = dict(entries[top], **({"sweep": entries} if len(entries) > 1 else {}))
        for setting, res in zip(settings, results):
            name = c.label if len(settings) == 1 else f"{c.label} " + ",".join(f"{k}={v}" for k, v in setting.items())
            shown += [(name, r) for r in res]
    width = max([20, *(len(name) for name, _ in shown)])
    header = (
        f"{'estimator':{width}s} {'stage':11s} {'ok':3s} {'rot err (deg)':>13s} {'trans err':>10s} {'time (s)':>9s}"
    )
    lines = [f"pair {data.pair_id}: {problem.n} points, features {features}", header, "-" * len(header)]
    lines += [_line(name, r, gt, width) for name, r in shown]
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(out, indent=2))
    return Localization(out, lines)


def _line(name: str, r, gt, width: int) -> str:
    f = pose_fields(r, gt)
    rot = "-" if f["rotation_error_deg"] is None else f"{f['rotation_error_deg']:.3f}"
    tr = "-" if f["translation_error"] is None else f"{f['translation_error']:.4f}"
    rt = "-" if f["runtime_s"] is None else f"{f['runtime_s']:.3f}"
    ok = "yes" if f["success"] else "NO"
    return f"{name:{width}s} {r.stage or '-':11s} {ok:3s} {rot:>13s} {tr:>10s} {rt:>9s}" + (
        "" if f["success"] else f"  ({r.failure_reason})"
    )
