"""The versions of this package and of the libraries results depend on (recorded with every result row and in the
provenance of a committed reference)."""

from __future__ import annotations

PACKAGES = ("nre-bench", "torch", "numpy", "pycolmap", "poselib", "opencv-contrib-python", "pandas", "snakemake")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
