"""``nre timing``: Table 3, time and memory per stage and per estimator on a few test pairs.

Run it alone (the workflow's rule takes every core, so no other job competes): wall and CPU time are measured with
``time.perf_counter`` / ``time.process_time`` around each stage, the threads used are recorded. Stages: coarse / fine
features of the target, source descriptors, coarse sparse maps, dense argmax, and NRE's initialisation, coarse and
fine refinement (``time_pair``); then each estimator of ``--estimators`` at its first setting on the same
in-memory maps (cache loading excluded).

With ``--maps-dir`` (the workflow passes the run's map caches) the estimators are timed on the cached maps that
``nre estimate`` reads, and the target and source descriptors are extracted before the clock starts, only for an
estimator that needs them: a RANSAC timing job then computes no features at all. A pair without a current cache
falls back to computing its maps in memory (said in the log)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from nre.commands._args import json_arg, set_threads

HELP = "measure time and memory per stage and per estimator on a few test pairs (Table 3)"


def add_arguments(p):
    p.add_argument("--pairs", help="pair table (its first --n-pairs test pairs are timed)")
    p.add_argument("--root", help="scene root")
    p.add_argument("--features", default="dsift")
    p.add_argument("--features-options", default="{}")
    p.add_argument(
        "--estimators",
        default="{}",
        help='JSON {label: {"cls": registered name, "grid": {...} or null, "options": {...}}}: timed at their default '
        "setting (the first of the grid if the default is not in it)",
    )
    p.add_argument("--n-pairs", type=int, default=10)
    p.add_argument("--max-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-stages", action="store_true", help="time only the --estimators, not the pipeline stages")
    p.add_argument("--maps-dir", default=None, help="map caches <pair_id>.npz (nre maps); default: compute")
    p.add_argument("--merge", nargs="+", default=None, help="merge these timing CSVs into --out (no measurement)")
    p.add_argument("--out", required=True, help="per-pair timings (CSV); Table 3 (table3.*) goes next to it")


def time_estimators(problem, specs: dict, seed: int) -> list[dict]:
    """One row per estimator: wall / CPU time of its first setting on ``problem`` (failures recorded)."""
    from nre.estimators import registry
    from nre.seeding import derive_seed

    rows = []
    for label, spec in specs.items():
        row = {"stage": f"estimator {label}", "memory_bytes": float("nan")}
        try:
            cls = registry.get(spec.get("cls") or label)
            est = cls(**(spec.get("options") or {}))
            settings = est.settings(spec.get("grid"))
            default = est.default_setting()
            settings = [default if default in settings else settings[0]]  # the default setting when swept
            problem.seed = derive_seed(seed, problem.pair_id, cls.name)
            if "features" in cls.needs and problem.features is not None:  # extraction is a stage of its own
                for level in problem.features.levels:
                    problem.features.source_descriptors(level)
                    problem.features.target_features(level)
            w0, c0 = time.perf_counter(), time.process_time()
            res = est.run(problem, settings)
            row.update(wall_s=time.perf_counter() - w0, cpu_s=time.process_time() - c0)
            row["setting"] = json.dumps(settings[0], sort_keys=True)
            row["success"] = bool(res[0][-1].success)
        except Exception as e:  # timing is a measurement: record, never crash
            row.update(wall_s=float("nan"), cpu_s=float("nan"), error=f"{type(e).__name__}: {e}")
        rows.append(row)
    return rows


def run(args) -> int:
    import functools
    import sys

    import pandas as pd

    from nre.data.pairs import load_pair
    from nre.features import get_backend

    if args.merge:
        out = pd.concat([pd.read_csv(f, dtype={"pair_id": str}) for f in args.merge], ignore_index=True)
        return _write(out, args.out)
    if not (args.pairs and args.root):
        raise SystemExit("nre timing: --pairs and --root are required (unless --merge)")
    set_threads(args.threads)
    foptions = json_arg(args.features_options, "--features-options", "nre timing")
    specs = json.loads(args.estimators)
    make_backend = functools.cache(lambda: get_backend(args.features, **foptions))
    # timing RANSAC libraries on cached maps needs no features: no backend, no torch in the job
    backend = make_backend() if not (args.no_stages and args.maps_dir) or _need_features(specs) else None
    df = pd.read_csv(args.pairs, dtype={"pair_id": str})
    df = df[df["split"] == "test"].head(args.n_pairs)
    rows = []
    for _, r in df.iterrows():
        pair = load_pair(args.root, r).capped(args.max_points, args.seed)
        if not args.no_stages:
            from nre.eval.timing import time_pair

            t = time_pair(pair, backend, args.seed)
            t["pair_id"] = r["pair_id"]
            rows.append(t)
        if specs:
            problem = _problem(pair, str(r["pair_id"]), args.seed, args.maps_dir, args.features, backend, make_backend)
            e = pd.DataFrame(time_estimators(problem, specs, args.seed))
            torch = sys.modules.get("torch")
            e["pair_id"], e["threads"] = r["pair_id"], torch.get_num_threads() if torch else args.threads
            rows.append(e)
    return _write(pd.concat(rows, ignore_index=True), args.out)


def _need_features(specs: dict) -> bool:
    """Whether any estimator to time reads descriptors (an unknown one counts as yes; it fails when timed)."""
    from nre.estimators import registry

    for label, spec in specs.items():
        try:
            if "features" in registry.get(spec.get("cls") or label).needs:
                return True
        except Exception:
            return True
    return False


def _problem(pair, pair_id: str, seed: int, maps_dir: str | None, features: str, backend, make_backend):
    """The pair's Problem from its map cache in ``maps_dir`` if it is there and current (``backend`` None: no
    descriptors wanted), else computed in memory with ``make_backend()``."""
    from nre.maps.cache import build_problem, cache_path, load_problem

    if maps_dir:
        path = cache_path(maps_dir, pair_id)
        try:
            return load_problem(pair, path, seed, backend, features=features)
        except (OSError, KeyError, ValueError) as e:  # nre.maps.cache.CacheError is a ValueError
            print(f"nre timing: {path}: {type(e).__name__}: {e}; computing the maps of {pair_id} in memory")
    return build_problem(pair, backend or make_backend(), seed)


def _write(out, path) -> int:
    from nre.eval.tables import write_table
    from nre.eval.timing import table3

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    t3 = table3(out)
    write_table(t3, Path(path).with_name("table3"))
    print(t3.to_string(index=False))
    return 0
