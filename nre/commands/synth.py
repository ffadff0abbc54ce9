"""``nre synth``: generate the embedded MegaDepth-format default (``nre.data.synth.generate``: resumes per scene)."""

from __future__ import annotations

HELP = "generate scenes in the undistorted MegaDepth layout (rendered images + COLMAP SfM model)"


def add_arguments(p):
    p.add_argument("--out", required=True, help="output root (one folder per scene)")
    p.add_argument("--preset", default="default", choices=["tiny", "quick", "default"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--splits",
        nargs="+",
        default=["train", "tuning", "test"],
        choices=["train", "tuning", "test"],
        help="splits to generate (default all; the workflow generates training scenes only for its train target)",
    )
    p.add_argument("--jobs", type=int, default=None, help="scenes generated in parallel (default: CPU count)")


def run(args) -> int:
    from nre.data.synth import generate

    generate(args.out, args.preset, args.seed, args.jobs, tuple(args.splits))
    return 0
