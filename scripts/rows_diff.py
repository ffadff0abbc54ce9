"""Which result rows differ between runs: per estimator, rows with any error bit changed and rows moved by more than
0.01 deg (first folder = baseline):  python scripts/rows_diff.py EVAL_DIR_OR_ROWS ..."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def load(p):
    p = Path(p)
    for f in (p, p / "rows.parquet", p / "errors.parquet"):
        if f.is_file():
            return pd.read_parquet(f)
    raise SystemExit(f"{p}: no rows.parquet / errors.parquet")


def main(paths):
    keys = ["pair_id", "estimator", "params", "stage", "features"]
    base = load(paths[0])
    np.seterr(invalid="ignore")  # inf - inf of two failures
    for p in paths[1:]:
        m = base.merge(load(p), on=keys, suffixes=("", "_o"))
        a, b = m["rotation_error_deg"].to_numpy(float), m["rotation_error_deg_o"].to_numpy(float)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        big = ~same & ~(np.abs(a - b) <= 0.01)
        by = m.assign(changed=~same, big=big).groupby("estimator")[["changed", "big"]].sum()
        print(f"{p}: {len(m)} rows, {int((~same).sum())} changed, {int(big.sum())} by > 0.01 deg")
        print("   " + ", ".join(f"{e} {int(r.changed)}/{int(r.big)}" for e, r in by.iterrows() if r.changed))


if __name__ == "__main__":
    main(sys.argv[1:])
