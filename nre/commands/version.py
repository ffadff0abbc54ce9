"""``nre version``: library versions (recorded with every result)."""

from __future__ import annotations

HELP = "print the versions of this package and the libraries results depend on"


def add_arguments(parser):
    pass


def run(args) -> int:
    from nre.versions import versions

    for k, v in versions().items():
        print(f"{k:24s} {v}")
    return 0
