"""``nre maps``: compute each pair's cached maps, shared by every estimator (``nre.maps.job.compute_maps``: reuses
current caches, records failing pairs in the manifest and beside their cache)."""

from __future__ import annotations

from nre.commands._args import features_args, json_option, pairs_args, run_args

HELP = "compute the per-pair map caches shared by every estimator"


def add_arguments(p):
    pairs_args(p)
    features_args(p)
    run_args(p)
    p.add_argument("--out-dir", required=True, help="folder of the caches <pair_id>.npz")
    p.add_argument("--manifest", default=None, help="CSV: one row per pair (status, error, seconds)")
    p.add_argument("--force", action="store_true", help="recompute even when a current cache exists")
    p.add_argument(
        "--no-matches",
        action="store_true",
        help="coarse maps only (no dense-level argmax matches): for a backend that only coarse-to-fine NRE uses",
    )
    p.add_argument("--export-h5", default=None, help="also write matches and coarse maps of the chunk to this HDF5")


def run(args) -> int:
    from nre.maps.job import compute_maps

    compute_maps(
        pairs=args.pairs,
        root=args.root,
        out_dir=args.out_dir,
        features=args.features,
        features_options=json_option(args.features_options, "--features-options"),
        chunk=args.chunk,
        max_points=args.max_points,
        seed=args.seed,
        threads=args.threads,
        manifest=args.manifest,
        force=args.force,
        matches=not args.no_matches,
        export_h5=args.export_h5,
    )
    return 0
