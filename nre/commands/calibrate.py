"""``nre calibrate``: fit a feature backend's softmax temperature(s) by the Eq. 10 cross-entropy on training pairs
(``nre.train.jobs.calibrate``); never on test or tuning scenes."""

from __future__ import annotations

HELP = "fit a feature backend's softmax temperature (one per level for xfeat / aliked) on the training scenes"


def add_arguments(p):
    p.add_argument("backend", help="feature backend (dsift, xfeat, aliked, ...)")
    p.add_argument("--config", default="config/train.yaml", help="training config: data root, pairs, seed")
    p.add_argument("--root", default=None, help="training scenes' root (default: the config's data.root)")
    p.add_argument("--out", required=True, help="writes OUT/<backend>_temperature.json and a features entry (.yaml)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")


def run(args) -> int:
    from nre.train import jobs

    jobs.calibrate(config=args.config, out=args.out, backend=args.backend, root=args.root, threads=args.threads)
    return 0
