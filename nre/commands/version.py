"""``nre version``: library versions (recorded with every result)."""

from __future__ import annotations

HELP = "print the versions of this package and the libraries results depend on"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("nre-bench", "torch", "numpy", "pycolmap", "poselib", "opencv-contrib-python", "pandas", "snakemake"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def add_arguments(parser):
    pass


def run(args) -> int:
    for k, v in versions().items():
        print(f"{k:24s} {v}")
    return 0
