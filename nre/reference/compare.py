"""Are two runs' results identical, timing aside? (e.g. the quick config run locally and through SLURM.)

``compare_eval_dirs(a, b)`` compares two evaluation folders (``<out>/eval``): every CSV table cell by cell as
written (full precision text: identical means the same digits), ``thresholds.json``, and the per-pair rows
(``rows.parquet``) value by value. What measures time, not results, is left out: the Table 3 files (``timing.csv``,
``table3.csv``, ``timing/``), columns named like a time or memory figure (``runtime_s``, ``median_runtime_s``,
``wall_s``, ...; ``TIMING_COLUMN``) and, inside the rows' ``diagnostics`` JSON, keys ending in ``_s`` (stage
seconds such as ``msac_s``). Returns one line per difference (empty: identical).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TIMING_FILES = ("timing.csv", "table3.csv")
TIMING_DIRS = ("timing",)
TIMING_COLUMN = re.compile(r"(^|[_ ])(runtime|wall|cpu|memory)([_ ]|$)|_s$|\(s\)$", re.IGNORECASE)
TIMING_KEY = re.compile(r"_s$")


def is_timing_column(name: str) -> bool:
    return bool(TIMING_COLUMN.search(str(name)))


def _tables(d: Path) -> set[str]:
    out = set()
    for p in d.rglob("*"):
        rel = p.relative_to(d)
        if not p.is_file() or p.suffix not in (".csv", ".json", ".parquet"):
            continue
        if rel.parts[0] in TIMING_DIRS or rel.name in TIMING_FILES:
            continue
        out.add(rel.as_posix())
    return out


def _drop_timing_keys(obj):
    if isinstance(obj, dict):
        return {k: _drop_timing_keys(v) for k, v in obj.items() if not TIMING_KEY.search(str(k))}
    if isinstance(obj, list):
        return [_drop_timing_keys(v) for v in obj]
    return obj


def _diagnostics(s):
    if not isinstance(s, str):
        return s
    try:
        return json.dumps(_drop_timing_keys(json.loads(s)), sort_keys=True)
    except ValueError:
        return s


def _compare_frames(name: str, a, b, max_report: int) -> list[str]:
    import pandas as pd

    ca = [c for c in a.columns if not is_timing_column(c)]
    cb = [c for c in b.columns if not is_timing_column(c)]
    if ca != cb:
        return [f"{name}: columns differ: {sorted(set(ca) ^ set(cb)) or 'order'}"]
    if len(a) != len(b):
        return [f"{name}: {len(a)} rows vs {len(b)}"]
    a, b = a[ca].reset_index(drop=True), b[cb].reset_index(drop=True)
    if "diagnostics" in ca:
        a["diagnostics"] = a["diagnostics"].map(_diagnostics)
        b["diagnostics"] = b["diagnostics"].map(_diagnostics)
    out = []
    for c in ca:
        x, y = a[c], b[c]
        same = (x == y) | (pd.isna(x) & pd.isna(y))
        if not bool(same.all()):
            rows = list(same.index[~same.to_numpy()])
            ex = rows[0]
            out.append(f"{name}: column {c!r} differs in {len(rows)} rows (first: row {ex}, {x[ex]!r} vs {y[ex]!r})")
            if len(out) >= max_report:
                break
    return out


def compare_eval_dirs(a: str | Path, b: str | Path, max_report: int = 20) -> list[str]:
    """Differences between the evaluation folders ``a`` and ``b``, timing aside (see the module docstring)."""
    import pandas as pd

    a, b = Path(a), Path(b)
    for d in (a, b):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such evaluation folder")
    ta, tb = _tables(a), _tables(b)
    out = [f"{f}: only in {a}" for f in sorted(ta - tb)] + [f"{f}: only in {b}" for f in sorted(tb - ta)]
    if not ta & tb:
        out.append(f"no tables in common between {a} and {b}")
    for f in sorted(ta & tb):
        pa, pb = a / f, b / f
        if f.endswith(".json"):
            if json.loads(pa.read_text()) != json.loads(pb.read_text()):
                out.append(f"{f}: differs")
            continue
        if f.endswith(".csv"):
            # as written: the same text in every cell (no float parsing, no NaN conversion)
            fa = pd.read_csv(pa, dtype=str, keep_default_na=False)
            fb = pd.read_csv(pb, dtype=str, keep_default_na=False)
        else:
            fa, fb = pd.read_parquet(pa), pd.read_parquet(pb)
        out += _compare_frames(f, fa, fb, max_report)
    return out
