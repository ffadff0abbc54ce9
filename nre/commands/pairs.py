"""``nre pairs``: build the evaluation pair table (or import an external pair list).

Pairs that cannot be used (an image missing or with an unsupported camera model, an unsafe id, an unreadable scene)
are skipped, logged and listed in ``<out>.skipped.csv`` (split, scene, pair_id, source, target, reason; written
always, empty when nothing was skipped); the table is built from the rest."""

from __future__ import annotations

import json
from pathlib import Path

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


def _split_scenes(root: Path, split: str) -> list[str]:
    import yaml

    f = root / "scenes.yaml"
    if not f.exists():
        raise FileNotFoundError(f"{f}: no scene list (pass --scenes)")
    splits = yaml.safe_load(f.read_text()).get("splits", {})
    if split not in splits:
        raise ValueError(f"{f}: no split {split!r} (has {sorted(splits)})")
    return list(splits[split])


def run(args) -> int:
    import pandas as pd

    from nre.data import pairs as P

    root = Path(args.root)
    skipped: list[dict] = []
    image_split = None
    if args.external:
        df = P.external_pairs(root, args.external, args.min_covisible, args.distance, skipped=skipped)
    else:
        scenes = args.scenes or _split_scenes(root, args.split or "test")
        same = args.tuning_from == "same-scene"
        if same and args.tuning_scenes:
            raise SystemExit("nre pairs: --tuning-from same-scene takes its tuning pairs from the test scenes; "
                             "drop --tuning-scenes")  # fmt: skip
        split = None
        if same and args.n_tuning:
            split = {s: P.split_images(P.scene_images(root, s), args.tuning_fraction, args.seed, s) for s in scenes}
            image_split = split
        df = P.sample_pairs(
            root, scenes, args.n_pairs, "test", args.min_covisible, args.distance, args.seed, args.max_per_scene,
            skipped=skipped, images=None if split is None else {s: v["test"] for s, v in split.items()},
        )  # fmt: skip
        if args.n_tuning and same:
            tun = P.sample_pairs(
                root, scenes, args.n_tuning, "tuning", args.min_covisible, args.distance, args.seed,
                args.max_per_scene, skipped=skipped, images={s: v["tuning"] for s, v in split.items()},
            )  # fmt: skip
            df = pd.concat([df, tun], ignore_index=True)
        elif args.n_tuning:
            tscenes = args.tuning_scenes if args.tuning_scenes is not None else _split_scenes(root, "tuning")
            overlap = set(tscenes) & set(scenes)
            if overlap:
                raise ValueError(f"tuning scenes overlap the test scenes: {sorted(overlap)}")
            tun = P.sample_pairs(
                root,
                tscenes,
                args.n_tuning,
                "tuning",
                args.min_covisible,
                args.distance,
                args.seed,
                args.max_per_scene,
                skipped=skipped,
            )
            df = pd.concat([df, tun], ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, float_format="%.6g")
    skipped_csv = out.with_suffix(".skipped.csv")
    pd.DataFrame(skipped, columns=P.SKIPPED_COLUMNS).to_csv(skipped_csv, index=False)
    if skipped:
        print(f"{len(skipped)} candidate pairs or scenes skipped (reasons in {skipped_csv})")
    summ = {s: P.summary(g) for s, g in df.groupby("split")}
    if image_split is not None:
        summ["image_split"] = image_split
    out.with_suffix(".summary.json").write_text(json.dumps(summ, indent=2))
    P.plot_histogram(df[df["split"] == "test"], out.with_suffix(".hist.png"))
    print(json.dumps(summ, indent=1))
    return 0
