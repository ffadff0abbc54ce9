"""``nre timing``: Table 3, per-stage time and memory on a few pairs (run it alone: no other job competing)."""

from __future__ import annotations

import json
from pathlib import Path

HELP = "measure time and memory per stage on a few test pairs (Table 3)"


def add_arguments(p):
    p.add_argument("--pairs", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--features", default="dsift")
    p.add_argument("--features-options", default="{}")
    p.add_argument("--n-pairs", type=int, default=10)
    p.add_argument("--max-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True, help="per-pair stage timings (CSV); Table 3 goes next to it")


def run(args) -> int:
    import pandas as pd
    import torch

    from nre.data.pairs import load_pair
    from nre.evaluate import write_table
    from nre.features import get_backend
    from nre.timing import table3, time_pair

    torch.set_num_threads(args.threads)
    backend = get_backend(args.features, **json.loads(args.features_options))
    df = pd.read_csv(args.pairs)
    df = df[df["split"] == "test"].head(args.n_pairs)
    rows = [
        time_pair(load_pair(args.root, r).capped(args.max_points, args.seed), backend, args.seed)
        for _, r in df.iterrows()
    ]
    out = pd.concat(rows, ignore_index=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False)
    t3 = table3(out)
    write_table(t3, Path(args.out).with_name("table3"))
    print(t3.to_string(index=False))
    return 0
