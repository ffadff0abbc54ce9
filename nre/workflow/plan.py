"""The job plan of a configuration: which estimator runs on which feature backend, with which resolved options,
which jobs exist, and what the evaluation needs to know about each estimator (display name, parameter units,
stages, Table 2 membership). The Snakemake rules read it and only wire.

- Table 1: every estimator on the ``table1_features`` backend(s) (one Table 1 per backend); the first is the
  primary one (Fig. 4 pictures, Table 3 timing).
- Table 2 / Fig. 5: every estimator whose class is coarse-to-fine NRE (``TABLE2_CLASSES``, whatever its key) also
  runs on every other backend.
- Presets (``preset: paper``) are folded into the options here, so a job receives explicit options only.
- ``seeds: N`` repeats an estimator N times on the Table 1 backends with other random draws: repeat k > 0 runs as
  the job key ``<key>@<k>`` (its rows carry that label), so the evaluation reports the mean and spread over seeds.
- ``study_config`` is the configuration that decides the results (defaults and presets applied, every estimator's
  options complete, operational keys left out): its digest is what a committed reference records, so a reference
  goes stale when the study changes, not when a comment or a repeated default does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

TABLE2_CLASSES = ("nre_c2f",)  # estimators compared across feature backends (Table 2, Fig. 5)
REFERENCE_CLASS = "nre_single"  # Table 1's reference row: the first entry of this class (else the first entry)
# change no result that a reference is checked on (recall_thresholds: more summary columns from the same rows; the
# regression check compares failure rates, medians and AUCs)
OPERATIONAL_KEYS = ("name", "out", "chunks", "regress", "timing", "figures", "train", "recall_thresholds")


def jdump(obj) -> str:
    return json.dumps(obj if obj is not None else {}, sort_keys=True)


def overrides_option(plan) -> list[str]:
    """``nre regress``'s ``--overrides JSON`` for the run's ``--config key=value`` settings (none: no option)."""
    return ["--overrides", jdump(plan.overrides)] if plan.overrides else []


@dataclass(frozen=True)
class EstimatorEntry:
    """One ``estimators:`` entry of a config, resolved."""

    key: str  # the config key: labels its rows
    cls: str  # registered name (or package.module:Class)
    grid: dict | None  # the sweep (None: the estimator's own grid)
    options: dict  # explicit options, preset folded in
    label: str  # display name in tables and figures
    units: dict = field(default_factory=dict)
    stages: tuple = ()
    needs: tuple = ()
    seeds: int = 1

    @property
    def final_stage(self) -> str:
        return self.stages[-1] if self.stages else ""

    @property
    def table2(self) -> bool:
        return self.cls in TABLE2_CLASSES


def estimator_entry(key: str, spec: dict | None, seeds: int = 1) -> EstimatorEntry:
    from nre.errors import InputError
    from nre.estimators import registry

    spec = spec or {}
    cls = registry.get(spec.get("class", key))
    preset = spec.get("preset")
    options = dict(spec.get("options") or {})
    if preset is not None:
        if preset not in cls.presets:
            known = ", ".join(sorted(cls.presets)) or "none"
            raise InputError(f"estimators.{key}.preset: {cls.name} has no preset {preset!r} (presets: {known})")
        options = {**_jsonable(cls.presets[preset]), **options}
    label = spec.get("label") or (cls.display_name() if key == cls.name else f"{cls.display_name()} [{key}]")
    return EstimatorEntry(
        key,
        spec.get("class", key),
        spec.get("grid"),
        options,
        label,
        dict(cls.units),
        tuple(cls.stages or ()),
        tuple(sorted(cls.needs)),
        int(spec.get("seeds") or seeds),
    )


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d))  # tuples -> lists, as a config would write them


def missing_optional(config: dict) -> dict[str, str]:
    """Backends marked ``optional: true`` whose checkpoint files are not there -> why: left out of the plan (e.g.
    the official NRE / S2DNet weights in config/megadepth.yaml, which a learned backend can stand in for)."""
    from nre.features.catalog import BACKENDS, option_problems

    out = {}
    for name, spec in (config.get("features") or {}).items():
        spec = spec or {}
        if not spec.get("optional"):
            continue
        weights = getattr(BACKENDS.get(name), "weights", ())
        missing = [p for k, p in option_problems(name, features_options(name, spec)) if k in weights]
        if missing:
            out[name] = missing[0]
    return out


def features_options(name: str, spec: dict | None) -> dict:
    """A backend entry's options with its preset folded in."""
    from nre.features.catalog import resolve_options

    spec = spec or {}
    return resolve_options(name, spec.get("options"), spec.get("preset"))


