"""What the evaluation knows about the study beyond the result rows: each estimator's display name, parameter units,
class, stages, Table 2 membership and number of seeds, the Table 1 reference and backends, and the configured order
(``nre.workflow.plan.Plan.info``, passed as ``nre tables --info``). Tables, figures and the report take names, the
order, the final stages and the human-readable settings from here, never from estimator names hard-coded in the
evaluation.

Without the info (rows-only use, e.g. tests or an evaluation folder from elsewhere) ``Study.fallback`` derives what
it can from the rows: labels are the keys, units unknown; the estimators in the order of the rows (the workflow
passes the row files in the configured order), the reference (``--reference``, else the first) first; an
estimator's stages in the order its rows first give them (the runner writes them in the declared order), the last
one final; the Table 1 backends are those every estimator ran on, Table 2 holds the estimators with rows on another
backend (the plan runs only Table 2's there) or, without one, the multi-stage ones.

Repeats of a randomised estimator (``seeds: N``) have rows labelled ``<key>@1`` ... ``<key>@<N-1>``
(``split_repeat``); tables, selection and the main figures leave them out, the seeds table reports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

CATEGORY_ORDER = ("easy", "medium", "hard", "all")
STAGE_LABELS = {"": "", "p3p": "P3P (MSAC)", "coarse_gnc": "+ coarse GNC", "fine_gnc": "+ fine GNC"}  # display only
NONE = "—"  # an empty cell: nothing to show (no hyperparameter, no value)


def split_repeat(key: str) -> tuple[str, int]:
    """(estimator key, repeat) of a row label ``<key>`` or ``<key>@<repeat>`` (``Plan.split_job_key``)."""
    base, _, rep = str(key).partition("@")
    return base, int(rep) if rep.isdigit() else 0


def is_repeat(key: str) -> bool:
    return split_repeat(key)[1] > 0


def category_rank(cat: str) -> int:
    return CATEGORY_ORDER.index(cat) if cat in CATEGORY_ORDER else len(CATEGORY_ORDER)


def _num(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float)):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_num(x) for x in v)
    if v is None:
        return "none"
    return str(v)


def setting_text(params, units: dict | None = None) -> str:
    """A hyperparameter setting as people write it: ``threshold 8 px``, ``loss cauchy, scale 0.4 (descriptor
    distance)``; ``—`` for an estimator without hyperparameters; a text that is not a JSON object as it is (e.g.
    ``n/a: no tuning pairs``)."""
    units = units or {}
    if isinstance(params, str):
        try:
            p = json.loads(params)
        except json.JSONDecodeError:
            return params
    else:
        p = params
    if not isinstance(p, dict):
        return NONE if p is None or (isinstance(p, float) and p != p) else str(params)
    if not p:
        return NONE
    parts = []
    for k in sorted(p):
        u = units.get(k, "")
        v = _num(p[k])
        if u and " " not in u and len(u) <= 4:
            v = f"{v} {u}"
        elif u:
            v = f"{v} ({u})"
        parts.append(f"{k.replace('_', ' ')} {v}")
    return ", ".join(parts)


@dataclass
class Study:
    """The study information of ``Plan.info`` (see the module docstring); build it with ``Study.load`` /
    ``Study.fallback`` and complete it from the rows with ``with_rows``."""

    estimators: dict[str, dict] = field(default_factory=dict)  # key -> label, class, units, stages, final_stage, ...
    order: list[str] = field(default_factory=list)  # the configured order of the keys
    reference: str | None = None
    table1_features: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)  # every backend, configured order
    from_info: bool = False

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def load(cls, info=None, *, reference: str | None = None, table1_features=None) -> Study:
        """From ``Plan.info()`` (a dict, its JSON text or a JSON file); ``None``: an empty study (``with_rows``
        fills it). ``reference`` / ``table1_features`` apply when the info does not name them."""
        if isinstance(info, (str, Path)) and not str(info).lstrip().startswith("{"):
            info = json.loads(Path(info).read_text())
        elif isinstance(info, str):
            info = json.loads(info)
        info = info or {}
        ests = {k: dict(v) for k, v in (info.get("estimators") or {}).items()}
        order = [k for k in info.get("order") or [] if k in ests] + sorted(set(ests) - set(info.get("order") or []))
        t1 = info.get("table1_features") or table1_features or []
        t1 = [t1] if isinstance(t1, str) else list(t1)
        return cls(
            estimators=ests,
            order=order,
            reference=info.get("reference") or reference,
            table1_features=t1,
            features=list(info.get("features") or []),
            from_info=bool(ests),
        )

    @classmethod
    def fallback(cls, df: pd.DataFrame, *, reference: str | None = None, table1_features=None) -> Study:
        return cls.load(None, reference=reference, table1_features=table1_features).with_rows(df)

    def with_rows(self, df: pd.DataFrame) -> Study:
        """Estimators, stages, backends and the reference the info does not give, from the rows (``df``: evaluated
        rows with estimator, stage and features)."""
        keys = [k for k in dict.fromkeys(df["estimator"].astype(str)) if not is_repeat(k)] if len(df) else []
        feats = sorted(set(df["features"].astype(str))) if len(df) else []
        by_feat = {f: set(df.loc[df["features"] == f, "estimator"].astype(str)) & set(keys) for f in feats}
        if not self.table1_features:  # the backends every estimator ran on (Table 2's backends have fewer)
            self.table1_features = [f for f in feats if by_feat[f] == set(keys)] or feats[:1]
        if not self.features:
            self.features = [f for f in self.table1_features if f in feats] + [
                f for f in feats if f not in self.table1_features
            ]
        else:
            self.features += [f for f in feats if f not in self.features]
        stages = stage_order(df) if len(df) else {}
        off_t1 = set().union(*[by_feat[f] for f in feats if f not in self.table1_features])
        for k in keys:
            if k in self.estimators:
                continue
            st = [s for s in stages.get(k, []) if s]
            self.estimators[k] = {
                "label": k,
                "class": k,
                "units": {},
                "stages": st,
                "final_stage": st[-1] if st else "",
                "table2": None,  # decided below, once every key is known
                "seeds": 1 + max([split_repeat(e)[1] for e in stages if split_repeat(e)[0] == k] or [0]),
            }
        unknown = [k for k, e in self.estimators.items() if e.get("table2") is None]
        if unknown:
            t2 = {k for k in unknown if k in off_t1} or {k for k in unknown if self.estimators[k]["stages"]}
            for k in unknown:
                self.estimators[k]["table2"] = k in t2
        rest = sorted(set(self.estimators) - set(self.order) - set(keys))
        self.order += [k for k in keys if k not in self.order] + rest
        if self.reference not in self.estimators:  # not named, or not run: the first estimator of the rows
            self.reference = keys[0] if keys else (self.order[0] if self.order else None)
        return self

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "table1_features": self.table1_features,
            "features": self.features,
            "order": self.order,
            "estimators": self.estimators,
            "from_info": self.from_info,
        }

    # ------------------------------------------------------------------------------------------------ use
    def label(self, key: str) -> str:
        base, rep = split_repeat(key)
        lab = (self.estimators.get(base) or {}).get("label") or base
        return f"{lab}, repeat {rep}" if rep else lab

    def units(self, key: str) -> dict:
        return dict((self.estimators.get(split_repeat(key)[0]) or {}).get("units") or {})

    def cls(self, key: str) -> str:
        return (self.estimators.get(split_repeat(key)[0]) or {}).get("class") or split_repeat(key)[0]

    def setting(self, key: str, params) -> str:
        return setting_text(params, self.units(key))

    def seeds(self, key: str) -> int:
        return int((self.estimators.get(key) or {}).get("seeds") or 1)

    def final_stage(self, key: str, present=None) -> str:
        """The stage ``key`` is judged on: its declared last stage (present among ``present`` if given), else ""."""
        e = self.estimators.get(split_repeat(key)[0]) or {}
        st = e.get("final_stage")
        if st is None:
            st = (e.get("stages") or [""])[-1]
        if present is not None:
            present = list(present)
            if st not in present:
                named = [s for s in (e.get("stages") or []) if s in present]
                st = named[-1] if named else ("" if "" in present else sorted(present)[-1])
        return st

    def final_stages(self) -> dict[str, str]:
        return {k: self.final_stage(k) for k in self.estimators}

    def table2_keys(self) -> list[str]:
        return [k for k in self.ordered(self.estimators) if self.estimators[k].get("table2")]

    def rank(self, key: str) -> tuple:
        """Sort key of an estimator: the reference first, then the configured order, repeats after their base."""
        base, rep = split_repeat(key)
        if base == self.reference:
            return (0, 0, rep, base)
        if base in self.order:
            return (1, self.order.index(base), rep, base)
        return (2, 0, rep, base)

    def ordered(self, keys) -> list[str]:
        return sorted(dict.fromkeys(keys), key=self.rank)

    def feature_rank(self, f: str) -> tuple:
        return (self.features.index(f), f) if f in self.features else (len(self.features), f)

    def stage_rank(self, key: str, stage: str) -> tuple:
        st = (self.estimators.get(split_repeat(key)[0]) or {}).get("stages") or []
        return (st.index(stage), stage) if stage in st else (-1 if stage == "" else len(st), stage)

    def sort(self, df: pd.DataFrame) -> pd.DataFrame:
        """Rows in reading order, by the category / estimator / backend columns in the order the table shows them:
        categories easy, medium, hard, all; estimators in the study order (reference first); backends in the
        configured order; an estimator's stages in their declared order."""
        if df.empty:
            return df.reset_index(drop=True)
        ranks = {
            "category": lambda s: s.astype(str).map(category_rank),
            "estimator": lambda s: s.astype(str).map(self.rank),
            "features": lambda s: s.astype(str).map(self.feature_rank),
        }
        tmp = df.copy()
        keys = []
        for c in [c for c in df.columns if c in ranks]:
            tmp[f"__{c}"] = ranks[c](tmp[c])
            keys.append(f"__{c}")
            if c == "estimator" and "stage" in df.columns:
                tmp["__stage"] = [self.stage_rank(str(e), str(s)) for e, s in zip(tmp["estimator"], tmp["stage"])]
                keys.append("__stage")
            if c == "estimator" and "params" in df.columns:
                tmp["__params"] = tmp["params"].map(_params_rank)
                keys.append("__params")
        tmp = tmp.sort_values(keys, kind="stable")
        return tmp.drop(columns=keys).reset_index(drop=True)

    # ------------------------------------------------------------------------------------------------ display
    def display(self, df: pd.DataFrame) -> pd.DataFrame:
        """A table for people: display names for ``estimator``, settings as text (``params``, ``paper``, ``fair``),
        stage names, empty cells as ``—``; the machine-readable CSV keeps the keys and the JSON."""
        out = df.copy()
        est = out["estimator"].astype(str) if "estimator" in out else None
        for col in ("params", "paper", "fair"):
            if col in out and est is not None:
                out[col] = [self.setting(e, p) for e, p in zip(est, out[col])]
            elif col in out:
                out[col] = [setting_text(p) for p in out[col]]
        if "stage" in out:
            stages = ["" if pd.isna(s) else str(s) for s in out["stage"]]
            out["stage"] = [STAGE_LABELS.get(s, s.replace("_", " ")) or NONE for s in stages]
        if est is not None:
            out["estimator"] = [self.label(e) for e in est]
        rename = {"params": "setting", "paper": "paper setting", "fair": "fair setting"}
        return out.rename(columns={k: v for k, v in rename.items() if k in out})


def _params_rank(params) -> tuple:
    """Settings in numeric order (``sigma 2`` before ``sigma 12``), whatever their JSON text."""
    try:
        p = json.loads(params) if isinstance(params, str) else params
    except json.JSONDecodeError:
        return ((str(params), 1, 0.0, ""),)
    if not isinstance(p, dict):
        return ((str(params), 1, 0.0, ""),)
    out = []
    for k in sorted(p):
        v = p[k]
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        out.append((k, 0 if num else 1, float(v) if num else 0.0, "" if num else str(v)))
    return tuple(out)


def stage_order(df: pd.DataFrame) -> dict[str, list[str]]:
    """Per estimator label: its stages in the order its rows first give them (the runner writes an estimator's
    stages in its declared order, so the last is the final one)."""
    d = df[["estimator", "stage"]].astype(str).drop_duplicates()
    return {e: list(g["stage"]) for e, g in d.groupby("estimator", sort=False)}
