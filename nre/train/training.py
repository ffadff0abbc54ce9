"""Feature learning with the NRE loss (Eq. 10), and its one-parameter case (a hand-crafted backend's temperature).

Eq. 10: with ground-truth poses, minimise over the network weights sum_n NRE(u_n, H_T, h_n, R_TS, t_TS, s_n = 1),
i.e. the cross-entropy between the bilinear reprojection pmf (Eq. 3) of the true reprojection of u_n in the target
and the correspondence map C_n = softmax(h_n . H_T). The per-point loss is ``nre.solver.loss.nre_cross_entropy``.

Data (``TrainingData``): pairs of images of the *training* scenes (``scenes.yaml`` split ``train``) with at least
``min_covisible`` common points, poses and points from the SfM models. For a pair, the points are the 3D points
observed in the source; a point is used when its SfM track also contains the target image (visible, not occluded),
it projects in front of both cameras, inside the source image, and its true target reprojection lies between the
outermost cell centres of the target map (all four bilinear corners on the grid: the band between the outermost
cell centres and the image border is excluded, since the s = 1 cross-entropy puts +inf there). Source descriptors
are sampled bilinearly at the source projections (the one image <-> map transform, ``nre.geometry.img_to_map``).
Validation pairs come from held-out images of the same training scenes (``val_images_per_scene`` per scene; no
training pair uses them). Tuning and test scenes are never read by training.

Coarse and fine networks are trained separately (as in the paper). The coarse loss is the dense cross-entropy over
the whole target map. The fine loss is computed in local windows of ``window`` x ``window`` fine cells placed around
the true reprojection with a random offset of up to ``jitter`` cells (training efficiency; at inference the fine maps
are local windows around the coarse reprojection too), optionally plus ``global_weight`` x the dense cross-entropy
over the whole fine map for ``global_points`` points.

Every random choice (pair order, point subsets, window offsets, photometric jitter, initialisation) is derived from
(seed, level, step), so a run resumed from its checkpoint continues exactly as an uninterrupted one would.
Checkpoints use the Lightning layout (``nre.features.nets.checkpoints``), readable by the ``nre_compact`` backend.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from nre.errors import FileFormatError, InputError
from nre.geometry import img_to_map
from nre.seeding import derive_seed, rng_for
from nre.solver.loss import nre_cross_entropy

log = logging.getLogger("nre.train")

DEFAULTS = {
    "seed": 0,
    "threads": 2,
    "data": {
        "root": "data/synth",
        "scenes": None,  # None: the train split of ROOT/scenes.yaml
        "n_pairs": 400,
        "n_val_pairs": 40,
        "val_images_per_scene": 6,
        "min_covisible": 50,
        "points_per_pair": 256,
    },
    "eval": {"scenes": None, "split": "tuning", "n_pairs": 40, "points_per_pair": 256, "window": 16},
    "coarse": {"dim": 128, "width": 32, "steps": 600, "lr": 2e-3, "weight_decay": 1e-4, "warmup": 30},
    "fine": {
        "dim": 64,
        "width": 16,
        "steps": 600,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "warmup": 30,
        "window": 32,
        "jitter": 8,
        "global_points": 32,
        "global_weight": 0.5,
    },
    "augment": {"brightness": 0.15, "contrast": 0.2},
    "log_every": 10,
    "val_every": 100,
    "checkpoint_every": 50,
    "calibrate": {"backend": "dsift", "n_pairs": 40, "points_per_pair": 128, "level": "coarse"},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def load_config(path: str | Path | None) -> dict:
    if path is None:
        return _merge(DEFAULTS, {})
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such training config", str(path))
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{path}: not a YAML training config ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(cfg, dict):
        raise FileFormatError(f"{path}: a training config must be a mapping")
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(DEFAULTS)})")
    return _merge(DEFAULTS, cfg)


# ----------------------------------------------------------------------------------------------- data
@dataclass
class TrainPair:
    pair_id: str
    source: np.ndarray  # RGB uint8 (H, W, 3)
    target: np.ndarray
    src_xy: np.ndarray  # (N, 2) source image pixels of the usable points
    tgt_xy: np.ndarray  # (N, 2) true target reprojections (image pixels)


def scenes_of_split(root: str | Path, split: str) -> list[str]:
    path = Path(root) / "scenes.yaml"
    if not path.exists():
        raise FileNotFoundError(
            errno.ENOENT, "no scenes.yaml (generate data with `nre synth` or list scenes in the config)", str(path)
        )
    meta = yaml.safe_load(path.read_text()) or {}
    scenes = (meta.get("splits") or {}).get(split)
    if not scenes:
        raise InputError(f"{path}: no scenes in split {split!r}")
    return list(scenes)


def pair_points(src, tgt, scene, margin_cells: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Usable points of a pair (see module doc): source pixels and true target pixels."""
    ids = np.intersect1d(src.point3d_ids, tgt.point3d_ids)
    X = scene.points(ids)
    uv_s, ok_s = src.camera.project(X, src.pose)
    uv_t, ok_t = tgt.camera.project(X, tgt.pose)
    ok = ok_s & ok_t & src.camera.in_image(uv_s) & tgt.camera.in_image(uv_t)
    return uv_s[ok], uv_t[ok]


