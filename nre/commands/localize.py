"""``nre localize``: run estimators on one pair in the official NRE sample format and report each.

The pair's maps are computed in memory (``nre.maps.cache.build_problem``: the same coarse sparse maps and dense-level
argmax matches ``nre maps`` caches), then every chosen estimator runs its default setting (``default_params``, else
the middle of its grid) with its own seed derived from (seed, pair id, estimator). Prints a table and optionally
writes JSON ``{"estimators": {NAME: {success, R, t, rotation_error_deg, translation_error, runtime_s, params,
failure_reason, stages?}}}``; an estimator with several stages (nre_c2f: p3p, coarse_gnc, fine_gnc) reports its
last stage at the top level and each stage under ``stages`` with the same fields. Errors are null for a failure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from nre.commands._args import json_arg

HELP = "estimate the target pose of one pair (official NRE sample npz) with one or more estimators"
PROVIDED = frozenset({"matches", "coarse_maps", "features"})  # what build_problem gives an estimator
NOT_IN_ALL = {"imported"}  # needs poses from a file


def add_arguments(p):
    p.add_argument("pair", help="pair file (npz: source_image, target_image, p3D, source_P, target_P, K, dist)")
    p.add_argument("--features", default="dsift", help="feature backend (default dsift)")
    p.add_argument("--features-options", default="{}", help="backend options (JSON)")
    p.add_argument(
        "--estimator",
        nargs="+",
        default=["nre_c2f"],
        help="estimator names, or 'all' for every registered one the inputs allow; each runs its default setting",
    )
    p.add_argument("--max-points", type=int, default=1000, help="seeded cap on the query points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--json", help="write the results as JSON")


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _pose_fields(res, gt) -> dict:
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


def select_estimators(names: list[str]) -> list[str]:
    """The requested names, or for ``all`` every registered estimator whose needs the pair's inputs meet."""
    from nre.estimators import registry

    if names != ["all"]:
        for n in names:
            registry.get(n)  # a clear KeyError listing the available names
        return list(names)
    return [n for n, cls in registry.available().items() if n not in NOT_IN_ALL and set(cls.needs) <= PROVIDED]


def run(args) -> int:
    import torch

    from nre.data.pairdata import PairData
    from nre.estimators import registry
    from nre.features import get_backend
    from nre.maps.cache import build_problem
    from nre.seeding import derive_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    options = json_arg(args.features_options, "--features-options", "nre localize")
    names = select_estimators(args.estimator)
    pair = PairData.load_npz(args.pair)
    backend = get_backend(args.features, **options)
    problem = build_problem(pair, backend, args.max_points, args.seed)
    secs = problem.extras.get("seconds")
    out = {
        "pair": str(args.pair),
        "pair_id": pair.pair_id,
        "n_points": problem.n,
        "features": args.features,
        "features_options": options,
        "maps_seconds": None if secs is None else float(secs[-1]),
        "estimators": {},
    }
    header = f"{'estimator':20s} {'stage':11s} {'ok':3s} {'rot err (deg)':>13s} {'trans err':>10s} {'time (s)':>9s}"
    lines = [f"pair {pair.pair_id}: {problem.n} points, features {args.features}", header, "-" * len(header)]
    for name in names:
        est = registry.get(name)()
        setting = est.default_setting()
        problem.seed = derive_seed(args.seed, pair.pair_id, est.name)
        [results] = est.run(problem, [setting])
        entry = {**_pose_fields(results[-1], pair.target_pose), "params": setting}
        if len(results) > 1 or est.stages:
            entry["stages"] = {r.stage: _pose_fields(r, pair.target_pose) for r in results}
        out["estimators"][name] = entry
        for r in results:
            f = _pose_fields(r, pair.target_pose)
            rot = "-" if f["rotation_error_deg"] is None else f"{f['rotation_error_deg']:.3f}"
            tr = "-" if f["translation_error"] is None else f"{f['translation_error']:.4f}"
            rt = "-" if f["runtime_s"] is None else f"{f['runtime_s']:.3f}"
            lines.append(
                f"{name:20s} {r.stage or '-':11s} {'yes' if f['success'] else 'NO':3s} {rot:>13s} {tr:>10s} {rt:>9s}"
                + ("" if f["success"] else f"  ({r.failure_reason})")
            )
    print("\n".join(lines))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
