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


def cumulative_curves(curves: dict[str, pd.DataFrame], title: str, stem, rot_max=20.0, trans_max=5.0) -> list[str]:
    """curves: label -> rows with rotation_error_deg / translation_error. Two panels: rotation, translation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, d in curves.items():
        for ax, col, xmax in ((axes[0], "rotation_error_deg", rot_max), (axes[1], "translation_error", trans_max)):
            e = np.sort(d[col].to_numpy(dtype=float))
            if len(e) == 0:
                continue
            xs = np.linspace(0, xmax, 400)
            ax.plot(xs, np.searchsorted(e, xs, side="right") / len(e), label=f"{label} (n={len(e)})")
    axes[0].set_xlabel("rotation error (deg)")
    axes[1].set_xlabel("translation error (units)")
    for ax in axes:
        ax.set_ylabel("fraction of pairs below")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    return _save(fig, Path(stem))


def sweep_plot(rates: pd.DataFrame, selection: pd.DataFrame, metric: str, stem) -> list[str]:
    """Failure rate (metric) vs hyperparameter per estimator, test and tuning, chosen values marked."""
    allc = rates[(rates["category"] == "all")]
    groups = [(k, g) for k, g in allc.groupby(["features", "estimator", "stage"]) if g["params"].nunique() > 1]
    if not groups:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no swept estimator", ha="center")
        ax.axis("off")
        return _save(fig, Path(stem))
    n = len(groups)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    for ax, ((feat, est, stage), g) in zip(axes[0], groups):
        for split, style in (("test", "o-"), ("tuning", "s--")):
            gs = g[g["split"] == split]
            if gs.empty:
                continue
            params = [json.loads(p) for p in gs["params"]]
            keys = sorted(params[0])
            xs = [
                p[keys[0]] if len(keys) == 1 and isinstance(p[keys[0]], (int, float)) else i
                for i, p in enumerate(params)
            ]
            order = np.argsort(xs, kind="stable")
            ax.plot(np.asarray(xs)[order], gs[metric].to_numpy()[order], style, label=split)
        sel = selection[
            (selection["features"] == feat) & (selection["estimator"] == est) & (selection["stage"] == stage)
        ]
        if not sel.empty:
            for proto, color in (("paper", "red"), ("fair", "green")):
                p = json.loads(sel.iloc[0][proto])
                if len(p) == 1 and isinstance(next(iter(p.values())), (int, float)):
                    ax.axvline(next(iter(p.values())), color=color, ls=":", label=f"{proto} choice")
        ax.set_title(f"{est}{' ' + stage if stage else ''}", fontsize=9)
        ax.set_xlabel(", ".join(sorted(json.loads(g["params"].iloc[0]))) or "setting")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, Path(stem))
