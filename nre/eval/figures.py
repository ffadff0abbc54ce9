"""Figures: cumulative error curves (Fig. 5) and hyperparameter sweep plots. PNG + PDF."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nre.eval.study import STAGE_LABELS, Study, is_repeat, setting_text  # noqa: E402

# 12 colours (tab10 and two more) and 5 line styles: the (colour, style) pairs of up to 60 curves are distinct, and
# the colours of the first 12
COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#b8860b",
]  # fmt: skip
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1))]
ROTATION_AXIS = "rotation error (deg)"
TRANSLATION_AXIS = "translation error ||t_est - t_gt|| (scene units)"


def curve_style(i: int) -> dict:
    """The i-th curve's colour and line style."""
    return {"color": COLORS[i % len(COLORS)], "linestyle": LINESTYLES[i % len(LINESTYLES)], "linewidth": 1.6}


def _save(fig, stem: Path) -> list[str]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    out = []
    for ext in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(ext), dpi=110, bbox_inches="tight")  # legends outside the axes included
        out.append(str(stem.with_suffix(ext)))
    plt.close(fig)
    return out


def placeholder(stem, text: str) -> list[str]:
    """A figure that says why there is no figure (so a workflow output always exists)."""
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True)
    ax.axis("off")
    return _save(fig, Path(stem))


def curve_label(key, study: Study | None = None, n_features: int = 2) -> str:
    """A curve's name: ``label (backend) stage`` of an (estimator, features, stage) key; a string key as it is."""
    if isinstance(key, str):
        return key
    est, feat, stage = key
    lab = study.label(est) if study is not None else est
    if feat and n_features > 1:
        lab += f" ({feat})"
    st = STAGE_LABELS.get(stage, stage.replace("_", " ")) if stage else ""
    return f"{lab} {st}" if st else lab


