"""``nre localize``: run estimators on one pair in the official NRE sample format and report each."""

from __future__ import annotations

import json
from pathlib import Path

HELP = "estimate the target pose of one pair (official NRE sample npz) with one or more estimators"


def add_arguments(p):
    p.add_argument("pair", help="pair file (npz: source_image, target_image, p3D, source_P, target_P, K, dist)")
    p.add_argument("--features", default="dsift")
    p.add_argument("--features-options", default="{}")
    p.add_argument(
        "--estimator",
        nargs="+",
        default=["nre_c2f"],
        help="names, or 'all' for every registered one; each runs its default setting",
    )
    p.add_argument("--max-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results as JSON")


def _pose_fields(res, gt):
    from nre.geometry import pose_error

    d = {"success": bool(res.success), "runtime_s": float(res.runtime_s), "failure_reason": res.failure_reason}
    if res.success and res.pose is not None:
        d["R"] = res.pose.R.tolist()
        d["t"] = res.pose.t.tolist()
    e = pose_error(res.pose if res.success else None, gt)
    d["rotation_error_deg"] = e.rotation_deg if e.rotation_deg != float("inf") else None
    d["translation_error"] = e.translation if e.translation != float("inf") else None
    return d


def run(args) -> int:
    from baselines import registry
    from nre.cache import build_problem
    from nre.features import get_backend
    from nre.pair import PairData
    from nre.seeding import derive_seed

    pair = PairData.load_npz(args.pair).capped(args.max_points, args.seed)
    backend = get_backend(args.features, **json.loads(args.features_options))
    problem = build_problem(pair, backend, args.seed)
    names = sorted(registry.available()) if args.estimator == ["all"] else args.estimator
    out = {"pair": str(args.pair), "n_points": pair.n, "features": args.features, "estimators": {}}
    lines = [f"{'estimator':22s} {'stage':12s} {'ok':3s} {'rot err (deg)':>13s} {'trans err':>10s} {'time (s)':>9s}"]
    for name in names:
        cls = registry.get(name)
        if cls.name == "imported":
            continue
        est = cls()
        setting = est.default_setting()
        problem.seed = derive_seed(args.seed, pair.pair_id, cls.name)
        [results] = est.run(problem, [setting])
        final = results[-1]
        entry = _pose_fields(final, pair.target_pose)
        entry["params"] = setting
        if len(results) > 1:
            entry["stages"] = {r.stage: _pose_fields(r, pair.target_pose) for r in results}
        out["estimators"][name] = entry
        for r in results:
            f = _pose_fields(r, pair.target_pose)
            rot = "-" if f["rotation_error_deg"] is None else f"{f['rotation_error_deg']:.3f}"
            tr = "-" if f["translation_error"] is None else f"{f['translation_error']:.4f}"
            lines.append(
                f"{name:22s} {r.stage or '':12s} {'yes' if r.success else 'NO':3s} {rot:>13s} {tr:>10s} "
                f"{r.runtime_s:9.3f}" + ("" if r.success else f"  ({r.failure_reason})")
            )
    print("\n".join(lines))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
