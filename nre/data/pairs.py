"""The evaluation pairs: (source, target) images of a scene with enough covisible 3D points, split by viewpoint
distance into easy / medium / hard (tertiles over the sampled set).

The task of a pair: estimate the absolute pose of the target from the 3D points observed in the source.

Bad input costs only the pairs it touches: a candidate pair using an image the scene left out (missing file,
unsupported camera model: ``Scene.excluded``), a pair whose id would not be a safe file name, and every pair of a
scene whose model cannot be read are skipped, logged and recorded (``sample_pairs(..., skipped=list)``, written by
``nre pairs`` to ``<out>.skipped.csv``: split, scene, pair_id, source, target, reason); the others are sampled as usual.
"""

from __future__ import annotations

import errno
import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from nre.data.pairdata import PAIR_ID_RE, PairData
from nre.data.scenes import Scene, SceneError, list_scenes, load_scene
from nre.errors import FileFormatError, InputError, OptionError
from nre.geometry import rotation_angle_deg
from nre.seeding import rng_for

log = logging.getLogger("nre.pairs")

CATEGORIES = ("easy", "medium", "hard")
DISTANCES = ("rotation", "axis", "baseline")
COLUMNS = [
    "pair_id",
    "scene",
    "source",
    "target",
    "n_covisible",
    "distance",
    "rotation_angle_deg",
    "axis_angle_deg",
    "baseline_ratio",
    "category",
    "split",
]
SKIPPED_COLUMNS = ["split", "scene", "pair_id", "source", "target", "reason"]

# The MegaDepth validation scenes used by D2-Net and PixLoc: the test scenes of config/megadepth.yaml.
MEGADEPTH_VALIDATION_SCENES = (
    "0016 0033 0034 0041 0044 0047 0049 0058 0062 0064 0067 0071 0076 0078 0090 0094 0099 0102 0121 0129 0133 0141 "
    "0151 0162 0168 0175 0177 0178 0181 0185 0186 0197 0204 0205 0209 0212 0217 0223 0229 0231 0238 0252 0257 0271 "
    "0275 0277 0281 0285 0286 0290 0294 0303 0306 0307 0323 0349 0360 0387 0389 0402 0406 0412 0443 0482 0768 1001 "
    "3346 5000 5001 5002 5003 5008 5011 5014 5015 5016 5018"
).split()


def _pair_id(scene: str, src: str, tgt: str) -> str:
    return "__".join([scene, Path(src).stem, Path(tgt).stem])


def _covisibility(scene: Scene, names: list[str], point_ids: list[np.ndarray]):
    """(covisible point counts between the images ``names``, observing ``point_ids``) as a dense matrix."""
    from scipy.sparse import csr_matrix

    rows = np.concatenate([np.full(len(p), i) for i, p in enumerate(point_ids)])
    cols = np.searchsorted(scene.point_ids, np.concatenate(point_ids))
    A = csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(names), len(scene.point_ids)))
    C = (A @ A.T).toarray()
    np.fill_diagonal(C, 0)
    return C


def candidate_pairs(scene: Scene, min_covisible: int = 50) -> pd.DataFrame:
    """All ordered pairs of usable registered images sharing at least ``min_covisible`` 3D points, with their
    distances (images in ``scene.excluded`` take no part: see ``skipped_pairs``)."""
    names = sorted(scene.images)
    if len(names) < 2:
        return pd.DataFrame(columns=COLUMNS[:-2])
    C = _covisibility(scene, names, [scene.images[n].point3d_ids for n in names])
    i, j = np.nonzero(C >= min_covisible)
    if len(i) == 0:
        return pd.DataFrame(columns=COLUMNS[:-2])
    R = np.stack([scene.images[n].pose.R for n in names])
    centers = np.stack([scene.images[n].pose.center for n in names])
    rot = rotation_angle_deg(R[i] @ np.transpose(R[j], (0, 2, 1)))
    axes = R[:, 2, :]  # principal axes in world coordinates
    axis = np.degrees(np.arccos(np.clip(np.sum(axes[i] * axes[j], 1), -1, 1)))
    base = np.linalg.norm(centers[i] - centers[j], axis=1) / scene.median_depth()
    return pd.DataFrame(
        {
            "pair_id": [_pair_id(scene.name, names[a], names[b]) for a, b in zip(i, j)],
            "scene": scene.name,
            "source": [names[a] for a in i],
            "target": [names[b] for b in j],
            "n_covisible": C[i, j].astype(int),
            "rotation_angle_deg": rot,
            "axis_angle_deg": axis,
            "baseline_ratio": base,
        }
    )