def cumulative_curves(
    curves: dict, title: str, stem, rot_max=20.0, trans_max=5.0, study: Study | None = None
) -> list[str]:
    """curves: key -> rows with rotation_error_deg / translation_error, in drawing order; a key is a label or an
    (estimator, features, stage) tuple (named with ``study``). Two panels, rotation and translation, one colour and
    line style per curve, one legend outside the axes with each curve's n and median errors."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    handles, labels = [], []
    n_feats = len({k[1] for k in curves if not isinstance(k, str)})
    for i, (key, d) in enumerate(curves.items()):
        meds = []
        for ax, col, xmax in ((axes[0], "rotation_error_deg", rot_max), (axes[1], "translation_error", trans_max)):
            e = np.sort(d[col].to_numpy(dtype=float))
            if len(e) == 0:
                continue
            xs = np.linspace(0, xmax, 400)
            (h,) = ax.plot(xs, np.searchsorted(e, xs, side="right") / len(e), **curve_style(i))
            meds.append(np.median(e))
        if meds:
            handles.append(h)
            labels.append(f"{curve_label(key, study, n_feats)} (n={len(d)}, median {meds[0]:.2g} deg / {meds[1]:.2g})")
    axes[0].set_xlabel(ROTATION_AXIS)
    axes[1].set_xlabel(TRANSLATION_AXIS)
    for ax in axes:
        ax.set_ylabel("fraction of test pairs with error <= x")
        ax.set_ylim(0, 1)
        ax.set_xlim(0, None)
        ax.grid(alpha=0.3)
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no rows", ha="center", transform=ax.transAxes)
    fig.suptitle(title)
    return _save(fig, Path(stem))


def _numeric_key(params: list[dict]) -> str | None:
    """The swept numeric hyperparameter used as the x axis (the one with the most distinct numeric values)."""
    best, nbest = None, 1
    for k in sorted(params[0]):
        vals = {p.get(k) for p in params}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) and len(vals) > nbest:
            best, nbest = k, len(vals)
    return best


METRIC_AXIS = {"mean_failure": "mean failure rate over the thresholds"}


def sweep_plot(
    rates: pd.DataFrame, selection: pd.DataFrame, metric: str, stem, study: Study | None = None
) -> list[str]:
    """Failure rate (metric) vs hyperparameter per estimator (final stage), test and tuning; one line per value of
    the other hyperparameters; both protocols' choices marked; the legend under each panel, off the data."""
    study = study or Study()
    allc = rates[rates["category"] == "all"]
    groups = []
    for (feat, est), g in allc.groupby(["features", "estimator"]):
        if is_repeat(est):
            continue
        sel = selection[(selection["features"] == feat) & (selection["estimator"] == est)]
        stage = sel.iloc[0]["stage"] if not sel.empty else g["stage"].iloc[0]
        g = g[g["stage"] == stage]
        if g["params"].nunique() > 1:
            groups.append(((feat, est, stage), g, sel))
    if not groups:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no swept estimator", ha="center")
        ax.axis("off")
        return _save(fig, Path(stem))
    groups.sort(key=lambda x: (study.rank(x[0][1]), study.feature_rank(x[0][0])))
    n = len(groups)
    ncol = min(n, 4)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 4.6 * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, ((feat, est, stage), g, sel) in zip(axes.flat, groups):
        units = study.units(est)
        params = [json.loads(p) for p in g["params"]]
        xkey = _numeric_key(params)
        for split, (marker, ls) in (("test", ("o", "-")), ("tuning", ("s", "--"))):
            gs = g[g["split"] == split]
            if gs.empty:
                continue
            ps = [json.loads(p) for p in gs["params"]]
            others = [json.dumps({k: v for k, v in p.items() if k != xkey}, sort_keys=True) for p in ps]
            for j, other in enumerate(sorted(set(others))):
                idx = [i for i, o in enumerate(others) if o == other]
                xs = np.array([ps[i][xkey] for i in idx] if xkey is not None else idx, dtype=float)
                ys = gs[metric].to_numpy()[idx]
                order = np.argsort(xs, kind="stable")
                lab = split if other == "{}" else f"{split}: {setting_text(other, units)}"
                ax.plot(xs[order], ys[order], marker=marker, ls=ls, color=COLORS[j % len(COLORS)], label=lab, ms=4)
        for proto, color in (("paper", "red"), ("fair", "green")):
            if sel.empty or not str(sel.iloc[0][proto]).startswith("{"):  # FAIR_NA: no fair choice to mark
                continue
            p = json.loads(sel.iloc[0][proto])
            if xkey is not None and xkey in p:
                lab = f"{proto} protocol's choice: {setting_text(p, units)}"
                ax.axvline(p[xkey], color=color, ls=":", lw=1.5, label=lab)
        name = study.label(est) + (f" {STAGE_LABELS.get(stage, stage)}" if stage else "")
        ax.set_title(f"{name} ({feat})", fontsize=9)
        unit = units.get(xkey or "", "")
        ax.set_xlabel(f"{xkey} ({unit})" if xkey and unit else (xkey or "setting"))
        ax.set_ylabel(METRIC_AXIS.get(metric, f"failure rate {metric}") + " (lower is better)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return _save(fig, Path(stem))


def map_pictures(pair, backend, stem, n_points: int = 3, seed: int = 0, level: str = "coarse") -> list[str]:
    """Fig. 4-style pictures for one pair: for a few query points, the target image with the point's true
    reprojection, the dense loss map -ln C_n, the robust loss map min(ln|Omega-ring|, -ln C_n) and the bilinear
    reprojection pmf of the true reprojection (Eq. 3) on the map grid (zoomed). Points: the most confident, a median
    one and the least confident map among those that project inside the target."""
    import torch

    from nre.data.images import read_image
    from nre.features.access import PairFeatures
    from nre.geometry import img_to_map
    from nre.maps.dense import correspondence_logits, log_omega

    feats = PairFeatures(backend, pair)
    src = feats.source_descriptors(level)
    tmap = feats.target_map(level)
    scale = feats.target_scale(level)
    D, h, w = tmap.shape
    uv, valid = pair.target_camera.project(pair.points3d, pair.target_pose)
    xy = img_to_map(uv, scale)
    inside = valid & (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    cand = np.flatnonzero(inside)
    if len(cand) == 0:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, f"{pair.pair_id}: no point projects inside the target", ha="center")
        ax.axis("off")
        return _save(fig, Path(stem))
    with torch.no_grad():
        logp = correspondence_logits(src[torch.as_tensor(cand)], tmap).numpy()
    peak = logp.max(1)
    order = cand[np.argsort(-peak, kind="stable")]
    pick = list(dict.fromkeys([order[0], order[len(order) // 2], order[-1]]))[:n_points]
    trunc = log_omega(h, w)
    img = read_image(pair.target_image)
    fig, axes = plt.subplots(len(pick), 4, figsize=(13, 2.9 * len(pick)), squeeze=False)
    for row, n in zip(axes, pick):
        k = int(np.flatnonzero(cand == n)[0])
        dense = -logp[k].reshape(h, w)
        robust = np.minimum(dense, trunc)
        x, y = xy[n]
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        pmf = np.zeros((h, w))
        for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= x0 + dx < w and 0 <= y0 + dy < h:
                pmf[y0 + dy, x0 + dx] += wt
        nre_truth = float(np.sum(pmf * dense))
        row[0].imshow(img)
        row[0].plot(*uv[n], "r+", ms=12, mew=2)
        row[0].set_title(f"target, point {n}: true reprojection", fontsize=8)
        im = row[1].imshow(dense, cmap="magma_r")
        fig.colorbar(im, ax=row[1], fraction=0.035)
        row[1].plot(x, y, "c+", ms=10)
        row[1].set_title(f"dense loss -ln C (NRE at truth {nre_truth:.2f})", fontsize=8)
        im = row[2].imshow(robust, cmap="magma_r", vmax=trunc)
        fig.colorbar(im, ax=row[2], fraction=0.035)
        row[2].plot(x, y, "c+", ms=10)
        row[2].set_title(f"robust loss, truncated at ln|Omega| = {trunc:.2f}", fontsize=8)
        r = 4
        ys, xs = slice(max(y0 - r, 0), min(y0 + r + 2, h)), slice(max(x0 - r, 0), min(x0 + r + 2, w))
        row[3].imshow(
            pmf[ys, xs],
            cmap="Greens",
            vmin=0,
            vmax=1,
            extent=(xs.start - 0.5, xs.stop - 0.5, ys.stop - 0.5, ys.start - 0.5),
        )
        row[3].plot(x, y, "r+", ms=10)
        row[3].set_title("reprojection pmf (Eq. 3), zoom", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{pair.pair_id} ({backend.name}, {level} level {w}x{h})", fontsize=9)
    return _save(fig, Path(stem))


def inlier_plot(per_pair: pd.DataFrame, stem) -> list[str]:
    """Histogram of the per-pair inlier ratio of the argmax matches per category (oracle diagnostics)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    d = per_pair.dropna(subset=["inlier_ratio"]) if len(per_pair) else per_pair
    if len(d) == 0:
        ax.text(0.5, 0.5, "no oracle rows with inlier ratios", ha="center")
        ax.axis("off")
        return _save(fig, Path(stem))
    bins = np.linspace(0, 1, 21)
    for i, cat in enumerate(("easy", "medium", "hard")):
        v = d.loc[(d["category"] == cat) & (d["split"] == "test"), "inlier_ratio"].to_numpy(dtype=float)
        if len(v):
            st = curve_style(i)
            ax.hist(v, bins=bins, histtype="step", lw=1.5, ls=st["linestyle"], color=st["color"],
                    label=f"{cat} (median {np.median(v):.2f}, n={len(v)})")  # fmt: skip
    ax.set_xlabel("inlier ratio: fraction of argmax matches within the oracle radius of the truth")
    ax.set_ylabel("test pairs")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, Path(stem))
