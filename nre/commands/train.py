"""``nre train``: learn the compact NRE features with the NRE loss (Eq. 10), calibrate a hand-crafted backend's
temperature (its one-parameter case), or compare backends on held-out pairs (``nre.train.jobs``)."""

from __future__ import annotations

from nre.commands._args import named_json

HELP = "train the compact NRE networks with the NRE loss (Eq. 10) / calibrate a temperature / compare backends"


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
    from nre.train import jobs

    common = dict(config=args.config, out=args.out, root=args.root, threads=args.threads)
    if args.calibrate_temperature:
        jobs.calibrate(backend=args.calibrate_temperature, **common)
    elif args.compare is not None:
        jobs.compare_backends(backends=named_json(args.compare, "--compare"), **common)
    else:
        jobs.train(
            levels=tuple(args.levels),
            resume=args.resume,
            steps=args.steps,
            export_weights=args.export_weights,
            **common,
        )
    return 0