def skipped_pairs(scene: Scene, min_covisible: int = 50) -> pd.DataFrame:
    """The candidate pairs (``min_covisible`` shared points) that use an image of ``scene.excluded``, with why."""
    if not scene.excluded:
        return pd.DataFrame(columns=SKIPPED_COLUMNS[1:])
    names = sorted(set(scene.images) | set(scene.excluded))
    pids = [scene.images[n].point3d_ids if n in scene.images else scene.excluded_point_ids[n] for n in names]
    C = _covisibility(scene, names, pids)
    bad = np.array([n in scene.excluded for n in names])
    i, j = np.nonzero((C >= max(int(min_covisible), 1)) & (bad[:, None] | bad[None, :]))
    reasons = ["; ".join(f"{names[k]}: {scene.excluded[names[k]]}" for k in (a, b) if bad[k]) for a, b in zip(i, j)]
    return pd.DataFrame(
        {
            "scene": scene.name,
            "pair_id": [_pair_id(scene.name, names[a], names[b]) for a, b in zip(i, j)],
            "source": [names[a] for a in i],
            "target": [names[b] for b in j],
            "reason": reasons,
        },
        columns=SKIPPED_COLUMNS[1:],
    )


def _usable_candidates(sc: Scene, min_covisible: int, split: str, skipped: list | None) -> pd.DataFrame:
    """``candidate_pairs`` without the pairs whose id is not a safe file name; what is left out goes to ``skipped``."""
    c = candidate_pairs(sc, min_covisible)
    unsafe = ~c["pair_id"].map(lambda p: bool(PAIR_ID_RE.fullmatch(p))).astype(bool)
    out = []
    if unsafe.any():
        bad = c.loc[unsafe, ["scene", "pair_id", "source", "target"]].assign(
            reason=[f"unsafe pair id {p!r}" for p in c.loc[unsafe, "pair_id"]]
        )
        out.append(bad)
        c = c[~unsafe]
    sk = skipped_pairs(sc, min_covisible)
    if len(sk):
        out.append(sk)
    n_out = sum(len(o) for o in out)
    if n_out:
        log.warning(
            "scene %s: %d candidate pairs skipped (missing images, unsupported cameras, unsafe ids)", sc.name, n_out
        )
        if skipped is not None:
            skipped += [{"split": split, **r} for o in out for r in o.to_dict("records")]
    return c


def _scene_skipped(name: str, error: Exception, split: str, skipped: list | None) -> None:
    log.warning("scene %s skipped: %s", name, error)
    if skipped is not None:
        skipped.append(
            {"split": split, "scene": name, "pair_id": "", "source": "", "target": "", "reason": f"scene: {error}"}
        )


