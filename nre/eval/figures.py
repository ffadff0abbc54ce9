"""Figures: cumulative error curves (Fig. 5) and hyperparameter sweep plots. PNG + PDF."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

STAGE_LABELS = {"p3p": "P3P (MSAC)", "coarse_gnc": "+ coarse GNC", "fine_gnc": "+ fine GNC"}


def _save(fig, stem: Path) -> list[str]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    out = []
    for ext in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(ext), dpi=110)
        out.append(str(stem.with_suffix(ext)))
    plt.close(fig)
    return out


def placeholder(stem, text: str) -> list[str]:
    """A figure that says why there is no figure (so a workflow output always exists)."""
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True)
    ax.axis("off")
    return _save(fig, Path(stem))


def cumulative_curves(curves: dict[str, pd.DataFrame], title: str, stem, rot_max=20.0, trans_max=5.0) -> list[str]:
    """curves: label -> rows with rotation_error_deg / translation_error. Two panels: rotation, translation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, d in curves.items():
        for ax, col, xmax in ((axes[0], "rotation_error_deg", rot_max), (axes[1], "translation_error", trans_max)):
            e = np.sort(d[col].to_numpy(dtype=float))
            if len(e) == 0:
                continue
            xs = np.linspace(0, xmax, 400)
            med = np.median(e)
            ax.plot(xs, np.searchsorted(e, xs, side="right") / len(e), label=f"{label} (n={len(e)}, median {med:.2g})")
    axes[0].set_xlabel("rotation error (deg)")
    axes[1].set_xlabel("translation error (units)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
        ax.set_ylabel("fraction of pairs below")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    if not axes[1].get_legend_handles_labels()[0]:
        axes[1].text(0.5, 0.5, "no rows", ha="center", transform=axes[1].transAxes)
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


def sweep_plot(rates: pd.DataFrame, selection: pd.DataFrame, metric: str, stem) -> list[str]:
    """Failure rate (metric) vs hyperparameter per estimator (final stage), test and tuning; one line per value of
    the other hyperparameters; both protocols' choices marked."""
    allc = rates[rates["category"] == "all"]
    groups = []
    for (feat, est), g in allc.groupby(["features", "estimator"]):
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
    n = len(groups)
    ncol = min(n, 4)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, 3.3 * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, ((feat, est, stage), g, sel) in zip(axes.flat, groups):
        params = [json.loads(p) for p in g["params"]]
        xkey = _numeric_key(params)
        for split, style in (("test", "o-"), ("tuning", "s--")):
            gs = g[g["split"] == split]
            if gs.empty:
                continue
            ps = [json.loads(p) for p in gs["params"]]
            others = [json.dumps({k: v for k, v in p.items() if k != xkey}, sort_keys=True) for p in ps]
            for other in sorted(set(others)):
                idx = [i for i, o in enumerate(others) if o == other]
                if xkey is not None:
                    xs = np.array([ps[i][xkey] for i in idx], dtype=float)
                else:
                    xs = np.array(idx, dtype=float)
                ys = gs[metric].to_numpy()[idx]
                order = np.argsort(xs, kind="stable")
                lab = split if other == "{}" else f"{split} {other}"
                ax.plot(xs[order], ys[order], style, label=lab, ms=4)
        for proto, color in (("paper", "red"), ("fair", "green")):
            if sel.empty or not str(sel.iloc[0][proto]).startswith("{"):  # FAIR_NA: no fair choice to mark
                continue
            p = json.loads(sel.iloc[0][proto])
            if xkey is not None and xkey in p:
                ax.axvline(p[xkey], color=color, ls=":", label=f"{proto} choice {json.dumps(p, sort_keys=True)}")
        ax.set_title(f"{est}{' ' + stage if stage else ''} ({feat})", fontsize=9)
        ax.set_xlabel(xkey or "setting")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
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
    for cat in ("easy", "medium", "hard"):
        v = d.loc[(d["category"] == cat) & (d["split"] == "test"), "inlier_ratio"].to_numpy(dtype=float)
        if len(v):
            ax.hist(v, bins=bins, histtype="step", lw=1.5, label=f"{cat} (median {np.median(v):.2f}, n={len(v)})")
    ax.set_xlabel("inlier ratio of the argmax matches (test pairs)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, Path(stem))