class Plan:
    """The jobs and settings of a validated configuration with its defaults filled in
    (``nre.workflow.config.with_defaults``)."""

    def __init__(self, config: dict, overrides: dict | None = None):
        self.config = config
        self.overrides = dict(overrides or {})  # Snakemake's --config key=value, already merged into config
        self.name = config["name"]
        self.out = config["out"]
        self.root = config["data"]["root"]
        self.seed = int(config["seed"])
        self.n_chunks = int(config["chunks"])
        self.chunks = list(range(self.n_chunks))
        self.max_points = int(config["max_points"])
        self.left_out = missing_optional(config)  # optional backends without their checkpoints
        t1 = config["table1_features"]
        self.table1 = [f for f in (t1 if isinstance(t1, list) else [t1]) if f not in self.left_out]
        if not self.table1:
            raise ValueError(f"table1_features: every backend is left out ({'; '.join(self.left_out.values())})")
        self.table1_features = self.table1[0]  # the primary one
        self.eval_dir = f"{self.out}/eval"
        self.estimators = {k: estimator_entry(k, v, config["seeds"]) for k, v in config["estimators"].items()}
        self.features = {k: features_options(k, v) for k, v in config["features"].items() if k not in self.left_out}
        self.reference = next(
            (k for k, e in self.estimators.items() if e.cls == REFERENCE_CLASS), next(iter(self.estimators))
        )
        timing = config["timing"]
        self.timing_enabled = bool(timing["enabled"])
        self.timing_pairs = int(timing["n_pairs"])
        self.timed = [e for e in (timing["estimators"] or self.estimators) if e in self.estimators]
        self.map_pictures = int(config["figures"]["map_pictures"])

    def source_seed(self, source: str) -> int:
        """The seed of a scene source's job (``data.synth`` / ``sfm`` / ``calibrated``): its own ``seed`` if set,
        else the config's."""
        spec = self.config["data"].get(source) or {}
        return int(spec.get("seed", self.seed))

    # ------------------------------------------------------------------------------------------------ jobs
    @property
    def jobs(self) -> list[tuple[str, str]]:
        """(features, estimator key): every estimator on the Table 1 backends; Table 2's on every other one."""
        jobs = [(f, k) for f in self.table1 for k in self.estimators]
        jobs += [(f, k) for k, e in self.estimators.items() if e.table2 for f in self.features if f not in self.table1]
        jobs += [(f, f"{k}@{r}") for f in self.table1 for k, e in self.estimators.items() for r in range(1, e.seeds)]
        return jobs

    @staticmethod
    def split_job_key(job_key: str) -> tuple[str, int]:
        """(estimator key, repeat) of a job key ``<key>`` or ``<key>@<repeat>``."""
        key, _, repeat = job_key.partition("@")
        return key, int(repeat or 0)

    def rows_files(self) -> list[str]:
        return [f"{self.out}/rows/{f}/{e}/chunk{c}.parquet" for f, e in self.jobs for c in self.chunks]

    def features_json(self, name: str) -> str:
        return jdump(self.features[name])

    def estimator_args(self, job_key: str) -> dict:
        """What the estimate job of ``<key>[@<repeat>]`` is given: class, grid words, options JSON, repeat."""
        key, repeat = self.split_job_key(job_key)
        e = self.estimators[key]
        grid = ["--grid", jdump(e.grid)] if e.grid else []
        return {"cls": e.cls, "grid": grid, "options": jdump(e.options), "repeat": repeat}

    def timing_spec(self, key: str) -> str:
        e = self.estimators[key]
        return jdump({key: {"cls": e.cls, "grid": e.grid, "options": e.options}})

    # ------------------------------------------------------------------------------------------------ evaluation
    def info(self) -> dict:
        """What the tables, figures and report need about the study (``nre tables --info``, read by
        ``nre.eval.study.Study``): each estimator's display name, parameter units, class, stages, final stage, Table 2
        membership and seeds, the reference, the Table 1 backends, and the configured order of the estimators and
        backends (``order``, ``features``: the JSON's keys are sorted)."""
        return {
            "reference": self.reference,
            "table1_features": self.table1,
            "features": list(self.features),
            "order": list(self.estimators),
            "estimators": {
                k: {
                    "label": e.label,
                    "class": e.cls,
                    "units": e.units,
                    "stages": list(e.stages),
                    "final_stage": e.final_stage,
                    "table2": e.table2,
                    "seeds": e.seeds,
                }
                for k, e in self.estimators.items()
            },
        }

    def info_json(self) -> str:
        return jdump(self.info())


