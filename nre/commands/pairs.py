"""``nre pairs``: build the evaluation pair table, or import an external pair list (``nre.data.pairs.build_pair_table``:
unusable pairs are skipped and listed in ``<out>.skipped.csv``)."""

from __future__ import annotations

HELP = "sample the evaluation pairs (easy / medium / hard by viewpoint distance)"


def add_arguments(p):
    p.add_argument("--root", required=True, help="data root with one folder per scene")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scenes", nargs="+", help="test scenes")
    g.add_argument("--split", help="take the test scenes of this split from ROOT/scenes.yaml")
    p.add_argument("--tuning-scenes", nargs="*", default=None, help="tuning scenes (default: scenes.yaml's tuning)")
    p.add_argument(
        "--tuning-from",
        default="scenes",
        choices=["scenes", "same-scene"],
        help="tuning pairs from disjoint tuning scenes (default) or, for a single-scene run, from a seeded share of "
        "each test scene's images (no image of a tuning pair is in a test pair)",
    )
    p.add_argument("--tuning-fraction", type=float, default=0.3, help="share of images for tuning (same-scene)")
    p.add_argument("--n-pairs", type=int, default=3000)
    p.add_argument("--n-tuning", type=int, default=0, help="pairs of the tuning split")
    p.add_argument("--min-covisible", type=int, default=50)
    p.add_argument("--distance", default="rotation", choices=["rotation", "axis", "baseline"])
    p.add_argument("--max-per-scene", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--external", help="CSV of scene, source, target: evaluate this pair list as it is")
    p.add_argument(
        "--out",
        required=True,
        help="pair table (CSV); a summary JSON, histogram PNG and skipped-pairs CSV go beside it",
    )


def run(args) -> int:
    from nre.data.pairs import build_pair_table

    build_pair_table(
        root=args.root,
        out=args.out,
        scenes=args.scenes,
        split=args.split or "test",
        tuning_scenes=args.tuning_scenes,
        tuning_from=args.tuning_from,
        tuning_fraction=args.tuning_fraction,
        n_pairs=args.n_pairs,
        n_tuning=args.n_tuning,
        min_covisible=args.min_covisible,
        distance=args.distance,
        max_per_scene=args.max_per_scene,
        seed=args.seed,
        external=args.external,
    )
    return 0
