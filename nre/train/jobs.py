"""The entry points of ``nre train``: learn the compact NRE features with the NRE loss (Eq. 10), calibrate a
hand-crafted backend's softmax temperature (its one-parameter case), or compare backends on held-out pairs.

Each reads a training config (``config/train.yaml``; ``root`` and ``steps`` override its data root and step
counts), sets the torch threads (default: the config's), and writes the resolved config and its results to the
output folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

log = logging.getLogger("nre.train")


def _prepare(config, out, root=None, steps=None, threads=None) -> dict:
    from nre.threads import set_threads
    from nre.train import training as T

    cfg = T.load_config(config)
    if root:
        cfg["data"]["root"] = str(root)
    if steps is not None:
        for lv in ("coarse", "fine"):
            cfg[lv]["steps"] = int(steps)
    set_threads(int(threads or cfg["threads"]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def _write_json(path: Path, res: dict) -> dict:
    path.write_text(json.dumps(res, indent=1) + "\n")
    log.info("%s:\n%s", path, json.dumps(res, indent=1))
    return res


def train(
    *,
    config: str | Path | None,
    out: str | Path,
    levels: tuple[str, ...] = ("coarse", "fine"),
    resume: bool = False,
    root: str | Path | None = None,
    steps: int | None = None,
    export_weights: str | Path | None = None,
    threads: int | None = None,
) -> dict:
    """Train each of ``levels`` (resuming from OUT/<level>/last.pth with ``resume``); write OUT/summary.json and,
    with ``export_weights``, the best weights as DIR/compact_<level>.pth. Returns the summary."""
    from nre.train import training as T

    cfg = _prepare(config, out, root, steps, threads)
    data = T.TrainingData(cfg)
    summary = {lv: T.train_level(lv, cfg, data, out, resume=resume) for lv in levels}
    _write_json(Path(out) / "summary.json", summary)
    if export_weights:
        paths = T.export_weights(out, export_weights, list(levels))
        log.info("exported %s", ", ".join(map(str, paths)))
    return summary


def calibrate(
    *,
    config: str | Path | None,
    out: str | Path,
    backend: str,
    root: str | Path | None = None,
    threads: int | None = None,
) -> dict:
    """Fit ``backend``'s softmax temperature by the NRE loss on training pairs; write OUT/<backend>_temperature.json
    and OUT/<backend>_temperature.yaml (a features entry for a workflow config). Returns the fit."""
    from nre.train import training as T

    cfg = _prepare(config, out, root, None, threads)
    c, d = cfg["calibrate"], cfg["data"]
    scenes = list(d["scenes"] or T.scenes_of_split(d["root"], "train"))
    data = T.build_pairs(d["root"], scenes, int(c["n_pairs"]), int(cfg["seed"]), "calibrate", int(d["min_covisible"]))
    res = T.calibrate_temperature(cfg, data, backend)
    from nre.features.catalog import BACKENDS

    if "coarse_temperature" in BACKENDS[backend].options:  # per-level temperatures (the learned backends)
        opts = {f"{lv}_temperature": round(r["temperature"], 5) for lv, r in res["levels"].items()}
    else:
        opts = {"temperature": round(res["temperature"], 5)}
    entry = {"features": {backend: {"options": opts}}}
    (Path(out) / f"{backend}_temperature.yaml").write_text(yaml.safe_dump(entry))
    return _write_json(Path(out) / f"{backend}_temperature.json", res)


def compare_backends(
    *,
    config: str | Path | None,
    out: str | Path,
    backends: dict[str, dict] | None = None,
    root: str | Path | None = None,
    threads: int | None = None,
) -> dict:
    """Eq. 10 loss and argmax accuracy of ``backends`` (name -> options; ``name@tag`` for a second configuration of
    one backend; default: nre_compact and dsift with OUT/dsift_temperature.json if present) on the validation and
    evaluation pairs; writes OUT/compare.json and returns it."""
    from nre.features import get_backend
    from nre.train import training as T

    cfg = _prepare(config, out, root, None, threads)
    specs = dict(backends or {})
    if not specs:
        specs = {"nre_compact": {}, "dsift": {}}
        tf = Path(out) / "dsift_temperature.json"
        if tf.exists():
            specs["dsift"] = {"temperature": json.loads(tf.read_text())["temperature"]}
    built = {name: get_backend(name.split("@")[0], **opts) for name, opts in specs.items()}
    data = T.TrainingData(dict(cfg, data=dict(cfg["data"], n_pairs=1)))
    pairs = {"validation (held-out train-scene images)": data.val, f"eval ({cfg['eval']['split']} scenes)": []}
    pairs[f"eval ({cfg['eval']['split']} scenes)"] = T.eval_pairs(cfg)
    res = {"backends": specs, "results": T.compare(cfg, built, pairs)}
    return _write_json(Path(out) / "compare.json", res)
