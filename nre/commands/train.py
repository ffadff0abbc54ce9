"""``nre train``: learn the compact NRE features with the NRE loss (Eq. 10), calibrate a hand-crafted backend's
temperature (its one-parameter case), or compare backends on held-out pairs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

HELP = "train the compact NRE networks with the NRE loss (Eq. 10) / calibrate the dsift temperature / compare"

log = logging.getLogger("nre.train")


def add_arguments(p):
    p.add_argument("--config", default="config/train.yaml", help="training config (YAML; see config/train.yaml)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, logs, summaries)")
    p.add_argument("--resume", action="store_true", help="continue each level from OUT/<level>/last.pth")
    p.add_argument("--levels", nargs="+", default=["coarse", "fine"], choices=["coarse", "fine"])
    p.add_argument("--root", default=None, help="override data.root of the config")
    p.add_argument("--steps", type=int, default=None, help="override the number of steps of every level")
    p.add_argument("--export-weights", default=None, help="write the best weights as DIR/compact_<level>.pth")
    p.add_argument(
        "--calibrate-temperature",
        default=None,
        metavar="BACKEND",
        help="instead of training: fit BACKEND's softmax temperature by the NRE loss on training pairs; writes "
        "OUT/<BACKEND>_temperature.{json,yaml} (the YAML is a features entry for the maps config)",
    )
    p.add_argument(
        "--compare",
        nargs="*",
        default=None,
        metavar="NAME=JSON",
        help="instead of training: Eq. 10 loss and argmax accuracy of backends on the validation and eval pairs; "
        "e.g. --compare nre_compact='{}' dsift='{\"temperature\": 0.05}' (default: nre_compact and dsift with "
        "OUT/dsift_temperature.json if present); writes OUT/compare.json",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: config threads)")


def run(args) -> int:
    import torch
    import yaml

    from nre import training as T

    cfg = T.load_config(args.config)
    if args.root:
        cfg["data"]["root"] = args.root
    if args.steps is not None:
        for lv in ("coarse", "fine"):
            cfg[lv]["steps"] = int(args.steps)
    torch.set_num_threads(int(args.threads or cfg["threads"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    if args.calibrate_temperature:
        name = args.calibrate_temperature
        c = cfg["calibrate"]
        data = T.build_pairs(
            cfg["data"]["root"],
            list(cfg["data"]["scenes"] or T.scenes_of_split(cfg["data"]["root"], "train")),
            int(c["n_pairs"]),
            int(cfg["seed"]),
            "calibrate",
            int(cfg["data"]["min_covisible"]),
        )
        res = T.calibrate_temperature(cfg, data, name)
        (out / f"{name}_temperature.json").write_text(json.dumps(res, indent=1) + "\n")
        from nre.features.catalog import BACKENDS

        if "coarse_temperature" in BACKENDS[name].options:  # per-level temperatures (the learned backends)
            opts = {f"{lv}_temperature": round(r["temperature"], 5) for lv, r in res["levels"].items()}
        else:
            opts = {"temperature": round(res["temperature"], 5)}
        (out / f"{name}_temperature.yaml").write_text(yaml.safe_dump({"features": {name: {"options": opts}}}))
        print(json.dumps(res, indent=1))
        return 0

    if args.compare is not None:
        from nre.features import get_backend

        specs = {}
        for item in args.compare or []:
            name, _, js = item.partition("=")
            specs[name] = json.loads(js) if js else {}
        if not specs:
            specs = {"nre_compact": {}, "dsift": {}}
            tf = out / "dsift_temperature.json"
            if tf.exists():
                specs["dsift"] = {"temperature": json.loads(tf.read_text())["temperature"]}
        backends = {}
        for name, opts in specs.items():
            base = name.split("@")[0]  # allow e.g. dsift@s2=... for a second configuration of one backend
            backends[name] = get_backend(base, **opts)
        data = T.TrainingData(dict(cfg, data=dict(cfg["data"], n_pairs=1)))
        pairs = {"validation (held-out train-scene images)": data.val, f"eval ({cfg['eval']['split']} scenes)": []}
        pairs[f"eval ({cfg['eval']['split']} scenes)"] = T.eval_pairs(cfg)
        res = {"backends": specs, "results": T.compare(cfg, backends, pairs)}
        (out / "compare.json").write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps(res, indent=1))
        return 0

    data = T.TrainingData(cfg)
    summary = {}
    for lv in args.levels:
        summary[lv] = T.train_level(lv, cfg, data, out, resume=args.resume)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if args.export_weights:
        paths = T.export_weights(out, args.export_weights, args.levels)
        log.info("exported %s", ", ".join(map(str, paths)))
    return 0
