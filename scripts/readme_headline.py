"""The README's headline table: Table 1's hard rows (paper protocol) of committed references beside the paper's.

    python scripts/readme_headline.py results/default:dsift results/default:xfeat results/strecha:aliked ...

Each argument is REFERENCE:BACKEND (the backend's Table 1: table1_paper.csv for the first Table 1 backend of the
reference, table1_paper_<backend>.csv for the others). Cells: failure rates at 2 / 5 / 10 deg of rotation error on
the hard pairs, the estimator at the setting chosen on the test pairs (the paper's protocol); best RE row in bold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
COLS = ["R>2deg", "R>5deg", "R>10deg"]
ORDER = ["nre_single", "nre_c2f", "re_gauss", "fpr", "lo_ransac_poselib", "lo_ransac_pycolmap", "lo_ransac_opencv",
         "gc_ransac", "magsac_pp", "oracle"]  # fmt: skip
RE = {"re_gauss", "lo_ransac_poselib", "lo_ransac_pycolmap", "lo_ransac_opencv", "gc_ransac", "magsac_pp", "fpr"}


def table1(ref: Path, backend: str) -> pd.DataFrame:
    """The hard rows of ``backend``'s Table 1 in reference ``ref``: the first Table 1 backend of the config the
    reference was made from (its provenance) has the unsuffixed table, the others ``table1_paper_<backend>.csv``."""
    from nre.workflow.config import load_config

    config = json.loads((ref / "provenance.json").read_text())["config"]
    t1 = load_config([REPO / c for c in ([config] if isinstance(config, str) else config)])["table1_features"]
    first = t1 if isinstance(t1, str) else t1[0]
    f = ref / ("table1_paper.csv" if backend == first else f"table1_paper_{backend}.csv")
    if not f.exists():
        print(f"readme_headline: {ref.relative_to(REPO)}: no Table 1 on backend {backend!r}", file=sys.stderr)
        raise SystemExit(2)
    t = pd.read_csv(f, dtype={"params": str})
    return t[t["category"] == "hard"].set_index("estimator")


def column(source: str) -> str:
    """``results/default_xfeat:xfeat`` -> ``default, xfeat``: the study's name without its backend suffix."""
    ref, backend = source.rsplit(":", 1)
    name = Path(ref).name
    return f"{name.removesuffix('_' + backend)}, {backend}"


def cell(row, bold: bool) -> str:
    text = " / ".join(f"{row[c]:.2f}" for c in COLS)
    return f"**{text}**" if bold else text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="+", help="REFERENCE:BACKEND, e.g. results/default:xfeat")
    args = ap.parse_args()
    from nre.estimators import registry

    paper = pd.read_csv(REPO / "nre/eval/paper_table1.csv", comment="#")
    paper_rows = {c: r for _, r in paper.iterrows() for c in str(r["classes"]).split(";")}
    tables = []
    for src in args.sources:
        ref, backend = src.rsplit(":", 1)
        tables.append((src, table1(REPO / ref, backend)))
    head = ["estimator", "paper (MegaDepth, S2DNet)"] + [column(s) for s, _ in tables]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {}
    for s, t in tables:
        re_rows = t[t.index.isin(RE)]
        best[s] = re_rows["R>10deg"].idxmin() if len(re_rows) else None
    for est in ORDER:
        if not any(est in t.index for _, t in tables):
            continue
        p = paper_rows.get(est)
        row = [registry.get(est).display_name(), cell(p, False) if p is not None else "—"]
        row += [cell(t.loc[est], est == best[s]) if est in t.index else "—" for s, t in tables]
        lines.append("| " + " | ".join(row) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
