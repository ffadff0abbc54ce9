"""Regression check of a run against its committed reference (``results/<name>/``).

The reference holds the evaluation's failure rates (``failure_rates.csv``), the tables, and ``provenance.json``:
hashes of the config file and of the pair table, and the library versions that produced them.

A run regresses when, for any (estimator, params, stage, split, category) of the reference, a failure rate moves by
more than its tolerance: ``max(abs_tol, pairs_tol / n)`` where n is the number of pairs of that cell. The default
(abs_tol 0, pairs_tol 1) allows one pair to flip per cell: repeated runs on one machine are bit-identical (every
random choice is seeded), so this only absorbs floating-point differences across machines and library builds.
``gc_ransac`` (OpenCV USAC_ACCURATE) is not bit-reproducible: it gets ``pairs_tol`` 2. A variant missing from the
run is a regression too. A reference whose config hash no longer matches its config is stale: also a failure.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

RATE_KEYS = ["features", "estimator", "params", "stage", "split", "category"]
NONDETERMINISTIC = {"gc_ransac": 2}


def file_hash(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def provenance(config_path, pairs_csv) -> dict:
    from nre.commands.version import versions

    return {
        "config": str(config_path),
        "config_sha256": file_hash(config_path),
        "pairs_sha256": file_hash(pairs_csv),
        "versions": versions(),
    }


def compare(reference: pd.DataFrame, current: pd.DataFrame, abs_tol: float = 0.0, pairs_tol: float = 1.0):
    """Rows of what moved beyond tolerance (empty when the run matches its reference)."""
    rate_cols = [c for c in reference.columns if c.startswith(("t>", "R>"))]
    ref = reference.fillna({"stage": "", "features": ""}).set_index(RATE_KEYS)
    cur = current.fillna({"stage": "", "features": ""}).set_index(RATE_KEYS)
    rows = []
    for key, r in ref.iterrows():
        if key not in cur.index:
            rows.append(
                {
                    **dict(zip(RATE_KEYS, key)),
                    "metric": "(missing)",
                    "reference": np.nan,
                    "current": np.nan,
                    "tolerance": 0.0,
                }
            )
            continue
        c = cur.loc[key]
        tol = max(abs_tol, NONDETERMINISTIC.get(key[1], pairs_tol) / max(int(r["n"]), 1))
        for m in rate_cols:
            if abs(float(c[m]) - float(r[m])) > tol + 1e-12:
                rows.append(
                    {
                        **dict(zip(RATE_KEYS, key)),
                        "metric": m,
                        "reference": float(r[m]),
                        "current": float(c[m]),
                        "tolerance": tol,
                    }
                )
    return pd.DataFrame(rows, columns=RATE_KEYS + ["metric", "reference", "current", "tolerance"])


def check(reference_dir, current_eval_dir, config_path, abs_tol: float = 0.0, pairs_tol: float = 1.0):
    """(ok, message). Fails on a stale reference or on rates that moved beyond tolerance."""
    ref_dir = Path(reference_dir)
    prov_file = ref_dir / "provenance.json"
    if not prov_file.exists():
        return False, f"{prov_file}: missing (no committed reference; create one with `nre regress --update`)"
    prov = json.loads(prov_file.read_text())
    if prov["config_sha256"] != file_hash(config_path):
        return False, (
            f"stale reference: {ref_dir} was made from a different {config_path} "
            f"(hash {prov['config_sha256']} != {file_hash(config_path)}); update it on purpose"
        )
    moved = compare(
        pd.read_csv(ref_dir / "failure_rates.csv"),
        pd.read_csv(Path(current_eval_dir) / "failure_rates.csv"),
        abs_tol,
        pairs_tol,
    )
    if len(moved):
        from nre.evaluate import to_markdown

        return False, f"{len(moved)} failure rate(s) moved beyond tolerance:\n" + to_markdown(moved)
    return True, "results match the reference within tolerance"


def update(reference_dir, current_eval_dir, config_path, pairs_csv) -> None:
    """Deliberately replace the reference with the current run."""
    ref = Path(reference_dir)
    ref.mkdir(parents=True, exist_ok=True)
    ev = Path(current_eval_dir)
    for f in sorted(ev.iterdir()):
        if f.suffix in (".csv", ".md", ".tex", ".png") or f.name == "rows.parquet":
            shutil.copy2(f, ref / f.name)
    shutil.copy2(pairs_csv, ref / "pairs.csv")
    (ref / "provenance.json").write_text(json.dumps(provenance(config_path, pairs_csv), indent=2, sort_keys=True))