def _inside_grid(xy_map: np.ndarray, h: int, w: int) -> np.ndarray:
    return (xy_map[:, 0] >= 0) & (xy_map[:, 1] >= 0) & (xy_map[:, 0] <= w - 1) & (xy_map[:, 1] <= h - 1)


def build_pairs(
    root: str | Path,
    scenes: list[str],
    n_pairs: int,
    seed: int,
    tag: str,
    min_covisible: int = 50,
    image_filter=None,
    min_points: int = 20,
) -> list[TrainPair]:
    """Seeded pairs of the given scenes (both images accepted by ``image_filter(scene, name)``), with their points."""
    from nre.data.images import read_image
    from nre.data.pairs import candidate_pairs
    from nre.data.scenes import list_scenes, load_scene

    found = list_scenes(root, scenes)
    missing = [s for s in scenes if s not in found]
    if missing:
        raise InputError(f"{root}: scenes {missing} not found")
    per_scene = {}
    for name in sorted(found):
        sc = load_scene(*found[name], name)
        cands = candidate_pairs(sc, min_covisible)
        if image_filter is not None and len(cands):
            keep = [image_filter(name, a) and image_filter(name, b) for a, b in zip(cands["source"], cands["target"])]
            cands = cands[np.asarray(keep, dtype=bool)]
        per_scene[name] = (sc, cands.sort_values("pair_id").reset_index(drop=True))
    quota = {s: n_pairs // len(per_scene) + (i < n_pairs % len(per_scene)) for i, s in enumerate(sorted(per_scene))}
    images: dict[Path, np.ndarray] = {}
    out = []
    for name, (sc, cands) in per_scene.items():
        if len(cands) == 0:
            continue
        idx = rng_for(seed, "train-pairs", tag, name).permutation(len(cands))
        taken = 0
        for i in idx:
            if taken >= quota[name]:
                break
            row = cands.iloc[i]
            src, tgt = sc.images[row["source"]], sc.images[row["target"]]
            uv_s, uv_t = pair_points(src, tgt, sc)
            if len(uv_s) < min_points:
                continue
            for im in (src, tgt):
                if im.path not in images:
                    images[im.path] = read_image(im.path)
            out.append(TrainPair(str(row["pair_id"]), images[src.path], images[tgt.path], uv_s, uv_t))
            taken += 1
    if not out:
        raise InputError(f"no usable {tag} pair in scenes {scenes} under {root}")
    return out


def held_out_images(root, scenes: list[str], k: int, seed: int) -> dict[str, set]:
    from nre.data.scenes import list_scenes, load_scene

    found = list_scenes(root, scenes)
    out = {}
    for name in sorted(found):
        names = sorted(load_scene(*found[name], name).images)
        out[name] = set(rng_for(seed, "val-images", name).choice(names, min(k, len(names)), replace=False).tolist())
    return out


class TrainingData:
    """Training and validation pairs of the training scenes (validation: pairs among held-out images)."""

    def __init__(self, cfg: dict):
        d = cfg["data"]
        self.root = Path(d["root"])
        self.scenes = list(d["scenes"] or scenes_of_split(self.root, "train"))
        seed = int(cfg["seed"])
        held = held_out_images(self.root, self.scenes, int(d["val_images_per_scene"]), seed)
        self.held_out = held
        t0 = time.perf_counter()
        self.train = build_pairs(
            self.root,
            self.scenes,
            int(d["n_pairs"]),
            seed,
            "train",
            int(d["min_covisible"]),
            lambda s, n: n not in held.get(s, ()),
        )
        self.val = build_pairs(
            self.root,
            self.scenes,
            int(d["n_val_pairs"]),
            seed,
            "val",
            int(d["min_covisible"]),
            lambda s, n: n in held.get(s, ()),
        )
        log.info(
            "training data: %d train / %d validation pairs from scenes %s (%.1f s)",
            len(self.train),
            len(self.val),
            self.scenes,
            time.perf_counter() - t0,
        )


# ----------------------------------------------------------------------------------------------- losses
def to_tensor(img: np.ndarray, rng: np.random.Generator | None = None, augment: dict | None = None) -> torch.Tensor:
    """RGB uint8 -> normalised (3, H, W), with optional seeded brightness / contrast jitter."""
    from nre.features.nets.nre_nets import IMAGENET_MEAN, IMAGENET_STD

    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
    if rng is not None and augment:
        c = 1.0 + rng.uniform(-1, 1) * float(augment.get("contrast", 0))
        b = rng.uniform(-1, 1) * float(augment.get("brightness", 0))
        x = ((x - 0.5) * c + 0.5 + b).clamp(0, 1)
    return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def sample_desc(desc: torch.Tensor, xy_map: torch.Tensor) -> torch.Tensor:
    """Differentiable bilinear sampling of (D, h, w) at map positions (N, 2) -> (N, D) (border-clamped)."""
    D, h, w = desc.shape
    g = torch.stack([2 * xy_map[:, 0] / max(w - 1, 1) - 1, 2 * xy_map[:, 1] / max(h - 1, 1) - 1], -1)
    out = F.grid_sample(desc[None], g[None, None], mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0].T


def _scale(desc: torch.Tensor, img: np.ndarray) -> np.ndarray:
    return np.array([desc.shape[-1] / img.shape[1], desc.shape[-2] / img.shape[0]])


def dense_ce(src_d: torch.Tensor, tgt_desc: torch.Tensor, xy_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point Eq. 10 loss over the whole target map, and whether the argmax is within one cell of the truth."""
    D, h, w = tgt_desc.shape
    logp = torch.log_softmax(src_d @ tgt_desc.reshape(D, h * w), -1)
    loss = nre_cross_entropy(logp, xy_map, None, (h, w))
    am = logp.argmax(-1)
    axy = torch.stack([am % w, am // w], -1).to(xy_map.dtype)
    within = (axy - xy_map).abs().max(-1).values <= 1.0
    return loss, within


def local_windows(xy_map: torch.Tensor, h: int, w: int, win: int, offsets: np.ndarray) -> torch.Tensor:
    """Window origins (N, 2) (x0, y0): truth - win/2 + offsets, clamped to the map."""
    o = torch.floor(xy_map).long() - win // 2 + torch.as_tensor(offsets, dtype=torch.long)
    o[:, 0] = o[:, 0].clamp(0, max(w - win, 0))
    o[:, 1] = o[:, 1].clamp(0, max(h - win, 0))
    return o


def window_ce(
    src_d: torch.Tensor, tgt_desc: torch.Tensor, xy_map: torch.Tensor, win: int, offsets: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point Eq. 10 loss over a local win x win window of the target map (softmax inside the window)."""
    D, h, w = tgt_desc.shape
    wy, wx = min(win, h), min(win, w)
    o = local_windows(xy_map, h, w, win, offsets)
    dy, dx = torch.meshgrid(torch.arange(wy), torch.arange(wx), indexing="ij")
    flat = (o[:, 1, None, None] + dy) * w + (o[:, 0, None, None] + dx)  # (N, wy, wx)
    win_desc = tgt_desc.reshape(D, h * w)[:, flat.reshape(-1)].reshape(D, len(o), wy * wx)
    logits = torch.einsum("nd,dnk->nk", src_d, win_desc)
    logp = torch.log_softmax(logits, -1)
    local_xy = xy_map - o.to(xy_map.dtype)
    loss = nre_cross_entropy(logp, local_xy, None, (wy, wx))
    am = logp.argmax(-1)
    axy = torch.stack([am % wx, am // wx], -1).to(xy_map.dtype)
    within = (axy - local_xy).abs().max(-1).values <= 1.0
    return loss, within


def pair_loss(
    net: torch.nn.Module,
    pair: TrainPair,
    level: str,
    cfg: dict,
    rng: np.random.Generator,
    n_points: int,
    augment: dict | None = None,
) -> tuple[torch.Tensor, dict]:
    """Mean Eq. 10 loss of one pair for ``net`` (coarse: dense; fine: local windows [+ dense subset])."""
    xs, xt = to_tensor(pair.source, rng, augment), to_tensor(pair.target, rng, augment)
    if xs.shape == xt.shape:
        ds, dt = net(torch.stack([xs, xt]))
    else:
        ds, dt = net(xs[None])[0], net(xt[None])[0]
    h, w = dt.shape[-2:]
    xy_t = img_to_map(pair.tgt_xy, _scale(dt, pair.target))
    keep = np.nonzero(_inside_grid(xy_t, h, w))[0]
    if len(keep) == 0:
        return None, {"n": 0}
    if len(keep) > n_points:
        keep = np.sort(rng.choice(keep, n_points, replace=False))
    xy_s = torch.as_tensor(img_to_map(pair.src_xy[keep], _scale(ds, pair.source)), dtype=torch.float32)
    xy_tt = torch.as_tensor(xy_t[keep], dtype=torch.float32)
    src_d = sample_desc(ds, xy_s)
    if level == "coarse":
        loss, within = dense_ce(src_d, dt, xy_tt)
        return loss.mean(), {"n": len(keep), "within1": within.float().mean().item()}
    fc = cfg["fine"]
    win, jit = int(fc["window"]), int(fc["jitter"])
    offsets = rng.integers(-jit, jit + 1, size=(len(keep), 2)) if jit > 0 else np.zeros((len(keep), 2), int)
    loss, within = window_ce(src_d, dt, xy_tt, win, offsets)
    total = loss.mean()
    stats = {"n": len(keep), "within1": within.float().mean().item(), "local": total.item()}
    ng, gw = int(fc.get("global_points") or 0), float(fc.get("global_weight") or 0.0)
    if ng > 0 and gw > 0:
        sel = torch.as_tensor(np.sort(rng.choice(len(keep), min(ng, len(keep)), replace=False)))
        gl, gwin = dense_ce(src_d[sel], dt, xy_tt[sel])
        total = total + gw * gl.mean()
        stats["global"] = gl.mean().item()
        stats["global_within1"] = gwin.float().mean().item()
    return total, stats


# ----------------------------------------------------------------------------------------------- training loop
def _hparams(level: str, lc: dict, cfg: dict) -> dict:
    return {
        "level": level,
        "arch": "compact",
        "dim": int(lc["dim"]),
        "width": int(lc["width"]),
        "stride": 16 if level == "coarse" else 2,
        "trained_by": "nre train",
        "config": json.loads(json.dumps(cfg)),
    }


def _lr(step: int, lc: dict) -> float:
    warm, total = int(lc["warmup"]), int(lc["steps"])
    if step < warm:
        return float(lc["lr"]) * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return float(lc["lr"]) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


@torch.no_grad()
def validate(net, pairs: list[TrainPair], level: str, cfg: dict, seed: int) -> dict:
    net.eval()
    losses, within, n = [], [], 0
    for p in pairs:
        rng = rng_for(seed, "val-points", level, p.pair_id)
        loss, st = pair_loss(net, p, level, cfg, rng, int(cfg["data"]["points_per_pair"]))
        if loss is None:
            continue
        losses.append(loss.item() * st["n"])
        within.append(st["within1"] * st["n"])
        n += st["n"]
    net.train()
    return {"val_loss": sum(losses) / max(n, 1), "val_within1": sum(within) / max(n, 1), "val_points": n}


def train_level(level: str, cfg: dict, data: TrainingData, out: str | Path, resume: bool = False) -> dict:
    """Train the compact ``level`` network; returns a summary. Files under OUT/<level>/: last.pth (resumable),
    best.pth (best validation loss, weights only), log.csv (one row per logged step / validation)."""
    from nre.features.nets.checkpoints import read_checkpoint, save_lightning_checkpoint
    from nre.features.nets.nre_nets import compact_net

    lc = cfg[level]
    seed = int(cfg["seed"])
    out = Path(out) / level
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(derive_seed(seed, "init", level) % (2**31))
    net = compact_net(level, dim=int(lc["dim"]), width=int(lc["width"]))
    opt = torch.optim.AdamW(net.parameters(), lr=float(lc["lr"]), weight_decay=float(lc["weight_decay"]))
    hp = _hparams(level, lc, cfg)
    step, best, history = 0, float("inf"), []
    last = out / "last.pth"
    if resume and last.exists():
        sd, _, obj = read_checkpoint(last)
        net.load_state_dict(sd)
        opt.load_state_dict(obj["optimizer_states"][0])
        st = obj.get("nre_train", {})
        step, best, history = (
            int(st.get("step", obj["global_step"])),
            float(st.get("best", best)),
            st.get("history", []),
        )
        log.info("%s: resumed from %s at step %d", level, last, step)
    elif resume:
        log.info("%s: --resume given but %s does not exist: starting from scratch", level, last)
    log_path = out / "log.csv"
    if not resume or not log_path.exists():
        log_path.write_text("step,kind,loss,within1,lr,seconds\n")

    def _log_row(*row):
        with open(log_path, "a", newline="") as f:
            csv.writer(f).writerow(row)

    def _save(path, with_opt: bool):
        save_lightning_checkpoint(
            path,
            net.state_dict(),
            hp,
            epoch=step // max(1, len(data.train)),
            global_step=step,
            optimizer_states=[opt.state_dict()] if with_opt else [],
            extra={"nre_train": {"step": step, "best": best, "history": history}} if with_opt else None,
        )

    n_steps = int(lc["steps"])
    net.train()
    t0 = time.perf_counter()
    run_loss, run_within, run_n = 0.0, 0.0, 0
    while step < n_steps:
        epoch, k = divmod(step, len(data.train))
        pair = data.train[rng_for(seed, "order", level, epoch).permutation(len(data.train))[k]]
        rng = rng_for(seed, "step", level, step)
        for g in opt.param_groups:
            g["lr"] = _lr(step, lc)
        loss, st = pair_loss(net, pair, level, cfg, rng, int(cfg["data"]["points_per_pair"]), cfg.get("augment"))
        if loss is not None and torch.isfinite(loss):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            run_loss += loss.item()
            run_within += st["within1"]
            run_n += 1
        step += 1
        if step % int(cfg["log_every"]) == 0 or step == n_steps:
            el = time.perf_counter() - t0
            ml, mw = run_loss / max(run_n, 1), run_within / max(run_n, 1)
            log.info(
                "%s step %d/%d loss %.3f within1 %.3f lr %.2e (%.1f s)", level, step, n_steps, ml, mw, _lr(step, lc), el
            )
            _log_row(step, "train", f"{ml:.5f}", f"{mw:.4f}", f"{_lr(step, lc):.3e}", f"{el:.1f}")
            run_loss, run_within, run_n = 0.0, 0.0, 0
        if step % int(cfg["val_every"]) == 0 or step == n_steps:
            v = validate(net, data.val, level, cfg, seed)
            history.append({"step": step, **v})
            _log_row(step, "val", f"{v['val_loss']:.5f}", f"{v['val_within1']:.4f}", "", "")
            log.info("%s step %d validation loss %.3f within1 %.3f", level, step, v["val_loss"], v["val_within1"])
            if v["val_loss"] < best:
                best = v["val_loss"]
                _save(out / "best.pth", with_opt=False)
        if step % int(cfg["checkpoint_every"]) == 0 or step == n_steps:
            _save(last, with_opt=True)
    return {"level": level, "steps": step, "best_val_loss": best, "history": history, "best": str(out / "best.pth")}


def export_weights(out: str | Path, dest: str | Path, levels=("coarse", "fine")) -> list[Path]:
    """Copy OUT/<level>/best.pth to DEST/compact_<level>.pth (weights + hyper-parameters, no optimizer)."""
    from nre.features.nets.checkpoints import read_checkpoint, save_lightning_checkpoint

    dest = Path(dest)
    paths = []
    for lv in levels:
        sd, hp, obj = read_checkpoint(Path(out) / lv / "best.pth")
        p = dest / f"compact_{lv}.pth"
        save_lightning_checkpoint(p, sd, hp, obj.get("epoch", 0), obj.get("global_step", 0))
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------------------------- evaluation
class _PairLevels:
    """A backend's descriptors for one pair, level by level: the target's dense map and the source descriptors at
    given pixels (before the temperature). A backend that describes at points prepares each image once and
    describes the source points themselves; others sample the source's dense map bilinearly (as PairFeatures)."""

    def __init__(self, backend, pair: TrainPair):
        self.b, self.p = backend, pair
        self._prep: dict[str, object] = {}

    def _prepared(self, side: str):
        if side not in self._prep:
            self._prep[side] = self.b.prepare(self.p.source if side == "source" else self.p.target)
        return self._prep[side]

    def target(self, level: str):
        if getattr(self.b, "describes_points", False):
            return self._prepared("target").dense(level)
        return self.b.extract(self.p.target, (level,))[level]

    def source(self, level: str, xy: np.ndarray) -> torch.Tensor:
        if getattr(self.b, "describes_points", False):
            return self._prepared("source").describe(xy, level)
        return self.b.extract(self.p.source, (level,))[level].sample(xy)


def _temperature(backend, level: str) -> float:
    get = getattr(backend, "level_temperature", None)
    return float(get(level) if get is not None else getattr(backend, "temperature", 1.0))


@torch.no_grad()
def evaluate_backend(backend, pairs: list[TrainPair], level: str, n_points: int, seed: int, window: int = 16) -> dict:
    """Eq. 10 loss and argmax accuracy of a feature backend on pairs (its temperature applied).

    Dense (whole map) for both levels; for the fine level also in local windows of ``window`` cells around the
    truth (seeded offsets of up to window / 4 cells), the setting of the coarse-to-fine estimator's fine stage."""
    losses, within, errpx, lloss, lwithin = [], [], [], [], []
    for p in pairs:
        rng = rng_for(seed, "eval-points", level, p.pair_id)
        acc = _PairLevels(backend, p)
        ft = acc.target(level)
        h, w = ft.desc.shape[-2:]
        xy_t = img_to_map(p.tgt_xy, ft.scale)
        keep = np.nonzero(_inside_grid(xy_t, h, w))[0]
        if len(keep) == 0:
            continue
        if len(keep) > n_points:
            keep = np.sort(rng.choice(keep, n_points, replace=False))
        src = acc.source(level, p.src_xy[keep]) / _temperature(backend, level)
        xy = torch.as_tensor(xy_t[keep], dtype=torch.float32)
        loss, win = dense_ce(src, ft.desc, xy)
        logits = src @ ft.desc.reshape(ft.desc.shape[0], -1)
        am = logits.argmax(-1)
        axy = np.stack([(am % w).numpy(), (am // w).numpy()], -1).astype(float)
        from nre.geometry import map_to_img

        errpx.append(np.linalg.norm(map_to_img(axy, ft.scale) - p.tgt_xy[keep], axis=1))
        losses.append(loss.numpy())
        within.append(win.numpy())
        if level == "fine":
            j = max(window // 4, 0)
            off = rng.integers(-j, j + 1, size=(len(keep), 2))
            ll, lw = window_ce(src, ft.desc, xy, window, off)
            lloss.append(ll.numpy())
            lwithin.append(lw.numpy())
    if not losses:
        return {"n_points": 0}
    L, Wn, E = np.concatenate(losses), np.concatenate(within), np.concatenate(errpx)
    out = {
        "n_pairs": len(losses),
        "n_points": int(len(L)),
        "grid": [int(h), int(w)],
        "ln_omega": float(np.log(h * w + 1)),
        "loss_mean": float(L.mean()),
        "loss_median": float(np.median(L)),
        "within1": float(Wn.mean()),
        "argmax_err_px_median": float(np.median(E)),
        "within_8px": float((E <= 8).mean()),
        "within_16px": float((E <= 16).mean()),
    }
    if lloss:
        LL, LW = np.concatenate(lloss), np.concatenate(lwithin)
        out.update({"local_window": window, "local_loss_mean": float(LL.mean()), "local_within1": float(LW.mean())})
    return out


def eval_pairs(cfg: dict) -> list[TrainPair]:
    """Held-out comparison pairs: the ``eval.split`` scenes (tuning by default), never used for training."""
    e = cfg["eval"]
    root = Path(cfg["data"]["root"])
    scenes = list(e["scenes"] or scenes_of_split(root, e["split"]))
    return build_pairs(root, scenes, int(e["n_pairs"]), int(cfg["seed"]), "eval", int(cfg["data"]["min_covisible"]))


def compare(cfg: dict, backends: dict, pairs: dict[str, list[TrainPair]]) -> dict:
    """{pair set: {backend: {level: metrics}}}."""
    res = {}
    e = cfg["eval"]
    for set_name, ps in pairs.items():
        res[set_name] = {}
        for bname, b in backends.items():
            res[set_name][bname] = {
                lv: evaluate_backend(b, ps, lv, int(e["points_per_pair"]), int(cfg["seed"]), int(e["window"]))
                for lv in ("coarse", "fine")
            }
    return res


# ----------------------------------------------------------------------------------------------- temperature
@torch.no_grad()
def calibrate_temperature(cfg: dict, data_pairs: list[TrainPair], backend_name: str = "dsift", options=None) -> dict:
    """Minimise the mean Eq. 10 loss over training pairs w.r.t. the backend's softmax temperature (per level, and
    jointly). The dot products are computed once; the 1-D problem is solved by bounded Brent search on ln T."""
    from scipy.optimize import minimize_scalar

    from nre.features import get_backend

    c = cfg["calibrate"]
    b = get_backend(backend_name, **dict(options or {}))
    seed = int(cfg["seed"])
    dots = {"coarse": [], "fine": []}
    for p in data_pairs:
        acc = _PairLevels(b, p)
        for lv in ("coarse", "fine"):
            rng = rng_for(seed, "calib-points", lv, p.pair_id)
            ft = acc.target(lv)
            h, w = ft.desc.shape[-2:]
            xy_t = img_to_map(p.tgt_xy, ft.scale)
            keep = np.nonzero(_inside_grid(xy_t, h, w))[0]
            if len(keep) > int(c["points_per_pair"]):
                keep = np.sort(rng.choice(keep, int(c["points_per_pair"]), replace=False))
            if len(keep) == 0:
                continue
            d = acc.source(lv, p.src_xy[keep]) @ ft.desc.reshape(ft.desc.shape[0], -1)
            dots[lv].append((d.half(), torch.as_tensor(xy_t[keep], dtype=torch.float32), (h, w)))

    def mean_loss(lv, log_t):
        t = math.exp(log_t)
        tot, n = 0.0, 0
        for d, xy, shape in dots[lv]:
            logp = torch.log_softmax(d.float() / t, -1)
            tot += nre_cross_entropy(logp, xy, None, shape).sum().item()
            n += len(xy)
        return tot / max(n, 1)

    out = {"backend": backend_name, "n_pairs": len(data_pairs), "levels": {}}
    bounds = (math.log(1e-3), math.log(1.0))
    for lv in ("coarse", "fine"):
        r = minimize_scalar(lambda s, lv=lv: mean_loss(lv, s), bounds=bounds, method="bounded", options={"xatol": 1e-3})
        out["levels"][lv] = {
            "temperature": float(math.exp(r.x)),
            "loss": float(r.fun),
            "loss_at_default": mean_loss(lv, math.log(_temperature(b, lv))),
            "n_points": int(sum(len(x[1]) for x in dots[lv])),
        }
    rj = minimize_scalar(
        lambda s: 0.5 * (mean_loss("coarse", s) + mean_loss("fine", s)),
        bounds=bounds,
        method="bounded",
        options={"xatol": 1e-3},
    )
    out["joint"] = {"temperature": float(math.exp(rj.x)), "loss": float(rj.fun)}
    choice = c.get("level", "coarse")
    out["chosen"] = choice
    out["temperature"] = out["joint"]["temperature"] if choice == "joint" else out["levels"][choice]["temperature"]
    out["default_temperature"] = float(getattr(b, "temperature", 1.0))
    out["default_temperatures"] = {lv: _temperature(b, lv) for lv in ("coarse", "fine")}
    return out