# ---------------------------------------------------------------------------------------------------- study
def study_config(config: dict) -> dict:
    """The part of a configuration (defaults filled in) that decides the results: operational keys dropped,
    presets folded in, and every estimator's complete options (its class defaults included), so that a changed code
    default makes a reference stale too."""
    from nre.estimators import registry

    study = {k: v for k, v in config.items() if k not in OPERATIONAL_KEYS and k != "seeds"}  # seeds: per estimator
    from nre.features.catalog import BACKENDS, default_options

    study["features"] = {
        k: _jsonable({**(default_options(k) if k in BACKENDS else {}), **features_options(k, v)})
        for k, v in (config.get("features") or {}).items()
    }
    ests = {}
    for key, spec in (config.get("estimators") or {}).items():
        e = estimator_entry(key, spec, config.get("seeds", 1))
        cls = registry.get(e.cls)
        ests[key] = {
            "class": e.cls,
            "grid": e.grid if e.grid is not None else dict(cls.grid),
            "options": _jsonable({**cls.COMMON_OPTIONS, **cls.defaults, **e.options}),
        }
        if e.seeds > 1:  # a repeated estimator adds rows; one run keeps the digest references were made with
            ests[key]["seeds"] = e.seeds
    study["estimators"] = ests
    return study


def _canonical(obj):
    """The study as the digest sees it: a null is an absent key (the schema's default), so a new optional key
    changes no digest; numbers as floats, so ``1`` in a config and ``1.0`` in a code default are one value."""
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return float(obj)
    return obj


def study_digest(config: dict) -> str:
    return hashlib.sha256(jdump(_canonical(study_config(config))).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------- Snakefile
def workflow_plan(workflow, config: dict) -> Plan:
    """For the Snakefile: check the config files (duplicate keys) and the config (schema, names, backends,
    estimators, presets), fill in the schema's defaults in place and return the plan. A problem exits with one line
    naming the file and key (``SystemExit``), at parse time, so a dry run reports it too."""
    import sys

    from nre.workflow.config import ConfigError, check_config, read_config_file, with_defaults

    log = logging.getLogger("nre.workflow")

    files = [str(f) for f in workflow.configfiles] or ["config/config.yaml"]
    shown = [os.path.relpath(f) if not os.path.relpath(f).startswith("..") else f for f in files]
    overrides = getattr(getattr(workflow, "config_settings", None), "config", None) or {}
    try:
        for f in files:
            if Path(f).exists():
                read_config_file(f)  # duplicate keys, which Snakemake's own YAML reading lets through
        check_config(config, " + ".join(shown), overrides, check_files="--lint" not in sys.argv)
        filled = with_defaults(config)
        config.clear()
        config.update(filled)
        plan = Plan(config, overrides)
        for name, why in plan.left_out.items():
            log.warning("features.%s (optional) is left out: %s", name, why)
        return plan
    except (ConfigError, ValueError) as e:  # InputError is a ValueError
        raise SystemExit(f"config error: {' '.join(str(e).split())}") from None