def _quotas(available: dict[str, int], total: int, cap: int | None) -> dict[str, int]:
    """Spread ``total`` over scenes as evenly as possible (water filling), at most ``cap`` and what is available."""
    avail = {s: min(n, cap) if cap else n for s, n in available.items()}
    quota = dict.fromkeys(avail, 0)
    left = min(total, sum(avail.values()))
    while left > 0:
        open_ = [s for s in sorted(avail) if quota[s] < avail[s]]
        share = max(1, left // len(open_))
        for s in open_:
            take = min(share, avail[s] - quota[s], left)
            quota[s] += take
            left -= take
            if left == 0:
                break
    return quota


def assign_categories(distance: np.ndarray) -> np.ndarray:
    """Even split by tertiles of the distance (ranks, so counts differ by at most one)."""
    order = np.argsort(distance, kind="stable")
    cats = np.empty(len(distance), dtype=object)
    for k, part in enumerate(np.array_split(order, 3)):
        cats[part] = CATEGORIES[k]
    return cats


def split_images(names, fraction: float, seed: int, scene: str) -> dict[str, list[str]]:
    """Seeded partition of one scene's registered images into ``tuning`` (a ``fraction`` of them, at least 2) and
    ``test`` (the rest, at least 2), for a single-scene run (``nre pairs --tuning-from same-scene``).

    Split by images, not by pairs: no image of a tuning pair is in any test pair (a pair split would put (A, B) in
    one split and (B, A) or (A, C) in the other: the same photographs, hence nearly the same maps, on both sides).
    The scene's 3D points and appearance stay shared: tuning on it is not as clean as on disjoint scenes."""
    names = sorted(names)
    if not 0 < fraction < 1:
        raise OptionError(f"tuning fraction must be in (0, 1), got {fraction}")
    k = int(round(fraction * len(names)))
    if len(names) < 4 or not 2 <= k <= len(names) - 2:
        raise InputError(
            f"scene {scene}: {len(names)} registered images cannot be split into >= 2 tuning and >= 2 test images "
            f"with tuning fraction {fraction}"
        )
    pick = rng_for(seed, "tuning_images", scene).choice(len(names), k, replace=False)
    tun = sorted(names[i] for i in pick)
    return {"tuning": tun, "test": [n for n in names if n not in set(tun)]}


def scene_images(root: str | Path, scene: str) -> list[str]:
    """The registered images of one scene of ``root`` (for ``split_images``)."""
    found = list_scenes(root, [scene])
    if scene not in found:
        raise InputError(f"scene {scene} not found under {root}")
    return sorted(load_scene(*found[scene], scene).images)


def sample_pairs(
    root: str | Path,
    scenes: list[str],
    n_pairs: int,
    split: str = "test",
    min_covisible: int = 50,
    distance: str = "rotation",
    seed: int = 0,
    max_per_scene: int | None = None,
    skipped: list | None = None,
    images: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """A seeded sample of ``n_pairs`` candidate pairs spread evenly over ``scenes``. Pairs that cannot be used (and
    scenes that cannot be read) are left out, logged and appended to ``skipped`` (dicts of ``SKIPPED_COLUMNS``).
    ``images``: scene -> the only images its pairs may use (both source and target; see ``split_images``)."""
    if distance not in DISTANCES:
        raise OptionError(f"unknown distance {distance!r}; choose from {DISTANCES}")
    found = list_scenes(root, scenes)
    cands = {}
    for name, (model_dir, image_dir) in found.items():
        try:
            sc = load_scene(model_dir, image_dir, name)
        except SceneError as e:  # one broken scene never aborts the table: its pairs are recorded as skipped
            _scene_skipped(name, e, split, skipped)
            continue
        c = _usable_candidates(sc, min_covisible, split, skipped)
        if images is not None and name in images:
            keep = set(images[name])
            c = c[c["source"].isin(keep) & c["target"].isin(keep)]
        cands[name] = c
        log.info("scene %s: %d images, %d candidate pairs", name, len(sc.images), len(cands[name]))
    quota = _quotas({s: len(c) for s, c in cands.items()}, n_pairs, max_per_scene)
    parts = []
    for s in sorted(cands):
        if quota[s] == 0:
            continue
        c = cands[s].sort_values("pair_id").reset_index(drop=True)
        idx = rng_for(seed, "pairs", split, s).choice(len(c), quota[s], replace=False)
        parts.append(c.iloc[np.sort(idx)])
    if not parts:
        within = "" if images is None else f" among the {split} images"
        raise InputError(
            f"no pair with at least {min_covisible} covisible points{within} in scenes {scenes} under {root}"
        )
    df = pd.concat(parts, ignore_index=True)
    if len(df) < n_pairs:
        log.warning("only %d pairs available for split %s (asked for %d)", len(df), split, n_pairs)
    col = {"rotation": "rotation_angle_deg", "axis": "axis_angle_deg", "baseline": "baseline_ratio"}[distance]
    df["distance"] = df[col]
    df["category"] = assign_categories(df["distance"].to_numpy())
    df["split"] = split
    return df[COLUMNS].sort_values("pair_id").reset_index(drop=True)


def external_pairs(
    root,
    table: str | Path,
    min_covisible: int = 0,
    distance: str = "rotation",
    split: str = "test",
    skipped: list | None = None,
) -> pd.DataFrame:
    """Evaluate a published pair list as it is: a CSV with columns scene, source, target. A pair of an image the
    scene left out, with an unsafe id, or of a scene that cannot be read is skipped and recorded in ``skipped``;
    an unknown scene, image or a pair below ``min_covisible`` is an error (the list does not fit the data)."""
    try:
        ext = pd.read_csv(table, dtype=str)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise FileFormatError(f"{table}: not a pair list (CSV of scene, source, target): {type(e).__name__}") from None
    missing = {"scene", "source", "target"} - set(ext.columns)
    if missing:
        raise FileFormatError(f"{table}: not a pair list: missing columns {sorted(missing)}")
    found = list_scenes(root, sorted(ext["scene"].astype(str).unique()))
    rows = []
    for name, g in ext.groupby(ext["scene"].astype(str)):
        if name not in found:
            raise InputError(f"{table}: scene {name} not found under {root}")
        try:
            sc = load_scene(*found[name], name)
        except SceneError as e:  # the list's pairs of this scene are skipped, the others evaluated
            log.warning("%s: the %d pairs of scene %s skipped: %s", table, len(g), name, e)
            if skipped is not None:
                skipped += [
                    dict(zip(SKIPPED_COLUMNS, (split, name, _pair_id(name, a, b), a, b, f"scene: {e}")))
                    for a, b in zip(g["source"], g["target"])
                ]
            continue
        sk = skipped_pairs(sc, min_covisible).set_index(["source", "target"])
        c = candidate_pairs(sc, min_covisible).set_index(["source", "target"])
        for _, r in g.iterrows():
            key = (r["source"], r["target"])
            pid = _pair_id(name, *key)
            reason = sk.loc[key, "reason"] if key in sk.index else None
            if reason is None and key in c.index and not PAIR_ID_RE.fullmatch(pid):
                reason = f"unsafe pair id {pid!r}"
            if reason is not None:
                log.warning("%s: pair %s %s skipped: %s", table, name, key, reason)
                if skipped is not None:
                    skipped.append(dict(zip(SKIPPED_COLUMNS, (split, name, pid, key[0], key[1], reason))))
                continue
            if key not in c.index:
                raise InputError(
                    f"{table}: pair {name} {key} has fewer than {min_covisible} covisible points or unknown images"
                )
            rows.append({"scene": name, "source": key[0], "target": key[1], **c.loc[key].to_dict()})
    if not rows:
        raise InputError(f"{table}: no usable pair (see the skipped pairs)")
    df = pd.DataFrame(rows)
    col = {"rotation": "rotation_angle_deg", "axis": "axis_angle_deg", "baseline": "baseline_ratio"}[distance]
    df["distance"] = df[col]
    df["category"] = assign_categories(df["distance"].to_numpy())
    df["split"] = split
    return df[COLUMNS]


# names read as text: a scene called 0016 must not become the number 16
TEXT_COLUMNS = {"pair_id": str, "scene": str, "source": str, "target": str}


def read_pair_table(path: str | Path, required: tuple[str, ...] = ("pair_id",)) -> pd.DataFrame:
    """A pair table (CSV, from ``nre pairs``), ids and names as text. A missing file or a folder is an OSError
    naming it; a file that is not a CSV table with the ``required`` columns a ``FileFormatError`` naming it."""
    try:
        df = pd.read_csv(path, dtype=TEXT_COLUMNS)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileFormatError(f"{path}: not a pair table (CSV): {reason}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        shown = ", ".join(map(str, list(df.columns)[:8])) + (", ..." if len(df.columns) > 8 else "")
        raise FileFormatError(f"{path}: not a pair table: no column {', '.join(missing)} (columns: {shown})")
    return df


@functools.lru_cache(maxsize=4)
def _scene_index(root: str) -> dict:
    return list_scenes(root)


def load_pair(root: str | Path, row) -> PairData:
    """The ``PairData`` of a pair-table row: all 3D points observed in the source, cameras and poses from the model."""
    index = _scene_index(str(root))
    scene_name = str(row["scene"])
    if scene_name not in index:
        raise ValueError(f"scene {scene_name} of pair {row['pair_id']} not found under {root}")
    sc = load_scene(*index[scene_name], scene_name)
    src, tgt = sc.images.get(row["source"]), sc.images.get(row["target"])
    for name in (row["source"], row["target"]):
        if name in sc.excluded:
            raise SceneError(f"pair {row['pair_id']}: image {name} left out of {sc.model_dir}: {sc.excluded[name]}")
    if src is None or tgt is None:
        raise ValueError(f"pair {row['pair_id']}: image {row['source']} or {row['target']} not in {sc.model_dir}")
    return PairData(
        str(row["pair_id"]),
        src.path,
        tgt.path,
        sc.points(src.point3d_ids),
        src.camera,
        tgt.camera,
        src.pose,
        tgt.pose,
        {"scene": scene_name, "point3d_ids": src.point3d_ids},
    )


def summary(df: pd.DataFrame) -> dict:
    out = {
        "n_pairs": len(df),
        "per_category": df["category"].value_counts().reindex(CATEGORIES, fill_value=0).to_dict(),
        "per_scene": df.groupby("scene").size().to_dict(),
        "distance_range": {
            c: [float(g["distance"].min()), float(g["distance"].max())] for c, g in df.groupby("category")
        },
    }
    return out


DISTANCE_AXIS = {
    "rotation": "viewpoint distance: relative rotation angle (deg)",
    "axis": "viewpoint distance: angle between the optical axes (deg)",
    "baseline": "viewpoint distance: baseline / median scene depth (ratio, no unit)",
}


def plot_histogram(df: pd.DataFrame, path: str | Path, distance: str = "rotation") -> None:
    """Histogram of the pairs' viewpoint distance (``distance``: which one, for the axis label) per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bins = np.linspace(0, df["distance"].max(), 40)
    for c in CATEGORIES:
        ax.hist(df.loc[df["category"] == c, "distance"], bins=bins, alpha=0.7, label=c)
    ax.set_xlabel(DISTANCE_AXIS.get(distance, f"viewpoint distance ({distance})"))
    ax.set_ylabel("test pairs")
    ax.legend(title="category", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def split_scenes(root: str | Path, split: str) -> list[str]:
    """The scenes of ``split`` in ``root``/scenes.yaml."""
    import yaml

    f = Path(root) / "scenes.yaml"
    if not f.exists():
        raise FileNotFoundError(errno.ENOENT, "no scene list (name the scenes instead)", str(f))
    splits = (yaml.safe_load(f.read_text()) or {}).get("splits", {})
    if split not in splits:
        raise InputError(f"{f}: no split {split!r} (has {sorted(splits)})")
    return list(splits[split])


def build_pair_table(
    *,
    root: str | Path,
    out: str | Path,
    scenes: list[str] | None = None,
    split: str = "test",
    tuning_scenes: list[str] | None = None,
    tuning_from: str = "scenes",
    tuning_fraction: float = 0.3,
    n_pairs: int = 3000,
    n_tuning: int = 0,
    min_covisible: int = 50,
    distance: str = "rotation",
    max_per_scene: int | None = None,
    seed: int = 0,
    external: str | Path | None = None,
) -> dict:
    """Sample the evaluation pairs and write the pair table ``out`` (CSV) with, beside it, a summary
    (``.summary.json``), a histogram of the test pairs' distances (``.hist.png``) and the skipped pairs
    (``.skipped.csv``: split, scene, pair_id, source, target, reason; written always, empty when nothing was
    skipped). Returns the summary.

    Test pairs come from ``scenes`` (default: the ``split`` scenes of ROOT/scenes.yaml), or ``external`` lists them
    as they are. Tuning pairs (``n_tuning``) come from disjoint ``tuning_scenes`` (default: scenes.yaml's tuning
    split) or, with ``tuning_from="same-scene"`` (a single-scene run), from a seeded share ``tuning_fraction`` of each
    test scene's images, no image of a tuning pair being in a test pair."""
    import json

    root = Path(root)
    skipped: list[dict] = []
    image_split = None
    if tuning_from not in ("scenes", "same-scene"):
        raise OptionError(f"tuning_from must be 'scenes' or 'same-scene', got {tuning_from!r}")
    if distance not in DISTANCES:
        raise OptionError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    sample = functools.partial(
        sample_pairs, root, min_covisible=min_covisible, distance=distance, seed=seed, max_per_scene=max_per_scene,
        skipped=skipped,
    )  # fmt: skip
    if external:
        df = external_pairs(root, external, min_covisible, distance, skipped=skipped)
    else:
        scenes = scenes or split_scenes(root, split)
        same = tuning_from == "same-scene"
        if same and tuning_scenes:
            raise OptionError("same-scene tuning takes its tuning pairs from the test scenes; drop --tuning-scenes")
        if same and n_tuning:
            image_split = {s: split_images(scene_images(root, s), tuning_fraction, seed, s) for s in scenes}
        tscenes = None
        if n_tuning and not same:
            tscenes = tuning_scenes if tuning_scenes is not None else split_scenes(root, "tuning")
            overlap = set(tscenes) & set(scenes)
            if overlap:
                raise OptionError(f"tuning scenes overlap the test scenes: {sorted(overlap)}")
        images = None if image_split is None else {s: v["test"] for s, v in image_split.items()}
        df = sample(scenes, n_pairs, "test", images=images)
        if n_tuning and same:
            tun = sample(scenes, n_tuning, "tuning", images={s: v["tuning"] for s, v in image_split.items()})
            df = pd.concat([df, tun], ignore_index=True)
        elif n_tuning:
            df = pd.concat([df, sample(tscenes, n_tuning, "tuning")], ignore_index=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, float_format="%.6g")
    skipped_csv = out.with_suffix(".skipped.csv")
    pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).to_csv(skipped_csv, index=False)
    if skipped:
        log.info("%d candidate pairs or scenes skipped (reasons in %s)", len(skipped), skipped_csv)
    summ = {s: summary(g) for s, g in df.groupby("split")}
    if image_split is not None:
        summ["image_split"] = image_split
    out.with_suffix(".summary.json").write_text(json.dumps(summ, indent=2))
    plot_histogram(df[df["split"] == "test"], out.with_suffix(".hist.png"), distance)
    counts = ", ".join(f"{s}: {v['n_pairs']}" for s, v in summ.items() if s != "image_split")
    log.info("pairs: %s (%d skipped) -> %s", counts or "none", len(skipped), out)
    return summ
